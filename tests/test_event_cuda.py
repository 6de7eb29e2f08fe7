"""The CUDA kernels of event-driven backpropagation (in ``libexodus_native_cuda``).

Without a GPU (CI), the CUDA drivers compiled for the host (``libexodus_cuda_emulation``) run the
GPU code path on the CPU and must equal the CPU driver: both call the per-neuron steps of
``event_neuron.h``, and the GPU forms the backward kernels eps/h by the same products as the CPU's
tables. The real-GPU tests (marked ``cuda``) are skipped with the reason when no GPU is present.
"""

from __future__ import annotations

import copy

import pytest
import torch

from exodus_lightning import _native
from exodus_lightning.algorithms.event_driven import EventDrivenSNN, EventLinear, SRMConfig
from exodus_lightning.losses import spike_count_loss
from exodus_lightning.ops import event as event_ops
from tests.reference import rel_err

# B, T, N not multiples of the CPU block (256 neurons) nor of the CUDA block (256 threads).
B, T, N = 3, 37, 301

CONFIGS = [
    dict(decay="exp"),
    dict(decay="euler", max_dudt_inv=4.0),
]

def _tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == torch.float64 else 1e-6


def _same(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> bool:
    return torch.equal(a, b) or rel_err(a, b) <= _tol(dtype)


def _inputs(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    current = (torch.rand(B, T, N, generator=g, dtype=torch.float64) * 0.9 - 0.1).to(dtype)
    grad = torch.randn(B, T, N, generator=g, dtype=torch.float64).to(dtype)
    return current, grad


def _run_ops(current: torch.Tensor, grad: torch.Tensor, cfg: SRMConfig) -> tuple[torch.Tensor, ...]:
    am, as_, ag, kappa = cfg.op_args()
    clip = float(cfg.max_dudt_inv) if cfg.max_dudt_inv is not None else 0.0
    spikes, du, dug, u = event_ops.srm_forward(current, am, as_, ag, kappa, float(cfg.theta), True)
    e_w, e_in = event_ops.srm_backward(grad, spikes, du, dug, am, as_, ag, kappa, clip)
    return spikes, du, dug, u, e_w, e_in


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch):
    """Route the event ops' CPU calls to the CUDA drivers compiled for the host (exodus_event_emu_*)."""
    emu = event_ops.emulation_library()
    monkeypatch.setattr(event_ops, "for_device", lambda device_type: emu)
    return emu


# ------------------------------------------------------------------ CUDA driver code on the CPU


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("opts", CONFIGS, ids=["exp", "euler-clip"])
def test_emulated_ops_match_cpu_driver(opts: dict, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = SRMConfig(tau_mem=8.0, tau_syn=4.0, tau_grad=3.0, theta=1.0, **opts)
    current, grad = _inputs(dtype)
    on_cpu = _run_ops(current, grad, cfg)
    emu = event_ops.emulation_library()
    monkeypatch.setattr(event_ops, "for_device", lambda device_type: emu)
    on_emu = _run_ops(current, grad, cfg)
    spikes = on_cpu[0]
    # spikes at a moderate rate, in most neurons, and steps after a neuron's last spike (no gradient)
    assert 0.02 < spikes.mean().item() < 0.5
    assert (spikes.sum(1) > 0).float().mean() > 0.9
    assert (on_cpu[4] == 0).any() and (on_cpu[4] != 0).any()
    for name, a, b in zip(("spikes", "du", "dug", "u", "e_w", "e_in"), on_emu, on_cpu):
        assert a.dtype == dtype and a.shape == (B, T, N), name
        assert _same(a, b, dtype), f"{name}: rel err {rel_err(a, b):.3g}"
    assert torch.equal(on_emu[0], on_cpu[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_emulated_layer_gradients_match_cpu_driver(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole layer (forward op, backward op, dW and ds_in products) through both drivers."""
    torch.manual_seed(1)
    cfg = SRMConfig(tau_mem=8.0, tau_syn=4.0, tau_grad=3.0, damping=0.85, max_dudt_inv=4.0)
    layer = EventLinear(23, 45, cfg).to(dtype)
    x = (torch.rand(5, 29, 23) < 0.3).to(dtype)
    g_out = torch.randn(5, 29, 45, dtype=dtype)

    def run() -> tuple[torch.Tensor, ...]:
        xx = x.clone().requires_grad_(True)
        layer.zero_grad(set_to_none=True)
        out = layer(xx)
        out.backward(g_out)
        return (out.detach(), xx.grad) + tuple(p.grad for p in layer.parameters())

    on_cpu = run()
    emu = event_ops.emulation_library()
    monkeypatch.setattr(event_ops, "for_device", lambda device_type: emu)
    on_emu = run()
    assert on_cpu[0].sum() > 20
    for a, b in zip(on_emu, on_cpu):
        assert _same(a, b, dtype), rel_err(a, b)


def test_emulated_driver_handles_single_steps_and_empty_batches(emulated) -> None:
    cfg = SRMConfig()
    am, as_, ag, kappa = cfg.op_args()
    one = torch.full((2, 1, 3), 5.0, dtype=torch.float64)
    s, du, dug, _ = event_ops.srm_forward(one, am, as_, ag, kappa, 1.0, False)
    # one step from rest: u = kappa (a_m I - a_s I), above the threshold everywhere
    assert s.sum() == 6 and torch.equal(du, torch.full_like(du, kappa * (am * 5.0 - as_ * 5.0)))
    empty = torch.zeros(0, 4, 3)
    outs = event_ops.srm_forward(empty, am, as_, ag, kappa, 1.0, True)
    assert all(t.shape == (0, 4, 3) for t in outs)
    e_w, e_in = event_ops.srm_backward(empty, empty, empty, empty, am, as_, ag, kappa, 0.0)
    assert e_w.shape == e_in.shape == (0, 4, 3)


def _forward_args(dtype_tag: int, t: torch.Tensor) -> event_ops.SRMForwardArgs:
    p = t.data_ptr()
    return event_ops.SRMForwardArgs(B=t.shape[0], T=t.shape[1], N=t.shape[2], dtype=dtype_tag, current=p,
                                    decay_m=0.9, decay_s=0.8, decay_g=0.7, kappa=2.0, theta=1.0, spikes=p, du=p,
                                    dug=p, u=None, device=0, stream=None)


def test_emulated_driver_reports_errors_like_the_gpu_driver(emulated) -> None:
    x = torch.rand(2, 4, 3, dtype=torch.float64)
    args = _forward_args(2, x)
    with pytest.raises(RuntimeError, match=r"srm_forward \(cuda\): the emulation supports float32 and float64 only"):
        emulated.call("event_srm_forward", args)
    args.dtype = 9
    with pytest.raises(RuntimeError, match="unsupported dtype tag 9"):
        emulated.call("event_srm_forward", args)
    args.dtype, args.decay_m = 1, 1.0
    with pytest.raises(RuntimeError, match=r"decays must lie in \(0, 1\)"):
        emulated.call("event_srm_forward", args)
    args.decay_m, args.theta = 0.9, 0.0
    with pytest.raises(RuntimeError, match="theta must be > 0"):
        emulated.call("event_srm_forward", args)
    args.theta, args.dug = 1.0, None
    with pytest.raises(RuntimeError, match="current, spikes, du and dug must not be NULL"):
        emulated.call("event_srm_forward", args)
    args.N = -1
    with pytest.raises(RuntimeError, match="B, T and N must be >= 0, got B=2, T=4, N=-1"):
        emulated.call("event_srm_forward", args)
    p = x.data_ptr()
    bw = event_ops.SRMBackwardArgs(B=2, T=4, N=3, dtype=1, grad_spikes=p, spikes=p, du=p, dug=p, decay_m=0.9,
                                   decay_s=0.8, decay_g=0.7, kappa=2.0, max_dudt_inv=0.0, e_w=None, e_in=p,
                                   device=0, stream=None)
    with pytest.raises(RuntimeError, match=r"srm_backward \(cuda\): grad_spikes, .* e_w and e_in must not be NULL"):
        emulated.call("event_srm_backward", bw)
    # the Python op raises the native message through the emulation as it would through the GPU
    with pytest.raises(RuntimeError, match=r"exodus_cuda_emulation\.event_srm_forward, code 1\): .*decays must lie"):
        event_ops.srm_forward(x, 1.5, 0.8, 0.7, 2.0, 1.0, False)


def test_cpu_library_ignores_device_fields_and_rejects_half_types() -> None:
    """ABI 2 appended device and stream; the CPU library takes them and reports half types clearly."""
    assert event_ops.library().dll.exodus_abi_version() == _native.ABI_VERSION
    with pytest.raises(TypeError, match="float16 and bfloat16 run on CUDA only"):
        event_ops.srm_forward(torch.zeros(1, 3, 2, dtype=torch.float16), 0.9, 0.8, 0.7, 2.0, 1.0, False)


def test_missing_cuda_library_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "_loaded", {})
    real = _native.find_library
    monkeypatch.setattr(_native, "find_library", lambda name: None if name == _native.CUDA_LIBRARY else real(name))
    with pytest.raises(_native.NativeLibraryError,
                       match=r"libexodus_native_cuda.*CUDA kernels.*nvcc.*CPU"):
        event_ops.for_device("cuda")
    with pytest.raises(_native.NativeLibraryError, match="CPU and CUDA tensors, not on 'mps'"):
        event_ops.for_device("mps")


def test_event_cuda_library_was_installed() -> None:
    """.ci/run builds with EXODUS_REQUIRE_CUDA=ON: the event CUDA drivers must be in the package's CUDA library."""
    path = _native.find_library(_native.CUDA_LIBRARY)
    assert path is not None, "libexodus_native_cuda was not built/installed (nvcc missing at install time?)"
    lib = _native.NativeLibrary(_native.CUDA_LIBRARY, path)  # loads without a GPU (static cudart), checks the ABI
    assert lib.dll.exodus_event_cuda_srm_forward and lib.dll.exodus_event_cuda_srm_backward
    info = lib.build_info()
    assert "toolkit" in info and "architectures" in info, info
    from exodus_lightning.info import report

    assert f"libexodus_native_cuda.so: loaded from {path}" in report()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error path of a machine without a GPU")
def test_cuda_library_without_a_gpu_reports_a_cuda_error() -> None:
    lib = _native.NativeLibrary(_native.CUDA_LIBRARY, _native.find_library(_native.CUDA_LIBRARY))
    x = torch.zeros(1, 2, 3)
    with pytest.raises(RuntimeError, match=r"exodus_native_cuda\.event_srm_forward, code 3\): srm_forward \(cuda\): "
                                           r"CUDA error"):
        lib.call("event_srm_forward", _forward_args(0, x))


# ------------------------------------------------------------------ real GPU


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("opts", CONFIGS, ids=["exp", "euler-clip"])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_gpu_ops_match_cpu(opts: dict, dtype: torch.dtype) -> None:
    cfg = SRMConfig(tau_mem=8.0, tau_syn=4.0, tau_grad=3.0, theta=1.0, **opts)
    current, grad = _inputs(dtype, seed=3)
    on_cpu = _run_ops(current, grad, cfg)
    on_gpu = _run_ops(current.cuda(), grad.cuda(), cfg)
    assert on_cpu[0].sum() > 0
    for name, a, b in zip(("spikes", "du", "dug", "u", "e_w", "e_in"), on_gpu, on_cpu):
        assert a.device.type == "cuda" and a.dtype == dtype, name
        assert _same(a.cpu(), b, dtype), f"{name}: rel err {rel_err(a.cpu(), b):.3g}"
    assert torch.equal(on_gpu[0].cpu(), on_cpu[0])


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_gpu_half_types_keep_float32_state(dtype: torch.dtype, tol: float) -> None:
    cfg = SRMConfig()
    current, grad = _inputs(torch.float64, seed=4)
    # the same (half-rounded) inputs in float32: the forward is the same float32 arithmetic
    ch, gh = current.to(dtype).cuda(), grad.to(dtype).cuda()
    half = _run_ops(ch, gh, cfg)
    full = _run_ops(ch.float(), gh.float(), cfg)
    assert half[0].dtype == dtype and half[0].sum() > 0
    assert torch.equal(half[0].float(), full[0])
    for a, b in zip(half[4:], full[4:]):
        assert rel_err(a.float().cpu(), b.cpu()) <= tol


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_gpu_runs_on_the_tensors_device_and_the_callers_stream() -> None:
    """Every visible GPU (cuda:1 when there are two or more), on a side stream of that device."""
    cfg = SRMConfig()
    current, grad = _inputs(torch.float32, seed=5)
    ref = _run_ops(current, grad, cfg)
    for index in range(torch.cuda.device_count()):
        dev = torch.device("cuda", index)
        stream = torch.cuda.Stream(device=dev)
        c, g = current.to(dev), grad.to(dev)
        stream.wait_stream(torch.cuda.current_stream(dev))  # the copies above ran on the default stream
        with torch.cuda.stream(stream):
            got = _run_ops(c, g, cfg)
        stream.synchronize()
        for a, b in zip(got, ref):
            assert a.device == dev
            assert _same(a.cpu(), b, torch.float32)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
@pytest.mark.cuda
def test_gpu_second_device_while_the_first_is_current() -> None:
    cfg = SRMConfig()
    current, grad = _inputs(torch.float64, seed=6)
    ref = _run_ops(current, grad, cfg)
    with torch.cuda.device(0):
        # the library must switch to the tensors' device itself, and back
        got = _run_ops(current.to("cuda:1"), grad.to("cuda:1"), cfg)
        assert torch.cuda.current_device() == 0
    assert all(t.device == torch.device("cuda", 1) for t in got)
    for a, b in zip(got, ref):
        assert _same(a.cpu(), b, torch.float64)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_gpu_training_step_of_the_event_driven_model() -> None:
    """One optimiser step of EventDrivenSNN on the GPU equals the same step on the CPU (float64)."""
    torch.manual_seed(7)
    net_cpu = EventDrivenSNN("20-32l-4l", tau_mem=8.0, tau_syn=4.0, tau_grad=3.0, damping=0.85,
                             max_dudt_inv=4.0).double()
    x = (torch.rand(6, 40, 20) < 0.3).double()
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    net_cpu.calibrate(x, 3.0)
    net_gpu = copy.deepcopy(net_cpu).cuda()
    results = []
    for net, dev in ((net_cpu, "cpu"), (net_gpu, "cuda")):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        out = net(x.to(dev))
        loss = spike_count_loss(out, target.to(dev), n_correct=10.0, n_wrong=2.0)
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.detach().cpu().clone() for p in net.parameters()]
        opt.step()
        results.append((out.detach().cpu(), loss.item(), grads, [p.detach().cpu() for p in net.parameters()]))
    (out_c, loss_c, grads_c, params_c), (out_g, loss_g, grads_g, params_g) = results
    assert out_c.sum() > 0 and loss_c > 0
    assert torch.equal(out_g, out_c)
    assert loss_g == pytest.approx(loss_c, rel=1e-12)
    assert any(g.abs().sum() > 0 for g in grads_c)
    for a, b in zip(grads_g + params_g, grads_c + params_c):
        assert rel_err(a, b) <= 1e-9
