"""The native runtime as one piece (issue 24): one library per device, reported by ``info`` with its
ABI version, instruction sets and CUDA architectures; one ABI version the loader checks; one
instruction-set selection ($EXODUS_ISA); one registry (``_native.ENTRY_POINTS``) through which every
op passes its tensors, so that strided, stride-0 and offset tensors reach the kernels as the
contiguous tensors they stand for (the memory errors issue 22 fixed op by op cannot come back)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Callable

import pytest
import torch

import exodus_lightning.ops  # noqa: F401  (registers the ops)
from exodus_lightning import _native
from exodus_lightning.ops import event as event_ops
from exodus_lightning.ops import sparse as sparse_ops
from tests.reference import forward_ref, input_trace_reference, leaky_reference, lif_reference, sparse_lif_reference

D = torch.float64
B, T, N = 2, 7, 5


# ------------------------------------------------------------------ one library per device


def test_info_lists_the_three_libraries_with_abi_isa_and_architectures():
    from exodus_lightning.info import report

    lines = report().splitlines()
    abi = f"ABI version {_native.ABI_VERSION}"
    for name in (_native.CPU_LIBRARY, _native.CUDA_LIBRARY, _native.EMULATION_LIBRARY):
        (line,) = [ln for ln in lines if ln.strip().startswith(f"{_native.library_filename(name)}: ")]
        assert "loaded from" in line and line.endswith(abi), line
    text = "\n".join(lines)
    cpu = _native.cpu()
    assert f"instruction sets: {', '.join(cpu.available_isas())} available, using {cpu.isa()}" in text
    assert f"streaming stores for outputs over {cpu.stream_threshold() / 2**20:.1f} MiB per call" in text
    assert f"${_native.ISA_ENV} selects another" in text
    assert "architectures" in _native.cuda().build_info() and "architectures " in text
    # nothing left of the nine libraries of before
    assert not any(old in text for old in ("libexodus_sparse", "libexodus_event"))


def test_each_library_exports_every_operation_of_every_algorithm():
    for lib in (_native.cpu(), _native.cuda(), _native.emulation()):
        for entry, ep in _native.ENTRY_POINTS.items():
            assert hasattr(lib.dll, ep.symbol(entry, lib.name)), (lib.name, entry)


def test_one_last_error_per_library_for_every_algorithm():
    lib = _native.emulation()
    for entry, args in (("sparse_forward", _native.SparseForwardArgs(B=1, T=1, N=1, dtype=7)),
                        ("event_srm_forward", _native.SRMForwardArgs(B=1, T=1, N=1, dtype=0, decay_m=2.0)),
                        ("leaky_forward", _native.LeakyForwardArgs(B=1, T=1, N=1, dtype=0))):
        with pytest.raises(RuntimeError, match=rf"{lib.name}\.{entry}, code 1\)") as err:
            lib.call(entry, args)
        assert lib.last_error() and lib.last_error() in str(err.value)


def test_a_library_of_another_abi_is_refused(monkeypatch):
    path = _native.find_library(_native.CPU_LIBRARY)
    monkeypatch.setattr(_native, "ABI_VERSION", _native.ABI_VERSION + 1)
    with pytest.raises(_native.NativeLibraryError,
                       match=rf"has ABI version {_native.ABI_VERSION - 1}, the Python package expects "
                             rf"{_native.ABI_VERSION}; the package and its native libraries come from different "
                             "builds. Reinstall"):
        _native.NativeLibrary(_native.CPU_LIBRARY, path)


def test_a_library_without_a_declared_entry_point_is_refused(monkeypatch):
    monkeypatch.setitem(_native.ENTRY_POINTS, "sparse_nothing",
                        _native.EntryPoint("sparse_", _native.SparseTraceArgs, ()))
    with pytest.raises(_native.NativeLibraryError, match="does not export exodus_sparse_emu_nothing"):
        _native.NativeLibrary(_native.EMULATION_LIBRARY, _native.find_library(_native.EMULATION_LIBRARY))


# ------------------------------------------------------------------ one instruction-set selection


def _isa_in_subprocess(isa: str) -> subprocess.CompletedProcess:
    code = ("from exodus_lightning import _native; import torch; from exodus_lightning.functional import lif; "
            "lib = _native.cpu(); print(lib.isa(), lib.build_info()); "
            "x = torch.rand(2, 9, 70, generator=torch.Generator().manual_seed(0)); "
            "from exodus_lightning import LIFParameters; print(int(lif(x, LIFParameters(tau_mem=3.0)).sum()))")
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                          env={**os.environ, _native.ISA_ENV: isa}, timeout=120)


@pytest.mark.parametrize("isa", _native.ISAS)
def test_the_isa_variable_selects_a_copy_for_every_algorithm(isa):
    """$EXODUS_ISA chooses the copy that the core and the sparse kernels run (one selection), and the
    copies give the same spikes."""
    available = _native.cpu().available_isas()
    r = _isa_in_subprocess(isa)
    assert r.returncode == 0, r.stderr
    first, spikes = r.stdout.strip().splitlines()
    if isa in available:
        assert first.startswith(f"{isa} ") and first.endswith(f"(using {isa})"), first
        assert "RuntimeWarning" not in r.stderr
    else:  # a copy this CPU or build lacks: the best one runs, with a warning naming the available ones
        assert first.startswith(f"{available[-1]} "), first
        assert f"{_native.ISA_ENV}={isa!r} is not a kernel copy" in r.stderr
        assert f"available: {', '.join(available)}" in r.stderr
    reference = _isa_in_subprocess("baseline").stdout.strip().splitlines()[1]
    assert spikes == reference


# ------------------------------------------------------------------ pointers: one place, contiguous, held


def _variants(t: torch.Tensor) -> dict[str, torch.Tensor]:
    """``t`` as a transposed (non-contiguous) view, as a view at a storage offset, and, for the
    stride-0 case, a tensor expanded from one sample (compared with its own contiguous copy)."""
    transposed = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not transposed.is_contiguous() or t.shape[-1] == 1
    big = torch.cat([torch.full_like(t[:1], float("nan")), t])
    offset = big[1:]
    assert offset.storage_offset() > 0
    expanded = t[:1].expand(t.shape)
    assert expanded.stride(0) == 0
    return {"transposed": transposed, "offset": offset, "stride0": expanded}


@pytest.fixture(params=["cpu", "emulation"])
def library(request, monkeypatch):
    """Every op's calls on CPU tensors go to the CPU library or to the CUDA drivers compiled for the host."""
    if request.param == "emulation":
        emu = _native.emulation()
        for module in (_native, sparse_ops, event_ops):
            monkeypatch.setattr(module, "for_device", lambda device_type: emu)
    return request.param


