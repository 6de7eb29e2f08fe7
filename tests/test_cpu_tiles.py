"""The CPU scans' tiles, chunks and streaming stores (native/src/cpu/row_tiles.inc) give the reference's
results on every path they take: whole rows computed in several chunks with a short last one, rows split
into tiles (a batch too small for the team), rows that are not a whole number of cache lines (never
streamed), outputs written through the cache or streamed past it, for 1, 2 and 3 threads.  Reference:
autograd through the float64/float32 PyTorch loop of tests/reference.py."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning import LIFParameters, _native
from exodus_lightning.functional import leaky_integrator, lif_with_membrane
from exodus_lightning.surrogate import Boxcar
from tests.reference import leaky_reference, lif_reference, rel_err, single_exponential

# (B, T, N): a batch row split into tiles of 272 (256 + 16), whole rows of 256 + 256 + 88, and rows wider
# than the widest tile (16 KiB) split in two
SHAPES = [(1, 6, 1040), (5, 4, 600), (2, 5, 4160)]
CASES = {
    "plain": dict(),  # one tau, threshold for all neurons: the scalar-parameter scans
    "per_neuron_tau_trained": dict(per_neuron=True),
    "every_mode": dict(spike="multi", reset="zero", tau_syn=3.0, min_v_mem=-0.4, norm_input=True,
                       surrogate=Boxcar(), per_neuron=True),
    "slayer": dict(backend="slayer"),
}
THREADS = (1, 2, 3)
THRESHOLDS = {"streamed": 0, "cached": 1 << 62}


@pytest.fixture
def cpu_settings():
    """Restores the library's streaming threshold and torch's thread count after the test."""
    lib, threads = _native.cpu(), torch.get_num_threads()
    yield lib
    lib.set_stream_threshold(None)
    torch.set_num_threads(threads)


def _inputs(shape, dtype, case):
    g = torch.Generator().manual_seed(sum(shape))
    B, T, N = shape
    x = (torch.rand(shape, generator=g, dtype=torch.float64) * 1.5 - 0.2).to(dtype)
    tau = torch.linspace(2.0, 25.0, N, dtype=dtype) if case.get("per_neuron") else 12.0
    ups = [torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(2)]
    return x, tau, ups


def _lif(impl: str, shape, dtype, case: dict):
    kw = dict(case)
    backend = kw.pop("backend", "exodus")
    x, tau, (gs, gv) = _inputs(shape, dtype, kw)
    kw.pop("per_neuron", None)
    leaves = [x.clone().requires_grad_()]
    if isinstance(tau, torch.Tensor):
        tau = tau.clone().requires_grad_()
        leaves.append(tau)
    if impl == "reference":
        s, v, v_fin, _ = lif_reference(leaves[0], tau, dtype=dtype, reset_in_gradient=backend != "slayer",
                                       **{k: val for k, val in kw.items() if k != "surrogate"},
                                       surrogate=kw.get("surrogate", single_exponential))
    else:
        s, v, state = lif_with_membrane(leaves[0], LIFParameters(tau_mem=tau, **kw), backend=backend)
        v_fin = state.v
    loss = (s * gs).sum() + (v * gv).sum() + v_fin.sum()
    return (s.detach(), v.detach(), v_fin.detach()), torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_lif_tiles_equal_the_reference(cpu_settings, shape, case, dtype):
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    ref_values, ref_grads = _lif("reference", shape, dtype, CASES[case])
    assert 0 < ref_values[0].sum() < ref_values[0].numel(), "no spikes or only spikes: the test would be vacuous"
    first = None
    for mode, threshold in THRESHOLDS.items():
        cpu_settings.set_stream_threshold(threshold)
        for threads in THREADS:
            torch.set_num_threads(threads)
            values, grads = _lif("exodus", shape, dtype, CASES[case])
            where = f"{mode} outputs, {threads} threads"
            for name, a, b in zip(("spikes", "v", "v_final"), values, ref_values):
                assert torch.equal(a, b), f"{where}: {name} differs from the reference"
            for name, a, b in zip(("x", "tau"), grads, ref_grads):
                assert rel_err(a, b) <= tol, f"{where}: dL/d{name} off the reference by {rel_err(a, b):.3g}"
            # and the tiling, thread count and store kind change no bit
            first = first or grads
            for a, b in zip(grads, first):
                assert torch.equal(a, b), f"{where}: gradients differ from the first run's bits"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_leaky_tiles_equal_the_reference(cpu_settings, shape, dtype):
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    x, tau, (g_out, _) = _inputs(shape, dtype, {"per_neuron": True})

    def run(impl):
        xx, tt = x.clone().requires_grad_(), tau.clone().requires_grad_()
        y = leaky_reference(xx, tt, norm_input=True) if impl == "reference" else leaky_integrator(xx, tt, norm_input=True)
        return y.detach(), torch.autograd.grad((y * g_out).sum(), (xx, tt))

    ref_y, ref_grads = run("reference")
    for mode, threshold in THRESHOLDS.items():
        cpu_settings.set_stream_threshold(threshold)
        for threads in THREADS:
            torch.set_num_threads(threads)
            y, grads = run("exodus")
            where = f"{mode} outputs, {threads} threads"
            assert rel_err(y, ref_y) <= tol, f"{where}: output off the reference"
            for name, a, b in zip(("x", "tau"), grads, ref_grads):
                assert rel_err(a, b) <= tol, f"{where}: dL/d{name} off the reference by {rel_err(a, b):.3g}"


def test_the_stream_threshold_is_a_process_setting(cpu_settings):
    default = cpu_settings.stream_threshold()
    assert default >= 1 << 20  # a last-level cache's size
    cpu_settings.set_stream_threshold(0)
    assert cpu_settings.stream_threshold() == 0
    cpu_settings.set_stream_threshold(None)
    assert cpu_settings.stream_threshold() == default
    for bad in (-1, 1.5, True, "64"):
        with pytest.raises(ValueError, match="set_stream_threshold: n_bytes must be an int >= 0 or None"):
            cpu_settings.set_stream_threshold(bad)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_the_nonfinite_flag_sees_every_tile_and_chunk(cpu_settings, shape):
    """The forward's NaN/Inf probe is one chunk wide (row_tiles.inc): a value in any chunk of any tile
    of any row raises the flag, and nothing else does."""
    import exodus_lightning.ops  # noqa: F401  (registers the ops)

    B, T, N = shape
    alpha, theta = torch.tensor([0.9]), torch.tensor([1.0])
    places = [None, (B - 1, T - 1, N - 1), (0, 0, 0), (B // 2, T // 2, 256 + 7), (0, T - 1, N // 2)]
    for mode, threshold in THRESHOLDS.items():
        cpu_settings.set_stream_threshold(threshold)
        for threads in THREADS:
            torch.set_num_threads(threads)
            for where, value in zip(places, [None, math.nan, math.inf, -math.inf, math.nan]):
                x = torch.rand(shape) * 0.5
                if where is not None:
                    x[where] = value
                flag = torch.ops.exodus.lif_forward(x, alpha, theta, None, None, None, 0, 1, None, False, False,
                                                    True)[5]
                assert flag.item() == int(where is not None), f"{mode}, {threads} threads, {value} at {where}"
