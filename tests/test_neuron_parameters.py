"""One neuron-parameter object (``LIFParameters``) and one time-constant convention (issue 25,
items 1-2): validated once where built, handed down without re-validation, the Euler decay as an
option checked against independent loops, and the layers' forwarded keyword arguments."""

from __future__ import annotations

import math

import jsonargparse
import pytest
import torch

from exodus_lightning import LIFParameters
from exodus_lightning.algorithms.ottt import OnlineLIF
from exodus_lightning.functional import lif
from exodus_lightning.nn import IF, LIF, RecurrentLIF, StatefulLIF
from exodus_lightning.spec import describe, instantiate
from exodus_lightning.time_constants import decay_factor, exp_equivalent_tau
from tests.reference import lif_reference, rel_err


def test_decay_factor_and_its_exponential_equivalent():
    for tau in (1.0, 1.5, 2.0, 10.0, 123.4):
        assert decay_factor(tau) == math.exp(-1.0 / tau)
        assert decay_factor(tau, "euler") == 1.0 - 1.0 / tau
        if tau > 1.0:  # the same per-step decay written in the other convention (tau = 1: decay 0)
            assert math.exp(-1.0 / exp_equivalent_tau(tau, "euler")) == pytest.approx(1.0 - 1.0 / tau, rel=1e-14)
    assert decay_factor(math.inf) == 1.0 and decay_factor(math.inf, "euler") == 1.0
    assert exp_equivalent_tau(math.inf, "euler") == math.inf and exp_equivalent_tau(1.0, "euler") == 0.0
    t = torch.tensor([2.0, 4.0], dtype=torch.float64)
    assert torch.equal(decay_factor(t, "euler"), torch.tensor([0.5, 0.75], dtype=torch.float64))
    with pytest.raises(ValueError, match="decay must be 'exp' .* or 'euler'"):
        decay_factor(2.0, "linear")


@pytest.mark.parametrize("kwargs,message", [
    (dict(tau_mem=0.0), "tau_mem must be > 0"),
    (dict(tau_mem=0.5, decay="euler"), "tau_mem must be >= 1"),
    (dict(tau_mem=torch.tensor([2.0, 0.9]), decay="euler"), "tau_mem must be >= 1"),
    (dict(tau_syn=1.0, decay="euler", tau_mem=3.0), None),  # tau_syn = 1: beta = 0, allowed
    (dict(tau_syn=0.5, decay="euler", tau_mem=3.0), "tau_syn must be >= 1"),
    (dict(decay="linear"), "decay must be 'exp'"),
    (dict(norm_input=1), "norm_input must be a bool"),
])
def test_validation_names_the_argument(kwargs, message):
    if message is None:
        LIFParameters(**kwargs)
        return
    with pytest.raises((ValueError, TypeError), match=message):
        LIFParameters(**kwargs)


