"""Sparse spiking gradient descent on CUDA (issue 10): the CUDA drivers of native/src/sparse run on
the CPU through the emulation library (libexodus_cuda_emulation) and must equal the CPU library
for every operation; their argument errors; the CUDA library is installed; and, on a machine with a
GPU, the real kernels against the CPU (skipped with the reason otherwise)."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning import _native
from exodus_lightning.algorithms import sparse_sgd as S
from exodus_lightning.ops import sparse as ops
from tests.reference import rel_err
from tests.test_sparse_sgd import _net, _run, _weights, ref_layer

BETA = 100.0
THETA = 1.0
ALPHA = math.exp(-1 / 10.0)
HAS_GPU = torch.cuda.is_available()


def _tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == torch.float64 else 1e-5


def _same(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, name: str, exact: bool = False) -> None:
    """Bit for bit (``exact``: the element-wise arithmetic is the same on both sides), else equal
    to rounding (sums whose order the CPU's SIMD may change)."""
    a, b = a.cpu(), b.cpu()
    assert a.shape == b.shape and a.dtype == b.dtype, (name, a.shape, b.shape, a.dtype, b.dtype)
    if torch.equal(a, b):
        return
    assert not exact, f"{name}: not bit-identical (max diff {(a.double() - b.double()).abs().max().item()})"
    assert rel_err(a, b) <= _tol(dtype), f"{name}: relative error {rel_err(a, b)}"


@pytest.fixture
def emulated(monkeypatch):
    """Route the sparse ops' CPU calls to the CUDA drivers compiled for the host."""
    emu = ops.emulation_library()
    monkeypatch.setattr(ops, "for_device", lambda device_type: emu)
    return emu


# ------------------------------------------------------------------ every op, emulated vs CPU

# (B, T, N_out, N_in): B * N > 256 and N_out * N_in > 256, so the grids have several blocks and
# partial last blocks; sizes prime-ish so that no block or SIMD width divides them.
SIZES = (3, 37, 131, 45)


def _case(kind: str, dtype: torch.dtype, seed: int = 0) -> dict:
    """Inputs of one layer: ``kind`` "mixed" (a part of the entries active), "none" (nothing
    active: the membrane stays far below threshold) or "all" (b_th = inf)."""
    B, T, N, N_in = SIZES
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(B, T, N, generator=g, dtype=torch.float64) * 0.35
    b_th = {"mixed": 0.2, "none": 0.2, "all": math.inf}[kind]
    if kind == "none":
        h = h * 0.01  # V < 0.1 everywhere: |V - 1| >= 0.2
    x = (torch.rand(B, T, N_in, generator=g) < 0.3).to(torch.float64)
    w = torch.randn(N, N_in, generator=g, dtype=torch.float64) / math.sqrt(N_in)
    grad = torch.randn(B, T, N, generator=g, dtype=torch.float64)
    grad[:, :, ::7] = 0  # entries with e = 0 (skipped by the weight gradient)
    # the input layer's active set: from a membrane of its own (every collect path), same kind
    v_in = 1 + (torch.rand(B, T, N_in, generator=g, dtype=torch.float64) * 2 - 1) * 0.6
    if kind == "none":
        v_in = v_in + 5
    return {k: t.to(dtype) for k, t in dict(h=h, x=x, w=w, grad=grad, v_in=v_in).items()} | {"b_th": b_th}


def _all_ops(c: dict, delay: bool, exact: bool, strict: bool) -> dict:
    """Every operation of the library on one case; returns the outputs by name."""
    rs = 1.0 if delay else ALPHA  # reset after / before the leak
    spikes, v, counts = ops.lif_forward(c["h"], ALPHA, THETA, rs, c["b_th"], BETA, delay, strict)
    active = ops.collect_active(v, counts, THETA, c["b_th"], BETA)
    in_counts = S.active_mask(c["v_in"], THETA, c["b_th"]).permute(0, 2, 1).sum(2).reshape(-1)
    in_active = ops.collect_active(c["v_in"], in_counts, THETA, c["b_th"], BETA)
    trace = ops.input_trace(c["x"], ALPHA, delay)
    K = active.count
    out = {"spikes": spikes, "v": v, "counts": counts, "offsets": active.offsets, "times": active.times[:K],
           "fvals": active.fvals[:K], "in_times": in_active.times[:in_active.count], "trace": trace}
    for mode in (0, 1, 2):
        r = ops.sparse_backward(active, c["grad"], ALPHA, rs, exact, delay, trace if mode != 1 else None,
                                c["w"], mode, in_active if mode == 2 else None)
        out[f"e{mode}"] = r["e"][:K]
        for key in ("grad_w", "delta", "grad_x"):
            if key in r:
                out[f"{key}{mode}"] = r[key]
    out["dense_delta"] = ops.dense_backward(v, c["grad"], ALPHA, THETA, rs, c["b_th"], BETA, exact, delay)
    out["K"] = torch.tensor(K)
    out["K_in"] = torch.tensor(in_active.count)
    return out


# Outputs whose arithmetic is element-wise and sequential in time on both sides: bit for bit.
BIT_EXACT = ("spikes", "v", "counts", "offsets", "times", "fvals", "in_times", "trace", "K", "K_in")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["mixed", "none", "all"])
@pytest.mark.parametrize("delay,exact,strict", [(True, False, True), (True, True, True), (False, False, False),
                                                (False, True, True)],
                         ids=["delay-detached", "delay-exact", "nodelay-detached-nonstrict", "nodelay-exact"])
