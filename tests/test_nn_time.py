"""Time folding (TimeDistributed, SumPool2d, SpikingSequential), default init, firing rates and
reset_states, against per-time-step loops and explicit sums written here."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from exodus_lightning.nn import (
    IF,
    LIF,
    SpikingSequential,
    StatefulLIF,
    SumPool2d,
    TimeDistributed,
    default_init,
    firing_rates,
    reset_states,
)
from tests.reference import lif_reference, rel_err


def test_time_distributed_conv_and_batchnorm_equal_a_time_loop():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.rand(2, 5, 2, 6, 6, dtype=torch.float64)
    y = TimeDistributed(conv)(x)
    ref = torch.stack([conv(x[:, t]) for t in range(5)], 1)
    assert y.shape == (2, 5, 3, 6, 6) and rel_err(y, ref) < 1e-12
    # BatchNorm in training mode: statistics over batch *and* time
    bn = nn.BatchNorm2d(2, affine=False).double()
    z = TimeDistributed(bn)(x)
    mean = x.mean(dim=(0, 1, 3, 4), keepdim=True)
    var = x.var(dim=(0, 1, 3, 4), unbiased=False, keepdim=True)
    assert rel_err(z, (x - mean) / torch.sqrt(var + bn.eps)) < 1e-10


def test_sum_pool_equals_explicit_window_sums():
    x = torch.rand(2, 3, 4, 6, 8, dtype=torch.float64)
    y = SumPool2d(2)(x)
    ref = x.reshape(2, 3, 4, 3, 2, 4, 2).sum(dim=(4, 6))
    assert y.shape == (2, 3, 4, 3, 4) and rel_err(y, ref) < 1e-14
    # 4-D input, stride != kernel
    x4 = torch.arange(16.0).reshape(1, 1, 4, 4)
    y4 = SumPool2d(2, stride=1)(x4)
    ref4 = torch.tensor([[x4[0, 0, i:i + 2, j:j + 2].sum() for j in range(3)] for i in range(3)])
    assert torch.equal(y4[0, 0], ref4)


def test_spiking_sequential_folds_time_for_stateless_children():
    torch.manual_seed(0)
    net = SpikingSequential(nn.Conv2d(2, 3, 3, padding=1), IF(threshold=0.5), SumPool2d(2), nn.Flatten(),
                            nn.Linear(3 * 2 * 2, 4), LIF(tau_mem=5.0)).double()
    x = torch.rand(2, 6, 2, 4, 4, dtype=torch.float64)
    conv, lin = net[0], net[4]
    h = torch.stack([conv(x[:, t]) for t in range(6)], 1)
    s = lif_reference(h, math.inf, threshold=0.5)[0]
    p = s.reshape(2, 6, 3, 2, 2, 2, 2).sum(dim=(4, 6)).reshape(2, 6, -1)
    ref = lif_reference(lin(p), 5.0)[0]
    assert s.sum() > 0
    assert torch.equal(net(x), ref)


def test_default_init_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(400, 500), nn.Conv2d(8, 64, 5))
    default_init(net)
    for layer, fan_in in ((net[0], 400), (net[1], 8 * 25)):
        std = layer.weight.std().item()
        assert abs(std / math.sqrt(2.0 / fan_in) - 1) < 0.05
        assert abs(layer.weight.mean().item()) < 0.1 * std
        assert torch.all(layer.bias == 0)


def test_firing_rates_and_hooks_removed():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), IF(threshold=0.5), nn.Linear(4, 2), LIF(tau_mem=3.0, threshold=0.25)).double()
    with torch.no_grad():  # positive weights so that both layers fire
        for lin in (net[0], net[2]):
            lin.weight.uniform_(0.0, 0.5)
    x1 = torch.rand(2, 10, 3, dtype=torch.float64)
    x2 = torch.rand(5, 7, 3, dtype=torch.float64)
    with firing_rates(net) as fr:
        net(x1)
        net(x2)
    with torch.no_grad():
        s1 = [lif_reference(net[0](x), math.inf, threshold=0.5)[0] for x in (x1, x2)]
        s2 = [lif_reference(net[2](s), 3.0, threshold=0.25)[0] for s in s1]
    steps = 2 * 10 + 5 * 7
    for name, ss in (("1", s1), ("3", s2)):
        counts = ss[0].sum(dim=(0, 1)) + ss[1].sum(dim=(0, 1))
        assert counts.sum() > 0
        assert torch.allclose(fr.neuron_rates(name), counts / steps)
        assert math.isclose(fr.rates()[name], (counts.sum() / (steps * counts.numel())).item())
    assert all(not m._forward_hooks for m in net.modules())
    with pytest.raises(KeyError, match="no spikes recorded for layer 'x'"):
        fr.neuron_rates("x")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        firing_rates("net")


def test_reset_states_resets_all_stateful_layers():
    net = nn.Sequential(StatefulLIF(tau_mem=5.0), nn.Linear(3, 3), StatefulLIF(tau_mem=4.0, record=True))
    net(torch.rand(2, 4, 3))
    assert net[0].state is not None and net[2].state is not None and net[2].v_mem is not None
    reset_states(net)
    assert net[0].state is None and net[2].state is None and net[2].v_mem is None
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        reset_states(None)


def test_time_folding_bad_inputs():
    with pytest.raises(TypeError, match="module must be an nn.Module, got int"):
        TimeDistributed(3)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, \*features\)"):
        TimeDistributed(nn.Identity())(torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"SumPool2d input must be \(B, T, C, H, W\) or \(N, C, H, W\), got shape \(2, 3, 4\)"):
        SumPool2d(2)(torch.rand(2, 3, 4))
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair of ints"):
        SumPool2d("2")
    with pytest.raises(ValueError, match="kernel_size and stride must be >= 1"):
        SumPool2d(0)
    with pytest.raises(TypeError, match="returned a tuple inside SpikingSequential"):
        SpikingSequential(LIF(5.0, return_state=True))(torch.rand(1, 2, 3))
