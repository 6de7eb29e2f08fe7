"""NIR export/import: node fields follow the documented dt = 1 mapping (checked against the
formulas written out here), hand-built NIR graphs import to the reference dynamics, and an
export -> import round trip (in memory and through a NIR file) gives the same outputs."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch
from torch import nn

from exodus_lightning import nir as el_nir
from exodus_lightning.nn import IF, LIF, LeakyIntegrator, RecurrentLIF, SpikingSequential, SumPool2d, firing_rates
from tests.reference import leaky_reference, lif_reference, rel_err


def _dense_net():
    torch.manual_seed(0)
    return SpikingSequential(
        nn.Linear(5, 6), LIF(tau_mem=8.0, threshold=0.5), nn.Linear(6, 6, bias=False), IF(reset="zero"),
        nn.Dropout(0.5), nn.Linear(6, 6), LIF(tau_mem=4.0, tau_syn=2.0, norm_input=True, spike=2, threshold=0.25),
        nn.Linear(6, 3), LeakyIntegrator(tau=5.0),
    ).double()


def _conv_net():
    torch.manual_seed(1)
    C = 3
    return SpikingSequential(
        nn.Conv2d(2, C, 3, padding=1),
        LIF(tau_mem=torch.tensor([2.0, 6.0, 15.0]).reshape(C, 1, 1), shape=(C, 1, 1), threshold=0.5),
        SumPool2d(2), nn.Conv2d(C, 4, 3, stride=2, padding=1, bias=False), IF(min_v_mem=-1.0),
        nn.Flatten(), nn.Linear(4 * 2 * 2, 3), LeakyIntegrator(tau=3.0, norm_input=True),
    ).double()


def test_exported_nodes_follow_the_dt1_mapping():
    net = _dense_net()
    g = el_nir.export(net, torch.rand(1, 4, 5, dtype=torch.float64))
    n = g.nodes
    assert list(n) == ["input", "x0_linear", "x1_lif", "x2_linear", "x3_if", "x5_linear", "x6_lif", "x7_linear",
                       "x8_leakyintegrator", "output"]  # Dropout skipped
    assert isinstance(n["x0_linear"], nir.Affine) and isinstance(n["x2_linear"], nir.Linear)
    assert np.array_equal(n["x0_linear"].weight, net[0].weight.detach().numpy())
    lif = n["x1_lif"]
    assert isinstance(lif, nir.LIF) and lif.tau.shape == (6,)
    assert np.allclose(lif.tau, 8.0) and np.allclose(lif.v_threshold, 0.5) and np.all(lif.v_leak == 0)
    assert np.allclose(lif.r, 1.0 / (1.0 - math.exp(-1.0 / 8.0)), rtol=1e-14)  # c = 1 = (1 - alpha) r
    assert lif.metadata["reset"] == "subtract"
    iff = n["x3_if"]
    assert isinstance(iff, nir.IF) and np.all(iff.r == 1) and iff.metadata["reset"] == "zero"
    cuba = n["x6_lif"]
    assert isinstance(cuba, nir.CubaLIF) and np.all(cuba.r == 1)  # norm_input: r = 1
    assert np.allclose(cuba.tau_syn, 2.0) and np.allclose(cuba.tau_mem, 4.0) and np.all(cuba.w_in == 1)
    assert cuba.metadata["spike"] == 2
    li = n["x8_leakyintegrator"]
    assert isinstance(li, nir.LI) and np.allclose(li.r, 1.0 / (1.0 - math.exp(-1.0 / 5.0)))
    assert list(g.nodes["input"].input_type["input"]) == [5] and list(g.nodes["output"].output_type["output"]) == [3]
    assert g.edges[0] == ("input", "x0_linear") and g.edges[-1] == ("x8_leakyintegrator", "output")


def test_conv_export_shapes():
    g = el_nir.export(_conv_net(), torch.rand(1, 3, 2, 8, 8, dtype=torch.float64))
    conv = g.nodes["x0_conv2d"]
    assert isinstance(conv, nir.Conv2d) and list(conv.input_type["input"]) == [2, 8, 8]
    lif = g.nodes["x1_lif"]
    assert lif.tau.shape == (3, 8, 8) and np.allclose(lif.tau[:, 0, 0], [2.0, 6.0, 15.0])
    assert isinstance(g.nodes["x2_sumpool2d"], nir.SumPool2d)
    assert list(g.nodes["x3_conv2d"].input_type["input"]) == [3, 4, 4]
    fl = g.nodes["x5_flatten"]
    assert fl.start_dim == 0 and list(fl.input_type["input"]) == [4, 2, 2]


@pytest.mark.parametrize("make, shape", [(_dense_net, (3, 20, 5)), (_conv_net, (2, 10, 2, 8, 8))])
def test_round_trip_same_outputs(make, shape, tmp_path):
    net = make().eval()
    x = torch.rand(*shape, dtype=torch.float64) * 2
    g = el_nir.export(net, x[:1])
    back = el_nir.import_nir(g).double().eval()
    with firing_rates(net) as fr:
        y = net(x)
    assert all(rate > 0 for rate in fr.rates().values())  # every spiking layer takes part
    assert torch.equal(back(x), y)
    path = tmp_path / "net.nir"
    nir.write(str(path), g)
    from_file = el_nir.import_nir(str(path)).double().eval()
    assert torch.equal(from_file(x), y)
    # the round trip kept the reset mode of every neuron layer
    modes = [(type(m).__name__, m.reset) for m in from_file if isinstance(m, LIF)]
    assert modes == [(type(m).__name__, m.reset) for m in net if isinstance(m, LIF)]
    assert y.abs().sum() > 0


def test_hand_built_nir_graph_imports_to_reference_dynamics():
    tau, theta = 6.0, 0.5
    w = np.random.default_rng(0).uniform(0, 1, (4, 3))
    r = 1.0 / (1.0 - math.exp(-1.0 / tau))  # c = 1 under the dt = 1 convention
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([3])),
        nir.Linear(weight=w),
        nir.LIF(tau=np.full(4, tau), r=np.full(4, r), v_leak=np.zeros(4), v_threshold=np.full(4, theta)),
        nir.Linear(weight=np.eye(4)),
        nir.LI(tau=np.full(4, 3.0), r=np.ones(4), v_leak=np.zeros(4)),  # r = 1: norm_input
        nir.Output(output_type=np.array([4])),
    )
    net = el_nir.import_nir(graph).double()
    x = torch.rand(2, 15, 3, dtype=torch.float64)
    s = lif_reference(x @ torch.tensor(w).T, tau, threshold=theta, reset="zero")[0]  # NIR: reset to v_reset
    ref = leaky_reference(s, 3.0, norm_input=True)
    assert s.sum() > 0
    assert rel_err(net(x), ref) < 1e-12
    assert isinstance(net[1], LIF) and net[1].reset == "zero" and not net[1].norm_input
    assert net[3].norm_input


def test_nir_bad_inputs():
    with pytest.raises(TypeError, match="RecurrentLIF cannot be exported"):
        el_nir.export(SpikingSequential(RecurrentLIF(3)), torch.rand(1, 2, 3))
    with pytest.raises(TypeError, match="layer '0' of type ReLU has no NIR export"):
        el_nir.export(SpikingSequential(nn.ReLU()), torch.rand(1, 2, 3))
    with pytest.raises(ValueError, match=r"sample_input must be a tensor of shape \(B, T, \*features\), got \(2, 3\)"):
        el_nir.export(SpikingSequential(nn.Identity()), torch.rand(2, 3))
    with pytest.raises(TypeError, match="graph must be a nir.NIRGraph"):
        el_nir.import_nir(3)

    def graph(*nodes):
        return nir.NIRGraph.from_list(*nodes, type_check=False)

    z = np.zeros(2)
    with pytest.raises(TypeError, match="NIR node 'threshold' of type Threshold is not supported"):
        el_nir.import_nir(graph(nir.Input(input_type=np.array([2])), nir.Threshold(threshold=np.ones(2))))
    with pytest.raises(ValueError, match="NIR node 'lif': r \\* w_in must be 1"):
        el_nir.import_nir(graph(nir.Input(input_type=np.array([2])),
                                nir.LIF(tau=np.full(2, 5.0), r=np.full(2, 3.0), v_leak=z, v_threshold=np.ones(2))))
    with pytest.raises(ValueError, match="NIR node 'lif': v_leak must be 0"):
        el_nir.import_nir(graph(nir.Input(input_type=np.array([2])),
                                nir.LIF(tau=np.full(2, 5.0), r=np.ones(2), v_leak=np.ones(2), v_threshold=np.ones(2))))
    with pytest.raises(ValueError, match="NIR node 'if': IF needs r = 1"):
        el_nir.import_nir(graph(nir.Input(input_type=np.array([2])), nir.IF(r=np.full(2, 2.0), v_threshold=np.ones(2))))
    branching = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "a": nir.Linear(weight=np.eye(2)),
               "b": nir.Linear(weight=np.eye(2))},
        edges=[("input", "a"), ("input", "b")], type_check=False,
    )
    with pytest.raises(ValueError, match="NIR graph is not a chain"):
        el_nir.import_nir(branching)