def test_emulated_ops_match_cpu(dtype, kind, delay, exact, strict, monkeypatch):
    c = _case(kind, dtype)
    on_cpu = _all_ops(c, delay, exact, strict)
    emu = ops.emulation_library()
    monkeypatch.setattr(ops, "for_device", lambda device_type: emu)
    on_emu = _all_ops(c, delay, exact, strict)
    assert ops.for_device("cpu") is emu and emu is not ops.library()
    assert on_cpu.keys() == on_emu.keys()
    for name in on_cpu:
        _same(on_emu[name], on_cpu[name], dtype, name, exact=name in BIT_EXACT)
    B, T, N, _ = SIZES
    K = int(on_cpu["K"])
    if kind == "none":
        assert K == 0 and int(on_cpu["K_in"]) == 0
        for name in ("grad_w0", "grad_x2", "delta1", "dense_delta"):
            assert not on_emu[name].any(), name
    elif kind == "all":
        assert K == B * T * N
    else:
        # the case must exercise the sparse paths: partly active, nonzero gradients everywhere
        assert 0 < K < B * T * N and 0 < int(on_cpu["K_in"])
        assert on_cpu["spikes"].sum() > 0
        for name in ("grad_w0", "grad_x2", "delta1"):
            assert on_cpu[name].abs().sum() > 0, name


def test_emulated_grid_stride_beyond_the_block_limit(emulated):
    """More (b, i) pairs than 65535 blocks of 256 threads: the grid is capped and the grid-stride
    loop must cover the rest (the first threads take a second pair)."""
    B, T, N = 1, 1, 65535 * 256 + 300
    x = torch.zeros(B, T, N, dtype=torch.float32)
    x[0, 0, -300:] = torch.arange(1, 301, dtype=torch.float32)
    tr = ops.input_trace(x, 0.5, False)  # no delay: tr[0] = x[0]
    assert torch.equal(tr[0, 0, -300:], x[0, 0, -300:]) and not tr[0, 0, :-300].any()


def test_memoised_delta_needs_only_needed_times(emulated):
    """Input mode 2 through the device drivers equals the naive O(T^2) delta (as the CPU test)."""
    torch.manual_seed(0)
    B, T, N, N_in = 2, 60, 7, 5
    v = 1 + 0.4 * torch.randn(B, T, N, dtype=torch.float64)
    mask = (v - 1).abs() < 0.2
    f = S.truncated_surrogate(v, 1.0, BETA, 0.2)
    act = ops.active_set_from_mask(mask, f)
    g = torch.randn(B, T, N, dtype=torch.float64)
    e = g * f
    naive = torch.zeros_like(e)
    for t in range(T):
        for k in range(t + 1, T):
            naive[:, t] += ALPHA ** (k - t - 1) * e[:, k]
    w = torch.randn(N, N_in, dtype=torch.float64)
    in_mask = torch.rand(B, T, N_in) < 0.1
    in_mask[1] = False  # a sample without needed times
    out = ops.sparse_backward(act, g, ALPHA, 1.0, False, True, None, w, 2, ops.active_set_from_mask(in_mask))
    torch.testing.assert_close(out["grad_x"], torch.where(in_mask, naive @ w, torch.zeros(())), rtol=1e-11,
                               atol=1e-13)
    need_offsets, need_times, need_index = ops.needed_times(ops.active_set_from_mask(in_mask))
    assert need_offsets[-1] == int(in_mask.any(2).sum()) and need_offsets[2] == need_offsets[1]
    assert torch.equal(need_index.reshape(B, T) >= 0, in_mask.any(2))


