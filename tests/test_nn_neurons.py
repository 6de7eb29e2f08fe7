"""exodus_lightning.nn neuron modules against the float64 reference loop of tests/reference.py
(autograd = BPTT through the same equations) and the hand-written SLAYER recursion."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import exodus_lightning as el
from exodus_lightning.nn import IF, LIF, LeakyIntegrator, LIFState, RecurrentLIF, StatefulLIF, reset_states
from tests.reference import leaky_reference, lif_reference, rel_err, slayer_reference_grad

EXACT = ("exodus", "bptt")
TOL = 1e-10


def _x(*shape, scale=1.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale).requires_grad_(True)


def _grad_out(shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


CONFIGS = [
    dict(tau_mem=10.0),
    dict(tau_mem=5.0, reset="zero", spike="multi"),
    dict(tau_mem=8.0, tau_syn=4.0, norm_input=True, threshold=0.25),
    dict(tau_mem=20.0, spike=2, min_v_mem=-0.5, threshold=0.75),
]


@pytest.mark.parametrize("backend", EXACT)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_lif_module_matches_reference(cfg, backend):
    x = _x(3, 25, 4, 2, scale=1.5 if cfg.get("norm_input") is None else 6.0)
    layer = LIF(**cfg, backend=backend, record=True).double()
    s = layer(x)
    xr = x.detach().clone().requires_grad_(True)
    s_ref, v_ref, _, _ = lif_reference(xr, **cfg)
    assert torch.equal(s, s_ref)
    assert s_ref.sum() > 0  # the test would not see the reset otherwise
    assert rel_err(layer.v_mem, v_ref) < TOL
    g = _grad_out(s.shape)
    (gx,) = torch.autograd.grad(s, x, g)
    (gr,) = torch.autograd.grad(s_ref, xr, g)
    assert rel_err(gx, gr) < TOL


def test_lif_slayer_backend_matches_slayer_recursion():
    x = _x(2, 30, 5)
    s = LIF(tau_mem=10.0, backend="slayer").double()(x)
    g = _grad_out(s.shape)
    (gx,) = torch.autograd.grad(s, x, g)
    _, v_ref, _, _ = lif_reference(x.detach(), 10.0)
    ref = slayer_reference_grad(g, v_ref, 10.0, 1.0)
    assert rel_err(gx, ref) < TOL
    # and the exact gradient is different here, so the backend really was used
    (gx_exact,) = torch.autograd.grad(LIF(tau_mem=10.0, backend="exodus").double()(x), x, g)
    assert rel_err(gx_exact, ref) > 1e-3


@pytest.mark.parametrize("backend", EXACT)
def test_if_module_matches_reference(backend):
    x = _x(2, 20, 6, scale=0.8)
    layer = IF(threshold=1.0, backend=backend).double()
    s = layer(x)
    xr = x.detach().clone().requires_grad_(True)
    s_ref = lif_reference(xr, math.inf)[0]
    assert torch.equal(s, s_ref) and s_ref.sum() > 0
    g = _grad_out(s.shape)
    assert rel_err(torch.autograd.grad(s, x, g)[0], torch.autograd.grad(s_ref, xr, g)[0]) < TOL
    assert torch.isinf(layer.tau_mem).all()


@pytest.mark.parametrize("backend", ("exodus", "slayer", "bptt"))
@pytest.mark.parametrize("norm_input", (False, True))
def test_leaky_integrator_and_trained_tau(backend, norm_input):
    x = _x(2, 15, 3)
    layer = LeakyIntegrator(tau=torch.tensor([3.0, 7.0, 11.0]), shape=(3,), norm_input=norm_input,
                            train_tau=True, backend=backend).double()
    assert isinstance(layer.tau, nn.Parameter)
    out = layer(x)
    tau_ref = torch.tensor([3.0, 7.0, 11.0], dtype=torch.float64, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    ref = leaky_reference(xr, tau_ref, norm_input=norm_input)
    assert rel_err(out, ref) < TOL
    g = _grad_out(out.shape)
    gx, gtau = torch.autograd.grad(out, (x, layer.tau), g)
    rx, rtau = torch.autograd.grad(ref, (xr, tau_ref), g)
    assert rel_err(gx, rx) < TOL and rel_err(gtau, rtau) < TOL


def _plain_net(backend=None, train_tau=False):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 7), LIF(tau_mem=6.0, tau_syn=3.0, train_tau=train_tau, backend=backend),
        nn.Linear(7, 3), LeakyIntegrator(tau=4.0, backend=backend),
    ).double()


def _net_reference(net, x, tau=None):
    lin1, lif, lin2, li = net
    h = torch.nn.functional.linear(x, lin1.weight, lin1.bias)
    s = lif_reference(h, lif.tau_mem if tau is None else tau, tau_syn=3.0)[0]
    return leaky_reference(torch.nn.functional.linear(s, lin2.weight, lin2.bias), 4.0)


@pytest.mark.parametrize("backend", EXACT)
def test_network_weight_and_tau_gradients_match_reference(backend):
    net = _plain_net(backend, train_tau=True)
    x = _x(3, 20, 5, scale=2.0)
    out = net(x)
    tau_ref = net[1].tau_mem.detach().clone().requires_grad_(True)
    ref = _net_reference(net, x, tau_ref)
    assert rel_err(out, ref) < TOL
    g = _grad_out(out.shape)
    params = [net[0].weight, net[0].bias, net[2].weight, net[1].tau_mem]
    got = torch.autograd.grad(out, params, g)
    want = torch.autograd.grad(ref, params[:3] + [tau_ref], g)
    for a, b in zip(got, want):
        assert rel_err(a, b) < TOL


@pytest.mark.parametrize("backend", EXACT)
def test_per_channel_tau_on_conv_layer_with_trained_tau(backend):
    C = 3
    tau0 = torch.tensor([2.0, 5.0, 30.0]).reshape(C, 1, 1)
    layer = LIF(tau_mem=tau0, threshold=0.5, shape=(C, 1, 1), train_tau=True, backend=backend).double()
    assert layer.tau_mem.shape == (C, 1, 1)
    x = _x(2, 12, C, 4, 5)
    s = layer(x)
    tau_ref = tau0.double().requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    s_ref = lif_reference(xr, tau_ref, threshold=0.5)[0]
    assert torch.equal(s, s_ref)
    # the channels really differ: different tau gives different spike counts per channel
    counts = s_ref.sum(dim=(0, 1, 3, 4))
    assert len(set(counts.tolist())) == C
    g = _grad_out(s.shape)
    gx, gtau = torch.autograd.grad(s, (x, layer.tau_mem), g)
    rx, rtau = torch.autograd.grad(s_ref, (xr, tau_ref), g)
    assert rel_err(gx, rx) < TOL and rel_err(gtau, rtau) < TOL
    assert gtau.shape == (C, 1, 1)


def test_per_neuron_threshold_via_shape():
    theta = torch.tensor([0.5, 1.0, 2.0, 4.0])
    layer = LIF(tau_mem=10.0, threshold=theta, shape=(4,)).double()
    x = _x(2, 20, 4, scale=3.0)
    assert torch.equal(layer(x), lif_reference(x, 10.0, threshold=theta)[0])
    assert layer.threshold.shape == (4,)


def test_train_tau_is_a_parameter_and_float32_gradient_matches():
    layer = LIF(tau_mem=12.0, train_tau=True)
    assert isinstance(layer.tau_mem, nn.Parameter) and "tau_mem" in dict(layer.named_parameters())
    assert "tau_mem" not in dict(LIF(tau_mem=12.0).named_parameters())  # frozen: a buffer
    x = (torch.rand(2, 30, 4, generator=torch.Generator().manual_seed(3)) * 1.5).requires_grad_(True)
    s = layer(x)
    tau_ref = torch.tensor(12.0, dtype=torch.float64, requires_grad=True)
    s_ref = lif_reference(x.detach(), tau_ref)[0]
    (g1,) = torch.autograd.grad(s.sum(), layer.tau_mem)
    (g2,) = torch.autograd.grad(s_ref.sum(), tau_ref)
    assert rel_err(g1, g2) < 1e-5


# ----------------------------------------------------------------------------------- recurrent


def _recurrent_reference(x, w, tau, threshold=1.0):
    B, T, N = x.shape
    s_prev = torch.zeros(B, N, dtype=torch.float64)
    v = torch.zeros(B, N, dtype=torch.float64)
    out = []
    for t in range(T):
        inp = x[:, t] + s_prev @ w.T
        s, _, v, _ = lif_reference(inp.unsqueeze(1), tau, threshold=threshold, v0=v)
        s_prev = s[:, 0]
        out.append(s_prev)
    return torch.stack(out, 1)


def test_recurrent_lif_matches_plain_loop():
    torch.manual_seed(0)
    layer = RecurrentLIF(4, tau_mem=8.0, threshold=0.75).double()
    with torch.no_grad():
        layer.recurrent.weight.mul_(3.0)  # strong recursion so that it changes the spikes
    x = _x(2, 16, 4, scale=1.0)
    s = layer(x)
    w_ref = layer.recurrent.weight.detach().clone().requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    s_ref = _recurrent_reference(xr, w_ref, 8.0, 0.75)
    assert torch.equal(s, s_ref)
    assert not torch.equal(s_ref, lif_reference(x.detach(), 8.0, threshold=0.75)[0])
    g = _grad_out(s.shape)
    gx, gw = torch.autograd.grad(s, (x, layer.recurrent.weight), g)
    rx, rw = torch.autograd.grad(s_ref, (xr, w_ref), g)
    assert rel_err(gx, rx) < TOL and rel_err(gw, rw) < TOL


def test_recurrent_lif_is_bptt_only():
    for backend in ("exodus", "slayer"):
        with pytest.raises(ValueError, match=f"only backend='bptt'.*backend='{backend}'"):
            RecurrentLIF(3, backend=backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        RecurrentLIF(3, backend="cuda")
    layer = RecurrentLIF(3)
    with el.use_backend("exodus"):  # the global default does not apply: still runs (BPTT)
        assert layer(torch.rand(1, 4, 3)).shape == (1, 4, 3)
    with pytest.raises(ValueError, match=r"N = n_neurons = 3"):
        layer(torch.rand(1, 4, 5))


# ----------------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("backend", EXACT)
def test_two_chunks_with_state_equal_one_call(backend):
    cfg = dict(tau_mem=7.0, tau_syn=3.0, threshold=0.625)
    layer = LIF(**cfg, train_tau=True, return_state=True, backend=backend).double()
    x = _x(2, 30, 5)
    g = _grad_out(x.shape)
    s_all, st_all = layer(x)
    grads_all = torch.autograd.grad(s_all, (x, layer.tau_mem), g)
    s1, st1 = layer(x[:, :13])
    s2, st2 = layer(x[:, 13:], st1)
    s_chunks = torch.cat([s1, s2], 1)
    grads_chunks = torch.autograd.grad(s_chunks, (x, layer.tau_mem), g)
    s_ref, _, v_fin, i_fin = lif_reference(x.detach(), **cfg)
    assert torch.equal(s_chunks, s_ref) and torch.equal(s_all, s_ref)
    assert rel_err(st2.v, v_fin) < TOL and rel_err(st2.i, i_fin) < TOL
    for a, b in zip(grads_chunks, grads_all):
        assert rel_err(a, b) < TOL


def test_stateful_lif_streams_and_resets():
    x = _x(2, 20, 3)
    g = _grad_out(x.shape)
    layer = StatefulLIF(tau_mem=5.0, tau_syn=2.0, detach=False).double()
    s = torch.cat([layer(x[:, :8]), layer(x[:, 8:])], 1)
    xr = x.detach().clone().requires_grad_(True)
    s_ref = lif_reference(xr, 5.0, tau_syn=2.0)[0]
    assert torch.equal(s, s_ref)
    assert rel_err(torch.autograd.grad(s, x, g)[0], torch.autograd.grad(s_ref, xr, g)[0]) < TOL
    # another batch size needs a reset first
    with pytest.raises(ValueError, match="batch size 3 but the carried state has batch size 2.*reset"):
        layer(x.detach()[:1].repeat(3, 1, 1))
    reset_states(layer)
    assert layer.state is None
    assert torch.equal(layer(x.detach()), s_ref.detach())


def test_stateful_lif_detach_truncates_gradient():
    x = _x(1, 10, 2)
    layer = StatefulLIF(tau_mem=5.0, detach=True, surrogate=el.surrogate.SingleExponential(grad_width=5.0)).double()
    layer(x[:, :5])
    s2 = layer(x[:, 5:])
    (gx,) = torch.autograd.grad(s2.sum(), x)
    assert torch.all(gx[:, :5] == 0) and gx[:, 5:].abs().sum() > 0


# ----------------------------------------------------------------------------------- state / checkpoints


def test_state_never_in_state_dict_and_checkpoint_reloads_at_other_batch_size():
    def make():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(4, 6), StatefulLIF(tau_mem=5.0, tau_syn=2.0, record=True),
                             nn.Linear(6, 2), LIF(tau_mem=9.0, record=True, train_tau=True))

    net = make()
    keys_before = set(net.state_dict())
    net(torch.rand(8, 5, 4))
    assert net[1].state is not None and net[3].v_mem is not None
    assert set(net.state_dict()) == keys_before
    assert not any(k.endswith(("state", "v_mem", ".v", ".i")) for k in keys_before)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    other = nn.Sequential(nn.Linear(4, 6), StatefulLIF(tau_mem=5.0, tau_syn=2.0), nn.Linear(6, 2),
                          LIF(tau_mem=1.0, train_tau=True))
    other.load_state_dict(torch.load(buf))
    assert other[3].tau_mem.item() == 9.0
    x = torch.rand(3, 7, 4, dtype=torch.float64)  # batch 3 after saving at batch 8
    other.double()
    y = other(x)
    lin1, lin2 = net[0].double(), net[2].double()
    with torch.no_grad():
        s1 = lif_reference(lin1(x), 5.0, tau_syn=2.0)[0]
        ref = lif_reference(lin2(s1), 9.0)[0]
    assert torch.equal(y, ref)


# ----------------------------------------------------------------------------------- backends


def test_set_backend_switches_every_layer_and_layer_backend_wins():
    """The gradient each layer gives: SLAYER's (reset left out) under ``use_backend("slayer")`` for
    the layers without a backend of their own, the exact one for the layer with ``backend="exodus"``
    and for every layer under the global ``"bptt"`` and by default (references: the float64 loop)."""
    layers = [LIF(10.0).double(), IF().double(), LIF(5.0, backend="exodus").double()]
    taus = [10.0, math.inf, 5.0]
    x = _x(2, 30, 4)
    g = _grad_out(x.shape)

    def reference(tau: float, reset_in_gradient: bool) -> torch.Tensor:
        xr = x.detach().clone().requires_grad_(True)
        return torch.autograd.grad(lif_reference(xr, tau, reset_in_gradient=reset_in_gradient)[0], xr, g)[0]

    exact = [reference(t, True) for t in taus]
    slayer = [reference(t, False) for t in taus]
    assert all(rel_err(e, s) > 10 * TOL for e, s in zip(exact, slayer)), "the input must make the rules differ"

    def gradients() -> list[torch.Tensor]:
        return [torch.autograd.grad(layer(x), x, g)[0] for layer in layers]

    try:
        el.set_backend("bptt")
        assert all(rel_err(a, b) < TOL for a, b in zip(gradients(), exact))
        with el.use_backend("slayer"):
            got = gradients()
        assert all(rel_err(a, b) < TOL for a, b in zip(got, [slayer[0], slayer[1], exact[2]]))
    finally:
        el.set_backend("exodus")
    assert all(rel_err(a, b) < TOL for a, b in zip(gradients(), exact))


def test_global_backend_changes_the_gradient():
    x = _x(2, 30, 5)
    g = _grad_out(x.shape)
    layer = LIF(tau_mem=10.0).double()
    own = LIF(tau_mem=10.0, backend="exodus").double()
    _, v_ref, _, _ = lif_reference(x.detach(), 10.0)
    slayer = slayer_reference_grad(g, v_ref, 10.0, 1.0)
    xr = x.detach().clone().requires_grad_(True)
    exact = torch.autograd.grad(lif_reference(xr, 10.0)[0], xr, g)[0]
    with el.use_backend("slayer"):
        assert rel_err(torch.autograd.grad(layer(x), x, g)[0], slayer) < TOL
        assert rel_err(torch.autograd.grad(own(x), x, g)[0], exact) < TOL
    assert rel_err(torch.autograd.grad(layer(x), x, g)[0], exact) < TOL


# ----------------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_argument():
    layer = LIF(10.0, shape=(4,))
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, \*features\).*got shape \(5, 4\)"):
        layer(torch.rand(5, 4))
    with pytest.raises(ValueError, match=r"feature shape \(3,\).*built with shape=\(4,\)"):
        layer(torch.rand(2, 5, 3))
    with pytest.raises(ValueError, match=r"feature shape \(4, 2\).*shape=\(3, 1, 1\)"):
        LIF(10.0, shape=(3, 1, 1))(torch.rand(2, 5, 4, 2))
    with pytest.raises(ValueError, match=r"backend must be one of 'exodus', 'slayer', 'bptt', got 'cuda'"):
        LIF(10.0, backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        el.set_backend("torch")
    with pytest.raises(ValueError, match="tau_mem must be > 0"):
        LIF(tau_mem=-1.0)
    with pytest.raises(ValueError, match="tau_mem must be > 0"):
        LIF(tau_mem=torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="threshold must be > 0"):
        IF(threshold=0.0)
    with pytest.raises(ValueError, match="tau_syn must be > 0 and finite"):
        LIF(10.0, tau_syn=float("inf"))
    with pytest.raises(TypeError, match="tau_mem must be a float or a tensor, got str"):
        LIF(tau_mem="10")
    with pytest.raises(ValueError, match="reset must be 'subtract' or 'zero', got 'hard'"):
        LIF(10.0, reset="hard")
    with pytest.raises(ValueError, match="spike must be 'single', 'multi' or an int"):
        LIF(10.0, spike=0)
    with pytest.raises(ValueError, match="norm_input=True needs a finite tau_mem"):
        LIF(float("inf"), norm_input=True)
    with pytest.raises(ValueError, match="train_tau=True needs a finite tau_mem"):
        LIF(float("inf"), train_tau=True)
    with pytest.raises(ValueError, match=r"tau_mem of shape \(3,\) does not broadcast to shape=\(4,\)"):
        LIF(torch.ones(3), shape=(4,))
    with pytest.raises(ValueError, match="shape must be a non-empty sequence of positive ints"):
        LIF(10.0, shape=(0,))
    with pytest.raises(TypeError, match="surrogate must be callable"):
        LIF(10.0, surrogate=1.0)
    with pytest.raises(TypeError, match="state must be None, a LIFState"):
        LIF(10.0)(torch.rand(1, 3, 2), state=[1, 2, 3])
    with pytest.raises(ValueError, match=r"v0 must have shape \(B, \*features\) = \(1, 2\)"):
        LIF(10.0)(torch.rand(1, 3, 2), state=LIFState(torch.zeros(2, 2), None))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        LIF(10.0)(torch.ones(1, 3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="x has T = 0 time steps"):
        LIF(10.0)(torch.ones(1, 0, 2))
    with pytest.raises(ValueError, match=r"feature shape \(5,\).*shape=\(3,\)"):
        LeakyIntegrator(5.0, shape=(3,))(torch.rand(1, 2, 5))
    with pytest.raises(TypeError, match="state must be a tensor v"):
        LeakyIntegrator(5.0)(torch.rand(1, 2, 5), state=(1, 2))
    with pytest.raises(ValueError, match="n_neurons must be an int >= 1"):
        RecurrentLIF(0)
