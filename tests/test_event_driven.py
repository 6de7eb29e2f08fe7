"""Event-driven backpropagation (Zhu et al. 2022): the native SRM forward and reverse scan against
brute-force loops over spikes of suppl. S14–S16 and S20/S21 (tests/reference.py, float64),
gradient-sum conservation (appendix A), the weight-norm backward S23–S28 against autograd, errors."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import _native
from exodus_lightning.algorithms.event_driven import (
    AdjustedAvgPool2d, EventDrivenSNN, EventLinear, SRMConfig, WeightNormFunction, predict, weight_norm,
)
from exodus_lightning.losses import spike_count_loss
from exodus_lightning.ops import event as event_ops
from tests.reference import backward_ref, eps_ref, forward_ref


@pytest.mark.parametrize("decay", ["exp", "euler"])
def test_forward_matches_bruteforce(decay: str) -> None:
    torch.manual_seed(0)
    cfg = SRMConfig(tau_mem=8.0, tau_syn=4.0, tau_grad=3.0, theta=1.0, decay=decay)
    current = torch.rand(2, 25, 6, dtype=torch.float64) * 0.9
    am, as_, ag, kappa = cfg.op_args()
    s, du, dug, u = event_ops.srm_forward(current, am, as_, ag, kappa, cfg.theta, True)
    s_ref, u_ref = forward_ref(current, cfg)
    assert 0 < s.sum() < s.numel() / 2
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(u, u_ref, rtol=1e-10, atol=1e-12)
    # eps(0) = 1 / tau_syn with the code's decay (research notes §2.1)
    if decay == "linear":
        assert eps_ref(0, 8.0, 4.0, "euler") == pytest.approx(0.25)


@pytest.mark.parametrize("opts", [dict(decay="exp"), dict(decay="euler"),
                                  dict(decay="euler", damping=0.85, max_dudt_inv=4.0)])
def test_backward_matches_bruteforce(opts: dict) -> None:
    torch.manual_seed(1)
    cfg = SRMConfig(tau_mem=8.0, tau_syn=4.0, tau_grad=3.0, theta=1.0, **opts)
    layer = EventLinear(7, 5, cfg, weight_norm=False).double()
    with torch.no_grad():
        layer.weight0.copy_(torch.rand(5, 7, dtype=torch.float64) * 1.2 - 0.3)  # mixed signs, mostly > 0
    x = (torch.rand(2, 30, 7) < 0.3).double().requires_grad_(True)
    out = layer(x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    w = layer.weight0.detach()
    s_ref, u_ref = forward_ref(x.detach() @ w.t(), cfg)
    assert torch.equal(out.detach(), s_ref) and out.sum() > 10
    dW_ref, dx_ref = backward_ref(x.detach(), w, s_ref, u_ref, grad_out, cfg)
    torch.testing.assert_close(layer.weight0.grad, dW_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x.grad, dx_ref, rtol=1e-10, atol=1e-12)


def test_gradient_sum_conserved_between_layers() -> None:
    """Appendix A: sum of spike-time gradients is the same at the output, hidden and input spikes
    (positive weights so that every g(t_k) > 0; no damping)."""
    torch.manual_seed(2)
    net = EventDrivenSNN("12-10l-4l", weight_norm=False).double()
    with torch.no_grad():
        for layer in net.weight_layers():
            layer.weight0.uniform_(0.05, 0.6)
    x = (torch.rand(3, 30, 12) < 0.25).double().requires_grad_(True)
    hidden = net.layers[0](x)
    hidden.retain_grad()
    out = net.layers[1](hidden)
    out.retain_grad()
    loss = spike_count_loss(out, torch.tensor([0, 1, 3]), n_correct=15.0, n_wrong=2.0)
    loss.backward()
    g_out = (out.grad * out.detach()).sum()
    g_hid = (hidden.grad * hidden.detach()).sum()
    g_in = (x.grad * x.detach()).sum()
    assert abs(g_out.item()) > 1e-3 and (hidden.grad != 0).any()
    torch.testing.assert_close(g_hid, g_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_in, g_out, rtol=1e-10, atol=1e-12)


def test_adjusted_pool_preserves_gradient_sum() -> None:
    torch.manual_seed(3)
    x = (torch.rand(2, 3, 2, 5, 5) < 0.3).double().requires_grad_(True)
    y = AdjustedAvgPool2d(2)(x)
    g = torch.randn_like(y) * (y.detach() != 0)
    y.backward(g)
    torch.testing.assert_close(x.grad.sum(), g.sum())
    assert ((x.grad != 0) <= (x.detach() != 0)).all()


def test_weight_norm_backward_equals_autograd() -> None:
    torch.manual_seed(4)
    w0 = torch.randn(6, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    gamma = torch.rand(6, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(6, dtype=torch.float64, requires_grad=True)
    gout = torch.randn(6, 3, 3, 3, dtype=torch.float64)
    y = WeightNormFunction.apply(w0, gamma, beta, 1e-5)
    grads = torch.autograd.grad(y, (w0, gamma, beta), gout)
    x = w0.reshape(6, -1)
    ref = gamma[:, None] * (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5) \
        + beta[:, None]
    torch.testing.assert_close(y, ref.reshape(w0.shape), rtol=1e-12, atol=1e-12)
    ref_grads = torch.autograd.grad(ref.reshape(w0.shape), (w0, gamma, beta), gout)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # standardised per channel before gamma, beta (S22)
    z = weight_norm(w0, torch.ones(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)).reshape(6, -1)
    torch.testing.assert_close(z.mean(1), torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)


def test_float32_agrees_with_float64_and_conv_network_runs() -> None:
    torch.manual_seed(5)
    net = EventDrivenSNN("8x8x2-4c3-2a-6l", calibrate_spikes=2.0)
    x = (torch.rand(2, 12, 2, 8, 8) < 0.2).float()
    out = net(x)
    assert out.shape == (2, 12, 6) and bool(net.calibrated)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    lin = EventLinear(5, 3)
    xs = (torch.rand(2, 20, 5) < 0.4).float()
    a = lin(xs)
    b = EventLinear.forward(lin.double(), xs.double())
    assert (a.double() != b).float().mean() < 0.05
    assert predict(torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])).tolist() == [1]


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="tau_mem"):
        SRMConfig(tau_mem=3.0, tau_syn=4.0)
    with pytest.raises(ValueError, match="tau_syn"):
        SRMConfig(tau_syn=0.5, decay="euler")
    with pytest.raises(ValueError, match="theta"):
        SRMConfig(theta=0.0)
    with pytest.raises(ValueError, match="decay"):
        SRMConfig(decay="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="damping"):
        SRMConfig(damping=1.5)
    with pytest.raises(ValueError, match="max_dudt_inv"):
        SRMConfig(max_dudt_inv=-1.0)
    with pytest.raises(TypeError, match="tau_grad"):
        SRMConfig(tau_grad="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out_features"):
        EventLinear(3, 0)
    lin = EventLinear(3, 2)
    with pytest.raises(ValueError, match="x must have 3 features"):
        lin(torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        lin(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        lin(torch.zeros(1, 4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="T >= 1"):
        lin(torch.zeros(1, 0, 3))
    with pytest.raises(ValueError, match="architecture"):
        EventDrivenSNN("10-3x-2l")
    with pytest.raises(TypeError, match="architecture"):
        EventDrivenSNN(12)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="calibrate_spikes"):
        EventDrivenSNN("10-2l", calibrate_spikes=0.0)
    with pytest.raises(ValueError, match="gamma and beta"):
        weight_norm(torch.zeros(3, 2), torch.ones(2), torch.zeros(3))
    s = torch.zeros(1, 3, 2)
    with pytest.raises(ValueError, match="du must have the shape"):
        event_ops.srm_backward(s, s, torch.zeros(1, 3, 3), s, 0.9, 0.8, 0.7, 2.0, 0.0)
    with pytest.raises(TypeError, match="current must be float32 or float64"):
        event_ops.srm_forward(torch.zeros(1, 3, 2, dtype=torch.int32), 0.9, 0.8, 0.7, 2.0, 1.0, False)
    with pytest.raises(RuntimeError, match="decays must lie in"):
        event_ops.srm_forward(s, 1.5, 0.8, 0.7, 2.0, 1.0, False)


def test_missing_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "_loaded", {})
    monkeypatch.setattr(_native, "find_library", lambda name: None)
    with pytest.raises(_native.NativeLibraryError, match="libexodus_native"):
        event_ops.library()