@pytest.mark.parametrize("gradient", ["detached", "exact"])
@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_emulated_network_equals_bptt_reference(gradient, backend, emulated):
    """Two fused layers through the device drivers: spikes bit for bit and gradients equal to the
    float64 BPTT reference with the truncated surrogate (tests/test_sparse_sgd.py)."""
    torch.manual_seed(2)
    sizes = [12, 16, 10]
    x = (torch.rand(3, 40, sizes[0], dtype=torch.float64) < 0.3).to(torch.float64)
    ws = _weights(sizes, seed=2, scale=3.0)
    G = torch.randn(3, 40, sizes[-1], dtype=torch.float64)
    wr = [w.clone().requires_grad_() for w in ws]
    xr = x.clone().requires_grad_()
    y = xr
    for w in wr:
        y = ref_layer(y, w, ALPHA, 0.2, exact=gradient == "exact")
    (y * G).sum().backward()
    layers = _net(sizes, ws, 0.2, backend, gradient)
    xs = x.clone().requires_grad_()
    out = _run(layers, xs)
    assert torch.equal(out, y.detach())
    (out * G).sum().backward()
    for layer, w in zip(layers, wr):
        assert w.grad.abs().sum() > 0
        torch.testing.assert_close(layer.weight.grad, w.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(xs.grad, xr.grad, rtol=1e-10, atol=1e-12)


def test_emulated_training_step_matches_cpu(monkeypatch):
    """One optimiser step of SparseSNN (float32, regularisers on): emulated drivers vs CPU library."""

    def step():
        torch.manual_seed(0)
        net = S.SparseSNN(10, 3, hidden=(24, 17), b_th=0.2)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = (torch.rand(4, 30, 10) < 0.3).float()
        loss = net(x).amax(1).logsumexp(1).mean()
        loss.backward()
        grads = [p.grad.clone() for p in net.parameters()]
        opt.step()
        return [loss.detach()] + grads + [p.detach().clone() for p in net.parameters()]

    on_cpu = step()
    emu = ops.emulation_library()
    monkeypatch.setattr(ops, "for_device", lambda device_type: emu)
    on_emu = step()
    for i, (a, b) in enumerate(zip(on_emu, on_cpu)):
        _same(a, b, torch.float32, f"tensor {i}")


# ------------------------------------------------------------------ errors


def _forward_args(inp, out, counts, **kw):
    B, T, N = inp.shape
    args = dict(B=B, T=T, N=N, dtype=1, h=inp.data_ptr(), alpha=0.9, theta=1.0, reset_scale=1.0, b_th=0.2, beta_s=BETA,
                delay=1, strict=1, spikes=out.data_ptr(), v=out.data_ptr(), counts=counts.data_ptr(), device=0,
                stream=None)
    args.update(kw)
    return ops.ForwardArgs(**args)


def test_emulated_driver_reports_errors_like_the_gpu_driver(emulated):
    h = torch.rand(2, 4, 3, dtype=torch.float64)
    out = torch.empty_like(h)
    counts = torch.zeros(6, dtype=torch.int64)
    emulated.call("sparse_forward", _forward_args(h, out, counts))  # valid
    with pytest.raises(RuntimeError, match=r"forward \(cuda emulation\): dtype must be float32 \(0\) or float64 "
                                           r"\(1\), got 2"):
        emulated.call("sparse_forward", _forward_args(h, out, counts, dtype=2))
    with pytest.raises(RuntimeError, match=r"h is NULL \(24 elements expected\)"):
        emulated.call("sparse_forward", _forward_args(h, out, counts, h=None))
    with pytest.raises(RuntimeError, match=r"counts is NULL \(6 elements expected\)"):
        emulated.call("sparse_forward", ops.ForwardArgs(B=2, T=4, N=3, dtype=1, h=h.data_ptr(), spikes=out.data_ptr(),
                                         v=out.data_ptr()))
    with pytest.raises(RuntimeError, match=r"B \* T \* N overflows int64 \(4194304 \* 4194304 \* 4194304\)"):
        emulated.call("sparse_forward", _forward_args(h, out, counts, B=2**22, T=2**22, N=2**22))
    with pytest.raises(RuntimeError, match="negative size"):
        emulated.call("sparse_forward", _forward_args(h, out, counts, B=-1))
    with pytest.raises(RuntimeError, match="T must fit in int32"):
        emulated.call("sparse_forward", _forward_args(h, out, counts, T=2**31))
    with pytest.raises(RuntimeError, match="trace is NULL"):
        emulated.call("sparse_trace", ops.TraceArgs(B=2, T=4, N=3, dtype=1, x=h.data_ptr(), alpha=0.5, delay=1, trace=None))
    with pytest.raises(RuntimeError, match="grad_spikes is NULL"):
        emulated.call("sparse_dense_backward", ops.DenseBackwardArgs(B=2, T=4, N=3, dtype=0, v=h.data_ptr()))
    with pytest.raises(RuntimeError, match="offsets is NULL"):
        emulated.call("sparse_collect", ops.CollectArgs(B=2, T=4, N=3, dtype=1, v=h.data_ptr()))

    act = ops.active_set_from_mask(torch.rand(2, 4, 3) < 0.5)
    e = torch.empty(max(act.count, 1), dtype=torch.float64)
    powers = torch.empty(5, dtype=torch.float64)

    def backward(**kw):
        args = dict(B=2, T=4, N_out=3, N_in=0, dtype=1, alpha=0.9, reset_scale=1.0, exact=0, delay=1,
                    offsets=act.offsets.data_ptr(), times=act.times.data_ptr(), fvals=act.fvals.data_ptr(),
                    grad_spikes=h.data_ptr(), e=e.data_ptr(), powers=powers.data_ptr())
        args.update(kw)
        emulated.call("sparse_backward", ops.BackwardArgs(**args))

    backward()  # valid
    for name in ("offsets", "times", "fvals", "grad_spikes", "e", "powers"):
        with pytest.raises(RuntimeError, match=f"{name} is NULL"):
            backward(**{name: None})
    with pytest.raises(RuntimeError, match=r"trace \(the weight gradient's input trace\) is NULL"):
        backward(N_in=2, grad_w=out.data_ptr())
    with pytest.raises(RuntimeError, match="input_mode must be 0, 1 or 2, got 3"):
        backward(input_mode=3)
    with pytest.raises(RuntimeError, match=r"delta \(input_mode 1\) is NULL"):
        backward(input_mode=1)
    with pytest.raises(RuntimeError, match=r"w \(input_mode 2\) is NULL \(9 elements expected\)"):
        backward(input_mode=2, N_in=3, grad_x=out.data_ptr())
    with pytest.raises(RuntimeError, match="negative N_in"):
        backward(N_in=-2)
    # the message names the operation and the library; the return code is the argument error (1)
    with pytest.raises(RuntimeError, match=r"\.sparse_backward, code 1\): backward \(cuda emulation\)"):
        backward(powers=None)


def test_python_errors_name_the_argument():
    with pytest.raises(NotImplementedError, match="h is on meta: the sparse-SGD kernels run on CPU and CUDA"):
        ops.lif_forward(torch.zeros(1, 2, 3, device="meta"), 0.9, 1.0, 1.0, 0.2, BETA, True, True)
    with pytest.raises(NotImplementedError, match="CPU and CUDA tensors, not on 'mps'"):
        ops.for_device("mps")
    act = ops.active_set_from_mask(torch.rand(2, 4, 3) < 0.5)
    in_act = ops.active_set_from_mask(torch.rand(2, 4, 5) < 0.5)
    with pytest.raises(ValueError, match="weight must have shape"):
        ops.sparse_backward(act, torch.zeros(2, 4, 3, dtype=torch.float64), ALPHA, 1.0, False, True, None,
                            torch.zeros(4, 5, dtype=torch.float64), 2, in_act)
    with pytest.raises(ValueError, match="counts is on meta"):
        ops.collect_active(torch.zeros(2, 4, 3), torch.zeros(6, dtype=torch.int64, device="meta"), 1.0, 0.2, BETA)


def test_missing_cuda_library_raises_clear_error(monkeypatch):
    monkeypatch.setattr(_native, "_loaded", {})
    monkeypatch.setattr(_native, "find_library", lambda name: None)
    with pytest.raises(_native.NativeLibraryError, match=r"libexodus_native_cuda\.so not found.*CUDA kernels.*nvcc"):
        ops.for_device("cuda")
    with pytest.raises(_native.NativeLibraryError, match=r"libexodus_cuda_emulation\.so"):
        ops.emulation_library()


def test_sparse_cuda_library_was_installed():
    """.ci/run builds with EXODUS_REQUIRE_CUDA=ON: the sparse CUDA drivers must be in the package's CUDA
    library, and it loads without a GPU (static CUDA runtime)."""
    path = _native.find_library(_native.CUDA_LIBRARY)
    assert path is not None, "libexodus_native_cuda was not built/installed (nvcc missing at install time?)"
    lib = _native.NativeLibrary(_native.CUDA_LIBRARY, path)
    assert lib.device_drivers
    info = lib.build_info()
    assert "toolkit" in info and "architectures" in info, info


def test_cuda_library_checks_arguments_before_the_device():
    """The real CUDA library (loads without a GPU): argument errors come before any CUDA call, and
    without a GPU a valid call is a clean CUDA error with its fix, never a crash."""
    path = _native.find_library(_native.CUDA_LIBRARY)
    assert path is not None, "libexodus_native_cuda was not built/installed (nvcc missing at install time?)"
    lib = _native.NativeLibrary(_native.CUDA_LIBRARY, path)
    h = torch.rand(2, 4, 3, dtype=torch.float64)
    out, counts = torch.empty_like(h), torch.zeros(6, dtype=torch.int64)
    with pytest.raises(RuntimeError, match=r"code 1\): forward \(cuda\): dtype must be float32"):
        lib.call("sparse_forward", _forward_args(h, out, counts, dtype=2))
    with pytest.raises(RuntimeError, match=r"code 1\): backward \(cuda\): offsets is NULL"):
        lib.call("sparse_backward", ops.BackwardArgs(B=1, T=1, N_out=1, dtype=0))
    if not HAS_GPU:  # host pointers must never reach a real device
        with pytest.raises(RuntimeError, match=r"code 3\): forward \(cuda\): CUDA error"):
            lib.call("sparse_forward", _forward_args(h, out, counts))


# ------------------------------------------------------------------ real GPU

def _to(c: dict, device: str) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in c.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["mixed", "none", "all"])
@pytest.mark.parametrize("delay,exact", [(True, False), (True, True), (False, True)])
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (none on this machine)")
def test_gpu_ops_match_cpu(dtype, kind, delay, exact):
    c = _case(kind, dtype)
    on_cpu = _all_ops(c, delay, exact, True)
    on_gpu = _all_ops(_to(c, "cuda"), delay, exact, True)
    for name in on_cpu:
        assert on_gpu[name].device.type == ("cuda" if name not in ("K", "K_in") else "cpu"), name
        _same(on_gpu[name], on_cpu[name], dtype, name, exact=name in BIT_EXACT)


