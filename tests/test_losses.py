"""Each loss equals a value computed by hand on a small example, and its gradient equals autograd
of the formula written out independently here (in float64)."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning import losses as L

Y = torch.tensor([1, 0])


def _out():
    # (B=2, T=3, C=2)
    return torch.tensor([[[0.0, 1.0], [2.0, 0.5], [0.0, 0.0]],
                         [[1.0, 0.0], [0.0, 3.0], [0.5, 0.5]]], dtype=torch.float64, requires_grad=True)


def _ce(scores, y):
    """-log softmax by hand, mean over the batch."""
    return sum(-(scores[b][y[b]] - math.log(sum(math.exp(s) for s in scores[b]))) for b in range(len(y))) / len(y)


def test_max_over_time_cross_entropy_by_hand():
    # max over time: b0 -> [2, 1], b1 -> [1, 3]
    assert L.max_over_time_cross_entropy(_out(), Y).item() == pytest.approx(_ce([[2, 1], [1, 3]], [1, 0]))


def test_sum_and_mean_over_time_by_hand():
    # sums: b0 -> [2, 1.5], b1 -> [1.5, 3.5]
    assert L.sum_over_time_cross_entropy(_out(), Y).item() == pytest.approx(_ce([[2, 1.5], [1.5, 3.5]], [1, 0]))
    assert L.mean_over_time_cross_entropy(_out(), Y).item() == pytest.approx(
        _ce([[2 / 3, 0.5], [0.5, 3.5 / 3]], [1, 0]))


def test_padding_is_ignored():
    out = _out()
    lengths = torch.tensor([2, 3])
    # b0 sees steps 0-1 only: max -> [2, 1], sum -> [2, 1.5], mean -> [1, 0.75]
    assert L.max_over_time_cross_entropy(out, Y, lengths).item() == pytest.approx(_ce([[2, 1], [1, 3]], [1, 0]))
    assert L.sum_over_time_cross_entropy(out, Y, lengths).item() == pytest.approx(
        _ce([[2, 1.5], [1.5, 3.5]], [1, 0]))
    assert L.mean_over_time_cross_entropy(out, Y, lengths).item() == pytest.approx(
        _ce([[1, 0.75], [0.5, 3.5 / 3]], [1, 0]))
    padded = out.detach().clone()
    padded[0, 2] = 100.0  # garbage in the padding changes nothing
    for fn in (L.max_over_time_cross_entropy, L.sum_over_time_cross_entropy, L.per_step_cross_entropy):
        assert fn(padded, Y, lengths).item() == pytest.approx(fn(out, Y, lengths).item())


def test_per_step_cross_entropy_by_hand():
    o = _out().detach().tolist()
    expected = sum(_ce([o[b][t]], [Y[b].item()]) for b in range(2) for t in range(3)) / 6
    assert L.per_step_cross_entropy(_out(), Y).item() == pytest.approx(expected)


def test_ce_mse_mix_by_hand():
    o = _out().detach().tolist()
    a = 0.2
    total = 0.0
    for t in range(3):
        ce = sum(_ce([o[b][t]], [Y[b].item()]) for b in range(2)) / 2
        onehot = [[0, 1], [1, 0]]
        mse = sum((o[b][t][c] - onehot[b][c]) ** 2 for b in range(2) for c in range(2)) / 4
        total += ((1 - a) * ce + a * mse) / 3
    assert L.ce_mse_mix(_out(), Y, alpha=a).item() == pytest.approx(total)
    assert L.ce_mse_mix(_out(), Y, alpha=0.0).item() == pytest.approx(L.per_step_cross_entropy(_out(), Y).item())


@pytest.mark.parametrize("name", ["max", "sum", "mean", "per_step", "mix"])
def test_gradients_equal_autograd_of_the_formula(name):
    g = torch.Generator().manual_seed(0)
    o = torch.randn(4, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 4, 2, 2])
    logp = lambda s: s - torch.logsumexp(s, -1, keepdim=True)  # noqa: E731
    formula = {
        "max": lambda o: -logp(o.max(1).values)[torch.arange(4), y].mean(),
        "sum": lambda o: -logp(o.sum(1))[torch.arange(4), y].mean(),
        "mean": lambda o: -logp(o.sum(1) / 6)[torch.arange(4), y].mean(),
        "per_step": lambda o: -logp(o)[torch.arange(4), :, y].mean(),
        "mix": lambda o: (0.9 * -logp(o)[torch.arange(4), :, y].mean(0)
                          + 0.1 * (o - torch.eye(5, dtype=o.dtype)[y][:, None]).square().mean((0, 2))).sum() / 6,
    }[name]
    impl = {"max": L.max_over_time_cross_entropy, "sum": L.sum_over_time_cross_entropy,
            "mean": L.mean_over_time_cross_entropy, "per_step": L.per_step_cross_entropy,
            "mix": lambda o, y: L.ce_mse_mix(o, y, alpha=0.1)}[name]
    (g1,) = torch.autograd.grad(impl(o, y), o)
    (g2,) = torch.autograd.grad(formula(o), o)
    assert torch.allclose(g1, g2, rtol=1e-12, atol=1e-14)
    assert impl(o, y).item() == pytest.approx(formula(o).item(), rel=1e-12)


def test_spike_count_loss_by_hand():
    s = torch.zeros(2, 4, 3, dtype=torch.float64)
    s[0, :3, 0] = 1  # label 0 fires 3 (< n_correct 4): counts
    s[0, :, 1] = 1   # wrong neuron fires 4 (> n_wrong 1): counts
    s[0, 0, 2] = 1   # wrong neuron fires 1 (<= n_wrong): satisfied, no loss
    s[1, :, 2] = 1   # label 2 fires 4 (>= n_correct): satisfied
    s.requires_grad_()
    y = torch.tensor([0, 2])
    loss = L.spike_count_loss(s, y, n_correct=4, n_wrong=1)
    assert loss.item() == pytest.approx(((3 - 4) ** 2 + (4 - 1) ** 2) / (2 * 4))
    (g,) = torch.autograd.grad(loss, s)
    # dL/ds[t] = (c - n) / T on the unsatisfied entries, at every step
    assert torch.allclose(g[0, :, 0], torch.full((4,), -1 / 4, dtype=torch.float64))
    assert torch.allclose(g[0, :, 1], torch.full((4,), 3 / 4, dtype=torch.float64))
    assert g[0, :, 2].abs().sum() == 0 and g[1].abs().sum() == 0


def test_activity_regularizers_by_hand_and_zero_inside_band():
    s = torch.zeros(2, 5, 4, dtype=torch.float64)
    s[0, :, 0] = 1  # sample 0: neuron 0 fires 5 times, others silent
    s[1, :2, :] = 1  # sample 1: every neuron fires twice
    s.requires_grad_()
    up = L.upper_activity_regularizer(s, strength=0.5, threshold=1.0)
    # mean count per neuron: b0 = 5/4 -> 0.5 * 0.25; b1 = 2 -> 0.5 * 1
    assert up.item() == pytest.approx((0.5 * 0.25 + 0.5 * 1.0) / 2)
    low = L.lower_activity_regularizer(s, strength=10.0, threshold=0.5)
    # b0: three silent neurons, each (0.5 - 0)^2; b1: none
    assert low.item() == pytest.approx((10.0 / 4 * 3 * 0.25 + 0.0) / 2)
    (g,) = torch.autograd.grad(up + low, s)
    assert g.abs().sum() > 0
    inside = torch.zeros(2, 5, 4, dtype=torch.float64)
    inside[:, 0, :] = 1  # every neuron fires exactly once: inside [0.5, 1] for both
    inside.requires_grad_()
    reg = L.upper_activity_regularizer(inside, 0.5, 1.0) + L.lower_activity_regularizer(inside, 10.0, 0.5)
    assert reg.item() == 0.0
    (g0,) = torch.autograd.grad(reg, inside)
    assert g0.abs().sum() == 0


def test_spike_train_distances():
    a = torch.zeros(1, 6, 1, dtype=torch.float64)
    b = torch.zeros(1, 6, 1, dtype=torch.float64)
    a[0, 1, 0] = 1
    b[0, 3, 0] = 1
    assert L.spike_train_mse(a, b).item() == pytest.approx(2 / 6)
    tau = 2.0
    d = math.exp(-1 / tau)
    # filtered difference: t=1..2 -> d^0, d^1; t=3..5 -> d^2 - 1, d^3 - d, d^4 - d^2
    diffs = [0, 1, d, d ** 2 - 1, d ** 3 - d, d ** 4 - d ** 2]
    expected = math.sqrt(sum(x * x for x in diffs) / tau)
    assert L.van_rossum_distance(a, b, tau).item() == pytest.approx(expected, rel=1e-9)
    assert L.van_rossum_distance(a, a, tau).item() == pytest.approx(0.0, abs=1e-5)


def test_modules_wrap_the_functions():
    o, y = _out(), Y
    assert L.MaxOverTimeCrossEntropy()(o, y).item() == L.max_over_time_cross_entropy(o, y).item()
    assert L.SumOverTimeCrossEntropy()(o, y).item() == L.sum_over_time_cross_entropy(o, y).item()
    assert L.CEMSEMix(0.3)(o, y).item() == L.ce_mse_mix(o, y, 0.3).item()
    assert isinstance(L.loss_by_name("per_step_cross_entropy"), L.PerStepCrossEntropy)


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"output must have shape \(B, T, C\), got \(2, 3\)"):
        L.max_over_time_cross_entropy(torch.zeros(2, 3), Y)
    with pytest.raises(ValueError, match="target has batch size 3 but output has 2"):
        L.sum_over_time_cross_entropy(_out(), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T = 3\]"):
        L.max_over_time_cross_entropy(_out(), Y, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        L.CEMSEMix(1.5)
    with pytest.raises(ValueError, match="n_correct .* must be >= n_wrong"):
        L.SpikeCountLoss(1, 5)
    with pytest.raises(ValueError, match="loss must be one of"):
        L.loss_by_name("hinge")