def _check_strided(op: Callable[[torch.Tensor], tuple], x: torch.Tensor) -> None:
    """``op`` on each strided variant of ``x`` equals ``op`` on that variant's contiguous copy."""
    for kind, xs in _variants(x).items():
        got, want = op(xs), op(xs.contiguous())
        for a, b in zip(got, want):
            assert torch.equal(a, b), kind


def _input(seed: int, shape=(B, T, N), scale: float = 1.5) -> torch.Tensor:
    return scale * torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=D)


def test_lif_ops_take_strided_tensors(library):
    tau = 4.0
    alpha = torch.tensor([math.exp(-1.0 / tau)], dtype=D).expand(N)  # a stride-0 parameter
    theta = torch.ones(1, dtype=D)

    def forward(x):
        return torch.ops.exodus.lif_forward(x, alpha, theta, None, None, None, 0, 1, None, False, False)[:3]

    x = _input(0)
    _check_strided(forward, x)
    spikes, v, _ = forward(_variants(x)["transposed"])
    s_ref, v_ref, _, _ = lif_reference(x, tau)
    assert torch.equal(spikes, s_ref.detach()) and torch.allclose(v, v_ref.detach(), rtol=1e-12, atol=1e-12)

    def backward(g):
        v = forward(x)[1]
        return torch.ops.exodus.lif_backward(g, None, None, None, v, None, 1, 0.5, 1.0, 0.0, alpha, theta, None,
                                             None, None, 0, 1, None, False, 0, False)[:2]

    _check_strided(backward, _input(1))


def test_leaky_ops_take_strided_tensors(library):
    tau = 3.0
    alpha = torch.tensor([math.exp(-1.0 / tau)], dtype=D)
    x = _input(2)
    _check_strided(lambda xs: (torch.ops.exodus.leaky_forward(xs, alpha, None, True),), x)
    out = torch.ops.exodus.leaky_forward(_variants(x)["offset"], alpha, None, True)
    assert torch.allclose(out, leaky_reference(x, tau, norm_input=True).reshape(B, T, N), rtol=1e-12, atol=1e-12)
    v0 = _input(3, (B, N))
    _check_strided(lambda g: torch.ops.exodus.leaky_backward(g, alpha, v0, out, x, True, True), _input(4))