@pytest.mark.parametrize("gradient", ["detached", "exact"])
@pytest.mark.parametrize("backend", ["sparse", "dense"])
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (none on this machine)")
def test_gpu_training_step_matches_cpu(gradient, backend):
    def step(device):
        torch.manual_seed(0)
        net = S.SparseSNN(10, 3, hidden=(24, 17), b_th=0.2, backend=backend, gradient=gradient).double().to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = (torch.rand(4, 30, 10, dtype=torch.float64) < 0.3).to(torch.float64).to(device)
        loss = net(x).amax(1).logsumexp(1).mean()
        loss.backward()
        opt.step()
        return [loss.detach()] + [p.grad for p in net.parameters()] + [p.detach() for p in net.parameters()]

    for a, b in zip(step("cuda"), step("cpu")):
        assert a.device.type == "cuda"
        _same(a, b, torch.float64, "training step")


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (none on this machine)")
def test_gpu_runs_on_the_callers_stream_and_device():
    c = _case("mixed", torch.float32)
    ref = ops.lif_forward(c["h"], ALPHA, THETA, 1.0, 0.2, BETA, True, True)
    for index in range(torch.cuda.device_count()):
        dev = torch.device("cuda", index)
        stream = torch.cuda.Stream(device=dev)
        h = c["h"].to(dev)
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.device(dev), torch.cuda.stream(stream):
            spikes, v, counts = ops.lif_forward(h, ALPHA, THETA, 1.0, 0.2, BETA, True, True)
            active = ops.collect_active(v, counts, THETA, 0.2, BETA)
        stream.synchronize()
        assert spikes.device == dev and active.times.device == dev
        assert torch.equal(spikes.cpu(), ref[0]) and torch.equal(counts.cpu(), ref[2])


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (none on this machine)")
def test_gpu_layer_rejects_mixed_devices():
    layer = S.SparseLinearLIF(3, 4).cuda()
    with pytest.raises(ValueError, match="weight is on cuda"):
        layer(torch.zeros(2, 5, 3))
