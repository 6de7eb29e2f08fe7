"""The custom ops: opcheck, gradcheck where finite differences apply, torch.compile, the leaky
integrator against its reference, and the CUDA driver code run on the CPU through the emulation
shim (docs/architecture.md §2)."""

from __future__ import annotations

import math
import re

import pytest
import torch

import exodus_lightning.ops  # noqa: F401  (registers the ops)
from exodus_lightning import _native
from exodus_lightning.functional import leaky_integrator, lif, lif_with_membrane
from exodus_lightning.surrogate import Gaussian
from tests.reference import leaky_reference, lif_reference, rel_err
from exodus_lightning.neuron_parameters import LIFParameters


def _lif_forward_args(dtype, per_neuron, synapse, clamp):
    g = torch.Generator().manual_seed(0)
    B, T, N = 2, 9, 5
    x = torch.rand(B, T, N, generator=g, dtype=dtype) * 1.5
    alpha = (torch.rand(N, generator=g, dtype=dtype) * 0.5 + 0.4) if per_neuron else torch.tensor([0.8], dtype=dtype)
    theta = torch.full((N,) if per_neuron else (1,), 0.9, dtype=dtype)
    beta = torch.tensor([0.7], dtype=dtype) if synapse else None
    v0 = torch.rand(B, N, generator=g, dtype=dtype)
    i0 = torch.rand(B, N, generator=g, dtype=dtype) if synapse else None
    return x, alpha, theta, beta, v0, i0, 0, 1, clamp, True, synapse


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_neuron,synapse,clamp", [(False, False, None), (True, True, -0.5)])
def test_opcheck_lif_ops(dtype, per_neuron, synapse, clamp):
    args = _lif_forward_args(dtype, per_neuron, synapse, clamp)
    torch.library.opcheck(torch.ops.exodus.lif_forward.default, args)
    x, alpha, theta, beta, v0, i0 = args[:6]
    spikes, v, _, _, i_trace, _ = torch.ops.exodus.lif_forward(*args)
    g = torch.randn_like(spikes)
    for surrogate, sid in [(None, 1), (torch.rand_like(v), 0)]:
        bw_args = (g, None, torch.randn_like(v0), torch.randn_like(v0) if synapse else None, v, surrogate, sid,
                   0.5, 1.0, 0.0, alpha, theta, beta, v0, i_trace if synapse else x, 0, 1, clamp, True, 0, True)
        torch.library.opcheck(torch.ops.exodus.lif_backward.default, bw_args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_leaky_ops(dtype):
    x = torch.randn(2, 7, 4, dtype=dtype, requires_grad=True)
    alpha = torch.tensor([0.3, 0.5, 0.9, 1.0], dtype=dtype, requires_grad=True)
    v0 = torch.randn(2, 4, dtype=dtype, requires_grad=True)
    torch.library.opcheck(torch.ops.exodus.leaky_forward.default, (x, alpha, v0, True))
    out = torch.ops.exodus.leaky_forward(x.detach(), alpha.detach(), v0.detach(), True)
    torch.library.opcheck(torch.ops.exodus.leaky_backward.default,
                          (torch.randn_like(out), alpha.detach(), v0.detach(), out, x.detach(), True, True))


@pytest.mark.parametrize("norm_input", [False, True])
def test_gradcheck_leaky_integrator(norm_input):
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([2.0, 5.0, 40.0], dtype=torch.float64, requires_grad=True)
    v0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, tau, v0: leaky_integrator(x, tau, v0=v0, norm_input=norm_input),
                                    (x, tau, v0))


