"""The GPU acceptance checks (issue 27) that the other CUDA tests leave out, on a real GPU:

- float32 spikes, membrane and final state of the CUDA LIF kernels bit-identical to the CPU library's
  on sizes that are no multiple of a CUDA block, in every neuron mode, and the spikes equal to the
  float32 PyTorch reference loop (tests/reference.py), so neither library is its own reference;
- ``torch.compile(fullgraph=True)`` on CUDA tensors: inductor (Triton kernels around our custom ops)
  for a LIF network, and the sparse-SGD and event-driven networks, each equal to eager on the GPU;
- the caller's non-default stream on ``cuda:0`` with work still pending on it: the input is written
  by kernels queued on that stream just before the call, so a kernel launched on any other stream
  would read it unfinished.

Skipped with the reason on a machine without a GPU (the emulation tests cover the driver code there).
"""

from __future__ import annotations

import pytest
import torch

from exodus_lightning.functional import leaky_integrator, lif, lif_with_membrane
from exodus_lightning.neuron_parameters import LIFParameters
from tests.reference import lif_reference, rel_err

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)"),
]

# (B, T, N): N no multiple of 256 (CPU chunk, CUDA block), B*N above one block
SHAPE = (5, 300, 777)
MODES = {
    "subtract": dict(tau_mem=10.0),
    "zero": dict(tau_mem=10.0, reset="zero"),
    "multi": dict(tau_mem=10.0, spike="multi"),
    "at-most-2": dict(tau_mem=10.0, spike=2),
    "synapse-clamp": dict(tau_mem=10.0, tau_syn=4.0, min_v_mem=-0.5),
    "norm-input": dict(tau_mem=6.0, norm_input=True),
    "if": dict(tau_mem=float("inf")),
}
DRIVE = {"norm-input": 4.0, "multi": 2.5, "at-most-2": 2.5}  # input scale (default 0.5): several spikes per step


def _drive(seed: int, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(SHAPE, generator=g) * 1.6 - 0.3) * scale


@pytest.mark.parametrize("mode", list(MODES))
def test_float32_forward_bit_identical_to_cpu(mode):
    kw = MODES[mode]
    x = _drive(1, DRIVE.get(mode, 0.5))
    v0 = torch.rand(SHAPE[0], SHAPE[2], generator=torch.Generator().manual_seed(2)) - 0.3
    p = LIFParameters(**kw)
    s_cpu, v_cpu, (vf_cpu, _) = lif_with_membrane(x, p, v0=v0)
    s_gpu, v_gpu, (vf_gpu, _) = lif_with_membrane(x.cuda(), p, v0=v0.cuda())
    assert s_cpu.sum() > 0 and s_gpu.device.type == "cuda"
    assert torch.equal(s_gpu.cpu(), s_cpu)
    assert torch.equal(v_gpu.cpu(), v_cpu)
    assert torch.equal(vf_gpu.cpu(), vf_cpu)
    ref_kw = {k: v for k, v in kw.items() if k != "tau_mem"}
    s_ref, *_ = lif_reference(x, kw["tau_mem"], v0=v0, dtype=torch.float32, **ref_kw)
    assert torch.equal(s_gpu.cpu(), s_ref)


def _lif_network(x: torch.Tensor, w: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    h = lif(x @ w, LIFParameters(tau_mem=tau, tau_syn=3.0))
    return leaky_integrator(h, 5.0).sum(1)


def test_compiled_lif_network_on_cuda_equals_eager():
    """The default backend (inductor: Triton kernels for the torch ops, our custom ops called as they
    are): forward and backward in one graph, equal to eager to float32 rounding of the fused ops."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 50, 24, generator=g).cuda()
    w = (torch.randn(24, 40, generator=g) * 0.8).cuda().requires_grad_()
    tau = torch.full((40,), 6.0, device="cuda").requires_grad_()
    eager = _lif_network(x, w, tau)
    g_eager = torch.autograd.grad(eager.square().sum(), (w, tau))
    compiled = torch.compile(_lif_network, fullgraph=True)
    out = compiled(x, w, tau)
    g_compiled = torch.autograd.grad(out.square().sum(), (w, tau))
    assert out.device.type == "cuda" and eager.abs().sum() > 0
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_compiled, g_eager):
        assert b.abs().sum() > 0 and rel_err(a, b) <= 1e-4


@pytest.mark.parametrize("network", ["sparse", "event"])
def test_compiled_sparse_and_event_networks_on_cuda_equal_eager(network):
    """fullgraph capture of the sparse-SGD and event-driven networks on CUDA tensors (their ops' fake
    implementations with unbacked active-set sizes, AOT autograd), float64: equal to eager bit for bit."""
    from exodus_lightning.algorithms import sparse_sgd as S
    from exodus_lightning.algorithms.event_driven import EventDrivenSNN

    torch.manual_seed(2)
    if network == "sparse":
        model = S.SparseSNN(8, 3, hidden=(12, 10), b_th=0.5).double().cuda()
    else:
        model = EventDrivenSNN("8-12l-3l", init_gain=8.0).double().cuda()
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(2, 20, 8, generator=g) < 0.4).double().cuda()

    def step(m: torch.nn.Module) -> list[torch.Tensor]:
        model.zero_grad()
        out = m(x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device="cuda").reshape(out.shape)).sum().backward()
        return [out.detach()] + [p.grad.clone() for p in model.parameters()]

    want = step(model)
    got = step(torch.compile(model, fullgraph=True, backend="aot_eager"))
    assert want[0].device.type == "cuda" and any(t.abs().sum() > 0 for t in want[1:])
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_kernels_run_on_the_callers_stream_behind_pending_work():
    """cuda:0, a side stream: the input is produced on that stream by a chain of kernels queued just
    before the call (no synchronisation), and the result is read after syncing that stream only."""
    dev = torch.device("cuda", 0)
    x_cpu = _drive(3, 0.5)
    want = lif(x_cpu, LIFParameters(tau_mem=10.0))
    big = torch.randn(4096, 4096, device=dev)
    stream = torch.cuda.Stream(device=dev)
    stream.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.device(dev), torch.cuda.stream(stream):
        for _ in range(8):  # tens of milliseconds of queued work ahead of the input's last write
            big = big @ big
            big = big / big.norm()
        x = x_cpu.to(dev) + torch.nan_to_num(big[0, 0]) * 0  # written after the pending products
        s = lif(x, LIFParameters(tau_mem=10.0))
        v = leaky_integrator(x, 5.0)
    stream.synchronize()
    assert s.device == dev and torch.equal(s.cpu(), want)
    assert rel_err(v.cpu(), leaky_integrator(x_cpu, 5.0)) <= 1e-6
