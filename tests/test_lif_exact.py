"""EXODUS gradients equal BPTT (autograd through a float64 PyTorch loop) over a pairwise covering
grid of neuron configurations; spikes equal the reference bit for bit (docs/architecture.md §3–4)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from exodus_lightning.functional import lif, lif_with_membrane
from tests.covering import pairwise
from tests.reference import lif_reference, rel_err, single_exponential, slayer_reference_grad
from exodus_lightning.neuron_parameters import LIFParameters

FACTORS = {
    "reset": ["subtract", "zero"],
    "spike": ["single", "multi", 2],
    "clamp": [None, -0.5],
    "synapse": [None, 5.0],
    "norm_input": [False, True],
    "alpha": ["if", 0.9, 0.5, "per_neuron"],
    "threshold": ["scalar", "per_neuron"],
    "state0": ["zero", "random"],
    "T": [1, 2, 37, 1000],
    "shape": [(5,), (2, 3, 2)],
}


def _valid(c: dict) -> bool:
    return not (c["norm_input"] and c["alpha"] == "if")


GRID = pairwise(FACTORS, _valid, seed=1)


def _id(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items()).replace(" ", "")


def _case(c: dict, dtype: torch.dtype, seed: int):
    """Inputs of a configuration: x, tau_mem (float or tensor), threshold, v0, i0, upstream grads."""
    g = torch.Generator().manual_seed(seed)
    B, T, shape = 3, c["T"], c["shape"]
    n = math.prod(shape)
    if c["alpha"] == "if":
        tau = math.inf
    elif c["alpha"] == "per_neuron":
        tau = torch.linspace(1.5, 20.0, n, dtype=torch.float64).reshape(shape)
    else:
        tau = -1.0 / math.log(c["alpha"])
    theta = 1.0 if c["threshold"] == "scalar" else torch.linspace(0.6, 1.4, n, dtype=torch.float64).reshape(shape)
    # Enough drive that neurons spike (several spikes per step in multi mode) but not constantly.
    scale = 4.0 if c["norm_input"] else 0.9
    x = (torch.rand((B, T, *shape), generator=g, dtype=torch.float64) * 1.6 - 0.3) * scale
    if c["synapse"] is not None:
        x = x * 0.35
    v0 = i0 = None
    if c["state0"] == "random":
        v0 = torch.rand((B, *shape), generator=g, dtype=torch.float64) * 1.2 - 0.3
        if c["synapse"] is not None:
            i0 = torch.rand((B, *shape), generator=g, dtype=torch.float64) * 0.5
    grads = [torch.randn((B, T, *shape), generator=g, dtype=torch.float64),  # spikes
             torch.randn((B, T, *shape), generator=g, dtype=torch.float64) * 0.1,  # membrane trace
             torch.randn((B, *shape), generator=g, dtype=torch.float64),  # final v
             torch.randn((B, *shape), generator=g, dtype=torch.float64)]  # final i
    cast = lambda t: t.to(dtype) if isinstance(t, torch.Tensor) else t  # noqa: E731
    return cast(x), cast(tau), cast(theta), cast(v0), cast(i0), [cast(t) for t in grads]


def _run(impl: str, c: dict, dtype: torch.dtype, seed: int, train_alpha: bool):
    """Spikes and {name: gradient} of a random linear loss on spikes, membrane and final state."""
    x, tau, theta, v0, i0, (gs, gv, gvf, gif) = _case(c, dtype, seed)
    leaves = {"x": x.clone().requires_grad_()}
    if v0 is not None:
        leaves["v0"] = v0 = v0.clone().requires_grad_()
    if i0 is not None:
        leaves["i0"] = i0 = i0.clone().requires_grad_()
    if train_alpha:
        tau = tau.clone() if isinstance(tau, torch.Tensor) else torch.full((), tau, dtype=dtype)
        leaves["tau"] = tau = tau.requires_grad_()
    kw = dict(reset=c["reset"], spike=c["spike"], tau_syn=c["synapse"], norm_input=c["norm_input"],
              min_v_mem=c["clamp"])
    if impl == "reference":
        s, v, v_fin, i_fin = lif_reference(leaves["x"], tau, theta, dtype=dtype, surrogate=single_exponential,
                                           v0=v0, i0=i0, **kw)
    else:
        p = LIFParameters(tau_mem=tau, threshold=theta, **kw)
        s, v, (v_fin, i_fin) = lif_with_membrane(leaves["x"], p, backend=impl, v0=v0, i0=i0)
    loss = (s * gs).sum() + (v * gv).sum() + (v_fin * gvf).sum()
    if i_fin is not None:
        loss = loss + (i_fin * gif).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return s.detach(), dict(zip(leaves, grads))


@pytest.mark.parametrize("c", GRID, ids=[_id(c) for c in GRID])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_exodus_equals_bptt(c, dtype):
    train_alpha = c["alpha"] != "if"  # d alpha / d tau = 0 at tau = inf
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    ref_spikes, ref = _run("reference", c, dtype, 7, train_alpha)
    spikes, got = _run("exodus", c, dtype, 7, train_alpha)
    assert torch.equal(spikes, ref_spikes), "spikes differ from the reference"
    assert ref_spikes.sum() > 0 or c["T"] <= 2, "configuration produced no spikes: the test would be vacuous"
    for name in ref:
        err = rel_err(got[name], ref[name])
        assert err <= tol, f"dL/d{name}: relative error {err:.3g} > {tol:g}"


def test_grid_is_pairwise_and_small():
    # 4 x 4 values (alpha x T) need at least 16 configurations; the full product has 6144.
    assert 16 <= len(GRID) <= 40
    assert all(_valid(c) for c in GRID)
    for a, b in itertools.combinations(FACTORS, 2):
        for va, vb in itertools.product(FACTORS[a], FACTORS[b]):
            if {a, b} == {"norm_input", "alpha"} and not _valid({a: va, b: vb}):
                continue
            assert any(c[a] == va and c[b] == vb for c in GRID), f"pair {a}={va}, {b}={vb} not covered"


def test_multi_spike_actually_emits_several_spikes():
    c = {"reset": "subtract", "spike": "multi", "clamp": None, "synapse": None, "norm_input": True,
         "alpha": 0.5, "threshold": "scalar", "state0": "zero", "T": 37, "shape": (5,)}
    x, tau, theta, *_ = _case(c, torch.float64, 7)
    assert lif(x, LIFParameters(tau_mem=tau, threshold=theta, spike="multi")).max() >= 2
    assert lif(x, LIFParameters(tau_mem=tau, threshold=theta, spike=2)).max() == 2


@pytest.mark.parametrize("backend", ["exodus", "slayer", "bptt"])
@pytest.mark.parametrize("synapse", [None, 4.0])
def test_two_chunks_equal_one_call(backend, synapse):
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(2, 60, 7, generator=g, dtype=torch.float64) * 1.2).requires_grad_()
    p = LIFParameters(tau_mem=8.0, tau_syn=synapse, min_v_mem=-1.0)
    gs = torch.randn(2, 60, 7, generator=g, dtype=torch.float64)
    s_full = lif(x, p, backend=backend)
    (gx_full,) = torch.autograd.grad((s_full * gs).sum(), x)
    s1, state = lif(x[:, :25], p, backend=backend, return_state=True)
    s2 = lif(x[:, 25:], p, backend=backend, v0=state.v, i0=state.i)
    s_chunks = torch.cat([s1, s2], 1)
    (gx_chunks,) = torch.autograd.grad((s_chunks * gs).sum(), x)
    assert torch.equal(s_full, s_chunks)
    assert s_full.sum() > 10
    assert rel_err(gx_chunks, gx_full) <= 1e-12


def test_slayer_equals_reference_recursion_and_differs_from_bptt():
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(4, 80, 16, generator=g, dtype=torch.float64) * 0.6).requires_grad_()
    gs = torch.randn(4, 80, 16, generator=g, dtype=torch.float64)
    s, v, _ = lif_with_membrane(x, LIFParameters(tau_mem=10.0), backend="slayer")
    (gx_slayer,) = torch.autograd.grad((s * gs).sum(), x)
    expected = slayer_reference_grad(gs, v.detach(), 10.0, 1.0)
    assert rel_err(gx_slayer, expected) <= 1e-12
    s_b = lif(x, LIFParameters(tau_mem=10.0), backend="exodus")
    (gx_exodus,) = torch.autograd.grad((s_b * gs).sum(), x)
    assert s.sum() > 50  # neurons spike, so the reset term matters
    assert rel_err(gx_slayer, gx_exodus) > 1e-3


@pytest.mark.parametrize("surrogate_name", ["FastSigmoid", "Gaussian", "Boxcar", "MultiGaussian",
                                            "PeriodicExponential", "python_callable"])
def test_every_surrogate_matches_bptt(surrogate_name):
    import exodus_lightning.surrogate as sg

    if surrogate_name == "python_callable":
        surrogate = lambda v, th: torch.sigmoid(3 * (v - th)) * (1 - torch.sigmoid(3 * (v - th)))  # noqa: E731
    else:
        surrogate = getattr(sg, surrogate_name)()
    g = torch.Generator().manual_seed(11)
    x = (torch.rand(3, 50, 6, generator=g, dtype=torch.float64) * 0.9).requires_grad_()
    gs = torch.randn(3, 50, 6, generator=g, dtype=torch.float64)
    s_ref, *_ = lif_reference(x, 6.0, 0.8, surrogate=surrogate, reset="zero")
    (g_ref,) = torch.autograd.grad((s_ref * gs).sum(), x)
    s = lif(x, LIFParameters(tau_mem=6.0, threshold=0.8, reset="zero", surrogate=surrogate))
    (g_ex,) = torch.autograd.grad((s * gs).sum(), x)
    assert torch.equal(s, s_ref)
    assert rel_err(g_ex, g_ref) <= 1e-10


def test_bptt_backend_equals_reference():
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(2, 40, 3, 2, generator=g, dtype=torch.float64)).requires_grad_()
    tau = torch.tensor([[4.0], [9.0], [30.0]], dtype=torch.float64, requires_grad=True)
    s = lif(x, LIFParameters(tau_mem=tau, spike="multi", tau_syn=3.0), backend="bptt")
    s_ref, *_ = lif_reference(x, tau, tau_syn=3.0, spike="multi")
    gs = torch.randn_like(s)
    grads = torch.autograd.grad((s * gs).sum(), (x, tau))
    grads_ref = torch.autograd.grad((s_ref * gs).sum(), (x, tau))
    assert torch.equal(s, s_ref)
    for a, b in zip(grads, grads_ref):
        assert rel_err(a, b) <= 1e-12


def test_non_contiguous_input_is_read_correctly():
    g = torch.Generator().manual_seed(4)
    base = torch.rand(6, 3, 30, generator=g, dtype=torch.float64)
    x = base.transpose(1, 2)  # (6, 30, 3), non-contiguous
    assert not x.is_contiguous()
    s_ref, *_ = lif_reference(x.contiguous(), 5.0)
    assert torch.equal(lif(x, LIFParameters(tau_mem=5.0)), s_ref)