@pytest.mark.parametrize("norm_input", [False, True])
def test_gradcheck_lif_without_spikes(norm_input):
    x = torch.rand(2, 8, 3, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([3.0, 7.0, 20.0], dtype=torch.float64, requires_grad=True)
    v0 = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    i0 = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)

    def f(x, tau, v0, i0):
        # threshold so high that nothing spikes, and a surrogate that vanishes far below it: the
        # outputs are the smooth membrane and final state
        s, v, state = lif_with_membrane(x, LIFParameters(tau_mem=tau, threshold=1e3, tau_syn=4.0, norm_input=norm_input, min_v_mem=-100.0, surrogate=Gaussian()), v0=v0, i0=i0)
        assert s.sum() == 0
        return v, state.v, state.i

    assert torch.autograd.gradcheck(f, (x, tau, v0, i0))


@pytest.mark.parametrize("norm_input", [False, True])
def test_leaky_integrator_matches_reference(norm_input):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 50, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([[1.5, 4.0, 30.0]], dtype=torch.float64, requires_grad=True)
    v0 = torch.randn(3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(3, 50, 2, 3, generator=g, dtype=torch.float64)
    out, last = leaky_integrator(x, tau, v0=v0, norm_input=norm_input, return_state=True)
    ref = leaky_reference(x, tau, v0=v0, norm_input=norm_input)
    assert rel_err(out, ref) <= 1e-12
    assert torch.equal(last, out[:, -1])
    got = torch.autograd.grad((out * gy).sum(), (x, tau, v0))
    exp = torch.autograd.grad((ref * gy).sum(), (x, tau, v0))
    for a, b in zip(got, exp):
        assert rel_err(a, b) <= 1e-10
    bptt = leaky_integrator(x, tau, v0=v0, norm_input=norm_input, backend="bptt")
    assert rel_err(bptt, ref) <= 1e-12


def test_torch_compile_fullgraph_matches_eager():
    def step(x, w, tau):
        h = lif(x @ w, LIFParameters(tau_mem=tau, tau_syn=3.0))
        return leaky_integrator(h, 5.0).sum(1)

    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 20, 6, generator=g)
    w = (torch.randn(6, 8, generator=g) * 0.8).requires_grad_()
    tau = torch.full((8,), 6.0).requires_grad_()
    eager = step(x, w, tau)
    ge = torch.autograd.grad(eager.square().sum(), (w, tau))
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    out = compiled(x, w, tau)
    gc = torch.autograd.grad(out.square().sum(), (w, tau))
    assert torch.allclose(out, eager, rtol=1e-6, atol=1e-6)
    for a, b in zip(gc, ge):
        assert rel_err(a, b) <= 1e-5


@pytest.mark.slow
def test_torch_compile_inductor_fullgraph():
    def f(x):
        return lif(x, LIFParameters(tau_mem=4.0)).sum()

    x = torch.rand(2, 10, 5, requires_grad=True)
    compiled = torch.compile(f, fullgraph=True)
    (g1,) = torch.autograd.grad(compiled(x), x)
    (g2,) = torch.autograd.grad(f(x), x)
    assert rel_err(g1, g2) <= 1e-6


# ------------------------------------------------------------------ CUDA driver code on the CPU