def test_sparse_ops_take_strided_tensors(library):
    args = (0.9, 1.0, 1.0, 0.3, 5.0, True, True)
    h = _input(5)
    _check_strided(lambda hs: sparse_ops.lif_forward(hs, *args), h)
    spikes, v, counts = sparse_ops.lif_forward(_variants(h)["transposed"], *args)
    s_ref, v_ref = sparse_lif_reference(h, *args)
    assert torch.equal(spikes, s_ref) and torch.equal(v, v_ref)
    x = (_input(6, scale=1.0) < 0.4).to(D)
    _check_strided(lambda xs: (sparse_ops.input_trace(xs, 0.9, True),), x)
    assert torch.equal(sparse_ops.input_trace(_variants(x)["offset"], 0.9, True), input_trace_reference(x, 0.9, True))
    _check_strided(lambda g: (sparse_ops.dense_backward(v, g, 0.9, 1.0, 1.0, 0.3, 5.0, False, True),), _input(7))
    active = sparse_ops.collect_active(v, counts, 1.0, 0.3, 5.0)
    in_active = sparse_ops.active_set_from_mask(x != 0, dtype=D)
    trace = sparse_ops.input_trace(x, 0.9, True)
    w = torch.randn(N, N, generator=torch.Generator().manual_seed(8), dtype=D)

    def backward(g):
        out = sparse_ops.sparse_backward(active, g, 0.9, 1.0, False, True, trace.transpose(1, 2).contiguous()
                                         .transpose(1, 2), w.t().contiguous().t(), 2, in_active)
        return out["e"], out["grad_w"], out["grad_x"]

    _check_strided(backward, _input(9))


def test_event_ops_take_strided_tensors(library):
    cfg = SimpleNamespace(tau_mem=8.0, tau_syn=4.0, theta=1.0, decay="exp")
    decays = (math.exp(-1 / 8.0), math.exp(-1 / 4.0), math.exp(-1 / 3.0), 8.0 / (8.0 - 4.0))
    current = _input(10, scale=0.9)
    _check_strided(lambda c: event_ops.srm_forward(c, *decays, cfg.theta, True), current)
    s, du, dug, u = event_ops.srm_forward(_variants(current)["offset"], *decays, cfg.theta, True)
    s_ref, u_ref = forward_ref(current, cfg)
    assert torch.equal(s, s_ref) and torch.allclose(u, u_ref, rtol=1e-10, atol=1e-12)
    _check_strided(lambda g: event_ops.srm_backward(g, s, du, dug, *decays, 0.0), _input(11))


def test_an_output_that_is_not_contiguous_is_refused():
    x = _input(12)
    out = torch.empty(B, N, T, dtype=D).transpose(1, 2)
    alpha = torch.tensor([0.5], dtype=D)
    with pytest.raises(RuntimeError, match=r"internal error: output out of shape \(2, 7, 5\) .* is not contiguous"):
        _native.cpu().call("leaky_forward", B=B, T=T, N=N, dtype=1, device=0, stream=None, x=x, alpha=alpha,
                           alpha_per_neuron=0, v0=None, norm_input=0, out=out)


_CORE_CASES = [
    dict(),  # the plain neuron: single spike, subtractive reset, EXODUS backward
    dict(spike="multi", reset="zero", tau_syn=3.0, min_v_mem=-0.4, norm_input=True),
    dict(spike=3, surrogate_name="boxcar"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", range(len(_CORE_CASES)))
@pytest.mark.parametrize("backend", ["exodus", "slayer"])
def test_every_copy_of_the_core_kernels_gives_the_same_bits(dtype, case, backend):
    """The baseline, AVX2 and AVX-512 copies of the LIF and leaky kernels (native/src/cpu/) do the
    same arithmetic: spikes, membrane, final state and every gradient are equal bit for bit."""
    from exodus_lightning import LIFParameters
    from exodus_lightning.functional import leaky_integrator, lif_with_membrane
    from exodus_lightning.surrogate import Boxcar

    lib = _native.cpu()
    kw = dict(_CORE_CASES[case])
    if kw.pop("surrogate_name", None) == "boxcar":
        kw["surrogate"] = Boxcar()
    g = torch.Generator().manual_seed(case)
    x = (torch.rand(3, 37, 300, generator=g, dtype=torch.float64) * 1.6).to(dtype)  # 300: a block and a tail
    tau = torch.linspace(2.0, 30.0, 300, dtype=dtype)
    up = [torch.randn(3, 37, 300, generator=g, dtype=torch.float64).to(dtype) for _ in range(3)]

    def run():
        xx, tt = x.clone().requires_grad_(), tau.clone().requires_grad_()
        s, v, state = lif_with_membrane(xx, LIFParameters(tau_mem=tt, **kw), backend=backend)
        y = leaky_integrator(s * 0.5 + xx, tt * 0.5, norm_input=True)
        loss = (s * up[0]).sum() + (v * up[1]).sum() + (y * up[2]).sum() + state.v.sum()
        return (s, v, state.v, y) + torch.autograd.grad(loss, (xx, tt))

    before = lib.isa()
    try:
        lib.set_isa("baseline")
        reference = run()
        assert 0 < reference[0].sum() < reference[0].numel()
        for isa in lib.available_isas():
            lib.set_isa(isa)
            for name, a, b in zip(("spikes", "v", "v_final", "leaky", "dx", "dtau"), run(), reference):
                assert torch.equal(a, b), f"{isa}: {name} differs from the baseline copy"
    finally:
        lib.set_isa(before)
