"""build_network: the EXODUS paper's Table 2 architecture strings, against networks written out
by hand with plain torch ops and the float64 reference neuron loop."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as TF

from exodus_lightning.nn import IF, LIF, LeakyIntegrator, SumPool2d, build_network
from tests.reference import leaky_reference, lif_reference, rel_err


def test_shd_string_structure_and_forward_backward_match_reference():
    net = build_network("100-128l-128l-20l", neuron=LIF(tau_mem=10.0, threshold=0.5),
                        readout=LeakyIntegrator(tau=5.0)).double()
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "LIF", "Linear", "LIF", "Linear", "LeakyIntegrator"]
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [(100, 128), (128, 128), (128, 20)]
    assert net[1] is not net[3] and net[1].tau_mem is not net[3].tau_mem
    x = (torch.rand(2, 12, 100, dtype=torch.float64) < 0.3).double().requires_grad_(True)
    out = net(x)
    w = [m.weight for m in net if isinstance(m, nn.Linear)]
    xr = x.detach().clone().requires_grad_(True)
    s1 = lif_reference(xr @ w[0].T, 10.0, threshold=0.5)[0]
    s2 = lif_reference(s1 @ w[1].T, 10.0, threshold=0.5)[0]
    ref = leaky_reference(s2 @ w[2].T, 5.0)
    assert s1.sum() > 0 and s2.sum() > 0
    assert out.shape == (2, 12, 20) and rel_err(out, ref) < 1e-10
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, [x] + w, g)
    want = torch.autograd.grad(ref, [xr] + w, g)
    for a, b in zip(got, want):
        assert rel_err(a, b) < 1e-10


def test_dvs_conv_string_on_2x8x2x64x64_forward_backward_matches_reference():
    torch.manual_seed(0)
    net = build_network("64x64x2-2c3-2p-4c3-2p-8c3-2p-16c3-11l", neuron=IF()).double()
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (2, 2, (3, 3)), (2, 4, (3, 3)), (4, 8, (3, 3)), (8, 16, (3, 3))]
    assert sum(isinstance(m, SumPool2d) for m in net) == 3 and sum(isinstance(m, IF) for m in net) == 4
    assert isinstance(net[-1], nn.Linear) and net[-1].in_features == 16 * 8 * 8 and net[-1].out_features == 11
    x = (torch.rand(2, 8, 2, 64, 64, dtype=torch.float64) < 0.2).double()
    out = net(x)
    assert out.shape == (2, 8, 11)
    params = [c.weight for c in convs] + [net[-1].weight]
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, params, g)

    # the same network by hand: conv per time step, reference IF loop, window sums
    def conv_t(h, w):
        return torch.stack([TF.conv2d(h[:, t], w, padding=1) for t in range(h.shape[1])], 1)

    def pool(h):
        B, T, C, H, W = h.shape
        return h.reshape(B, T, C, H // 2, 2, W // 2, 2).sum(dim=(4, 6))

    h = x
    for i, c in enumerate(convs):
        h = lif_reference(conv_t(h, c.weight), math.inf)[0]
        assert h.sum() > 0
        if i < 3:
            h = pool(h)
    ref = h.reshape(2, 8, -1) @ net[-1].weight.T
    assert rel_err(out, ref) < 1e-10
    for a, b in zip(grads, torch.autograd.grad(ref, params, g)):
        assert torch.isfinite(a).all() and a.abs().sum() > 0
        assert rel_err(a, b) < 1e-10


def test_neuron_factory_gets_the_feature_shape_for_per_channel_tau():
    seen = []

    def factory(shape):
        seen.append(shape)
        return LIF(tau_mem=torch.linspace(2.0, 20.0, shape[0]).reshape(-1, 1, 1), shape=(shape[0], 1, 1))

    net = build_network("8x8x1-3c3-2p-5c3-4l", neuron=factory, readout=functools.partial(LIF, 4.0))
    assert seen == [(3, 8, 8), (5, 4, 4)]
    assert net[1].tau_mem.shape == (3, 1, 1)
    assert isinstance(net[-1], LIF) and net[-1].shape == (4,)  # partial(LIF, 4.0)(shape=(4,))
    assert net(torch.rand(2, 3, 1, 8, 8)).shape == (2, 3, 4)


def test_template_is_deep_copied_and_readout_none_keeps_linear_output():
    template = LIF(tau_mem=10.0, train_tau=True)
    net = build_network("6-5l-4l-3l", neuron=template, init=None)
    lifs = [m for m in net if isinstance(m, LIF)]
    assert len(lifs) == 2 and all(m is not template for m in lifs)
    assert lifs[0].tau_mem is not lifs[1].tau_mem
    assert sum(p is template.tau_mem for p in net.parameters()) == 0
    assert isinstance(net[-1], nn.Linear) and net[-1].out_features == 3
    x = torch.rand(2, 4, 6)
    lin = net[-1]
    with torch.no_grad():
        hidden = net[:-1](x)
        assert torch.allclose(net(x), hidden @ lin.weight.T)


@pytest.mark.parametrize(
    "arch, match",
    [
        ("64x64x2-2c3-2q-11l", r"token 2 '2q' does not parse: expected 'NcK'"),
        ("abc-10l", r"token 0 'abc' is not an input size"),
        ("64x2-10l", r"token 0 '64x2' has 2 dimensions"),
        ("100--10l", r"token 1 '' is empty"),
        ("100-10l-", r"token 2 '' is empty"),
        ("100-2p-10l", r"token 1 '2p' is a pooling layer but its input has shape \(100,\)"),
        ("100-10l-4c3", r"token 2 '4c3' is a convolution but its input has shape \(10,\)"),
        ("4x4x1-2c3-8p-3l", r"token 2 '8p' pools 8x8 windows of a 4x4 map"),
        ("100-0l", r"token 1 '0l' has a zero size"),
        ("100", r"has no weight layer"),
        ("", r"architecture must not be empty"),
    ],
)
def test_architecture_errors_name_the_token(arch, match):
    with pytest.raises(ValueError, match=match):
        build_network(arch)


def test_architecture_argument_type_errors():
    with pytest.raises(TypeError, match="architecture must be a string"):
        build_network(100)
    with pytest.raises(TypeError, match="neuron must be an nn.Module template or a factory callable, got int"):
        build_network("4-3l-2l", neuron=3)
    with pytest.raises(TypeError, match="neuron factory must return an nn.Module, returned str"):
        build_network("4-3l-2l", neuron=lambda shape: "LIF")
    with pytest.raises(TypeError, match="init must be a callable"):
        build_network("4-3l-2l", init=1)


def test_one_grammar_every_token_means_one_thing():
    """The EXODUS, OTTT and event-driven builders read the same grammar; a token names one layer kind
    everywhere and a builder without that kind says so (Np is sum pooling, Na average pooling)."""
    from exodus_lightning.algorithms.event_driven import AdjustedAvgPool2d, EventDrivenSNN
    from exodus_lightning.algorithms.ottt import build_online_network
    from exodus_lightning.nn import SumPool2d
    from exodus_lightning.nn.architecture import parse_architecture

    shape, tokens = parse_architecture("8x8x2-4c3p0-2a-g-3l")
    assert shape == (2, 8, 8)
    assert [(t.kind, t.in_shape, t.out_shape) for t in tokens] == [
        ("conv", (2, 8, 8), (4, 6, 6)), ("avg_pool", (4, 6, 6), (4, 3, 3)), ("global_pool", (4, 3, 3), (4, 1, 1)),
        ("linear", (4, 1, 1), (3,))]
    assert any(isinstance(m, SumPool2d) for m in build_network("8x8x2-4c3-2p-3l").modules())
    assert any(isinstance(m, SumPool2d) for m in build_online_network("8x8x2-4c3-2p-3l").modules())
    assert any(isinstance(m, AdjustedAvgPool2d) for m in EventDrivenSNN("8x8x2-4c3-2a-3l").modules())
    with pytest.raises(ValueError, match=r"token 2 '2p' is 'Np' \(sum pooling\), which EventDrivenSNN does not build"):
        EventDrivenSNN("8x8x2-4c3-2p-3l")
    with pytest.raises(ValueError, match=r"token 1 '16' does not parse: expected .*'Nl' \(fully connected\)"):
        EventDrivenSNN("10-16-3l")
    with pytest.raises(ValueError, match=r"token 2 '2a' is 'Na' \(average pooling\), which build_network does not build"):
        build_network("8x8x2-4c3-2a-3l")