@pytest.fixture
def emulated(monkeypatch):
    """Route the ops' CPU calls to the CUDA drivers compiled for the host (exodus_emu_*)."""
    emu = _native.emulation()
    monkeypatch.setattr(_native, "for_device", lambda device_type: emu)
    return emu


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", [
    dict(tau_mem=5.0, reset="subtract", spike="single"),
    dict(tau_mem="per_neuron", reset="zero", spike="multi", tau_syn=3.0, min_v_mem=-0.5, norm_input=True),
    dict(tau_mem=math.inf, spike=3, threshold="per_neuron"),
])
def test_cuda_driver_emulated_matches_cpu_driver(config, dtype, monkeypatch):
    g = torch.Generator().manual_seed(9)
    B, T, N = 3, 33, 70  # N not a multiple of any block size: exercises the tail of the grid-stride loop
    x = (torch.rand(B, T, N, generator=g, dtype=torch.float64) * 1.5).to(dtype)
    cfg = dict(config)
    if cfg.get("tau_mem") == "per_neuron":
        cfg["tau_mem"] = torch.linspace(2, 30, N, dtype=dtype).requires_grad_()
    if cfg.get("threshold") == "per_neuron":
        cfg["threshold"] = torch.linspace(0.5, 2, N, dtype=dtype)
    gs = torch.randn(B, T, N, generator=g, dtype=torch.float64).to(dtype)
    v0 = torch.rand(B, N, generator=g, dtype=torch.float64).to(dtype)

    def run():
        xx = x.clone().requires_grad_()
        v00 = v0.clone().requires_grad_()
        leaves = [xx, v00] + ([cfg["tau_mem"]] if isinstance(cfg["tau_mem"], torch.Tensor) else [])
        s, v, state = lif_with_membrane(xx, LIFParameters(**cfg), v0=v00)
        grads = torch.autograd.grad((s * gs).sum() + state.v.sum() + v.sum() * 0.1, leaves)
        y = leaky_integrator(xx, 4.0, v0=v00, norm_input=True)
        gl = torch.autograd.grad((y * gs).sum(), [xx, v00])
        return (s, v, state.v, y) + tuple(grads) + tuple(gl)

    on_cpu = run()
    emu = _native.emulation()
    monkeypatch.setattr(_native, "for_device", lambda device_type: emu)
    on_emu = run()
    assert on_cpu[0].sum() > 0
    for a, b in zip(on_emu, on_cpu):
        # the same equations in the same order: equal to rounding of the SIMD exp polynomial
        assert torch.equal(a, b) or rel_err(a, b) <= (1e-12 if dtype == torch.float64 else 1e-6)
    assert torch.equal(on_emu[0], on_cpu[0])


def test_emulated_driver_reports_errors_like_the_gpu_driver(emulated):
    x = torch.rand(2, 4, 3, dtype=torch.float64)
    alpha = torch.tensor([0.5], dtype=torch.float64)
    out = torch.empty_like(x)
    args = _native.LeakyForwardArgs(B=2, T=4, N=3, dtype=2, device=0, stream=None, x=x.data_ptr(),
                                    alpha=alpha.data_ptr(), alpha_per_neuron=0, v0=None, norm_input=0,
                                    out=out.data_ptr())
    with pytest.raises(RuntimeError, match="float32 and float64 only"):
        emulated.call("leaky_forward", args)
    args.alpha = None
    with pytest.raises(RuntimeError, match="alpha and out are required"):
        emulated.call("leaky_forward", args)


def test_cuda_library_was_installed():
    """.ci/run builds with EXODUS_REQUIRE_CUDA=ON: the CUDA library must be in the package."""
    path = _native.find_library(_native.CUDA_LIBRARY)
    assert path is not None, "the CUDA library was not built/installed (nvcc missing at install time?)"
    lib = _native.NativeLibrary(_native.CUDA_LIBRARY, path)  # loads without a GPU (static cudart)
    info = lib.build_info()
    assert "toolkit" in info and "architectures" in info, info


def test_cpu_library_reports_build_info():
    """The build line names the language standard, the ISA copies compiled in and the one in use."""
    info = _native.cpu().build_info()
    assert re.match(r"cpu: C\+\+\d+, (OpenMP \d+|no OpenMP), isa [\w+]+ \(using \w+\)", info), info
    compiled = re.search(r"isa ([\w+]+) ", info).group(1).split("+")
    assert "baseline" in compiled and re.search(r"\(using (\w+)\)", info).group(1) in compiled


def test_reference_is_independent_of_the_backend():
    """Guard against the reference silently using the package: it must produce the textbook IF trace."""
    x = torch.tensor([[[0.6], [0.6], [0.6], [0.6]]], dtype=torch.float64)
    s, v, _, _ = lif_reference(x, math.inf)
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert v.flatten().tolist() == pytest.approx([0.6, 1.2, 0.8, 1.4])