def test_a_built_object_is_not_validated_again_by_the_call(monkeypatch):
    """The functional call reads no tensor value back to the host: the validation happened when the
    object was built (on a GPU, reading a value back is a synchronisation)."""
    p = LIFParameters(tau_mem=torch.tensor([5.0, 7.0, 9.0]), threshold=torch.tensor([1.0, 0.8, 1.2]), tau_syn=3.0)
    x = torch.rand(2, 20, 3, generator=torch.Generator().manual_seed(0))

    def no_host_read(self, *args):
        raise AssertionError("a tensor value was read on the host during the call")

    for name in ("__bool__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, no_host_read)
    s = lif(x, p)
    monkeypatch.undo()
    reference, *_ = lif_reference(x.double(), torch.tensor([5.0, 7.0, 9.0], dtype=torch.float64),
                                  torch.tensor([1.0, 0.8, 1.2], dtype=torch.float64), tau_syn=3.0)
    assert torch.equal(s.double(), reference)


def test_the_functional_api_takes_only_the_object():
    with pytest.raises(TypeError, match="p must be an exodus_lightning.LIFParameters"):
        lif(torch.rand(1, 2, 3), 20.0)


@pytest.mark.parametrize("backend", ["exodus", "slayer", "bptt"])
def test_euler_decay_equals_a_float64_loop(backend):
    """decay="euler": alpha = 1 - 1/tau, checked against the reference loop given the exponential
    time constant with the same decay (an independent path to alpha), spikes and input gradient."""
    g = torch.Generator().manual_seed(4)
    tau = torch.tensor([1.5, 3.0, 8.0, 40.0], dtype=torch.float64)
    x = (torch.rand(3, 60, 4, generator=g, dtype=torch.float64) * 3.0).requires_grad_()
    gs = torch.randn(3, 60, 4, generator=g, dtype=torch.float64)
    s = lif(x, LIFParameters(tau_mem=tau, decay="euler", norm_input=True), backend=backend)
    tau_exp = -1.0 / torch.log1p(-1.0 / tau)
    s_ref, *_ = lif_reference(x, tau_exp, norm_input=True, reset_in_gradient=backend != "slayer")
    assert torch.equal(s, s_ref)
    assert 0 < s_ref.sum() < s_ref.numel()
    (g_ours,) = torch.autograd.grad((s * gs).sum(), x)
    (g_ref,) = torch.autograd.grad((s_ref * gs).sum(), x)
    assert rel_err(g_ours, g_ref) <= 1e-10


def test_trained_tau_with_euler_decay_has_the_autograd_gradient():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(2, 40, 3, generator=g, dtype=torch.float64) * 0.9
    gs = torch.randn(2, 40, 3, generator=g, dtype=torch.float64)
    grads = {}
    for backend in ("exodus", "bptt"):
        layer = LIF(tau_mem=torch.tensor([2.0, 5.0, 9.0]), decay="euler", train_tau=True, backend=backend).double()
        (layer(x) * gs).sum().backward()
        grads[backend] = layer.tau_mem.grad
    assert grads["bptt"].abs().sum() > 0
    assert rel_err(grads["exodus"], grads["bptt"]) <= 1e-10


def test_online_lif_uses_the_same_convention():
    assert OnlineLIF(tau_mem=2.0).lam == 0.5
    assert OnlineLIF(tau_mem=2.0, decay="exp").lam == math.exp(-0.5)
    assert OnlineLIF(tau_mem=math.inf).lam == 1.0


def test_layers_forward_their_keyword_arguments_to_lif():
    x = torch.rand(2, 9, 3, generator=torch.Generator().manual_seed(1))
    for layer in (IF(threshold=0.7, reset="zero"), StatefulLIF(tau_mem=4.0, decay="euler", detach=False),
                  RecurrentLIF(3, tau_mem=6.0, threshold=0.9)):
        rebuilt = instantiate(describe(layer))
        assert type(rebuilt) is type(layer) and repr(rebuilt) == repr(layer)
        assert rebuilt.neuron_parameters().threshold.item() == layer.neuron_parameters().threshold.item()
    assert IF(threshold=0.7).tau_mem.item() == math.inf
    assert StatefulLIF(tau_mem=4.0, decay="euler").decay == "euler"
    with pytest.raises(TypeError, match="IF takes no tau_mem"):
        IF(tau_mem=3.0)
    s = StatefulLIF(tau_mem=4.0, decay="euler")(x)
    ref, *_ = lif_reference(x.double(), -1.0 / math.log(1 - 1 / 4.0))
    assert torch.equal(s.double(), ref)


def test_configs_see_the_forwarded_arguments():
    """LightningCLI (jsonargparse) resolves ``**kwargs`` to LIF's parameters: a config can set them."""
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--neuron", type=LIF)
    cfg = parser.parse_args(["--neuron", '{"class_path": "exodus_lightning.nn.StatefulLIF", '
                             '"init_args": {"tau_mem": 7.0, "decay": "euler", "detach": false}}'])
    layer = parser.instantiate(cfg).neuron
    assert isinstance(layer, StatefulLIF) and layer.tau_mem.item() == 7.0 and layer.decay == "euler"
    assert layer.detach is False


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (no device on this machine)")
def test_no_host_synchronisation_for_validation_on_cuda():
    layer = LIF(tau_mem=torch.tensor([5.0, 7.0, 9.0]), threshold=torch.tensor([1.0, 0.8, 1.2])).cuda()
    x = torch.rand(2, 20, 3, device="cuda")
    layer(x)  # warm-up: loads the library, allocates
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        s = layer(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ref, *_ = lif_reference(x.double().cpu(), torch.tensor([5.0, 7.0, 9.0], dtype=torch.float64),
                            torch.tensor([1.0, 0.8, 1.2], dtype=torch.float64))
    assert torch.equal(s.double().cpu(), ref)


def test_layers_build_their_parameters_inside_a_compiled_graph():
    """The modules build a LIFParameters at every call: torch.compile(fullgraph=True) traces it."""
    from exodus_lightning.nn import LeakyIntegrator, build_network

    torch.manual_seed(0)
    net = build_network("6-8l-3l", neuron=LIF(tau_mem=torch.tensor(5.0), train_tau=True, decay="euler"),
                        readout=LeakyIntegrator(5.0))
    x = torch.rand(2, 10, 6)
    eager = net(x)
    (g_eager,) = torch.autograd.grad(eager.square().sum(), net[1].tau_mem)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    (g_compiled,) = torch.autograd.grad(out.square().sum(), net[1].tau_mem)
    assert torch.allclose(out, eager, rtol=1e-6, atol=1e-6)
    assert rel_err(g_compiled, g_eager) <= 1e-5 and g_eager.abs() > 0
