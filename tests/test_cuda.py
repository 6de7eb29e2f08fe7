"""The CUDA kernels on a real GPU: the whole covering grid of test_lif_exact, half types with
float32 state, the caller's stream and device.  Skipped (with the reason) on machines without one;
the CUDA driver code itself is also tested on the CPU through the emulation shim (test_ops.py)."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning.functional import leaky_integrator, lif, lif_with_membrane
from tests.reference import leaky_reference, rel_err
from tests.test_lif_exact import GRID, _id, _run
from exodus_lightning.neuron_parameters import LIFParameters

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)"),
]


@pytest.fixture(autouse=True)
def _default_device_cuda():
    torch.set_default_device("cuda")
    yield
    torch.set_default_device("cpu")


@pytest.mark.parametrize("c", GRID, ids=[_id(c) for c in GRID])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_grid_on_gpu_equals_cpu_reference(c, dtype):
    torch.set_default_device("cpu")
    train_alpha = c["alpha"] != "if"
    ref_spikes, ref = _run("reference", c, dtype, 7, train_alpha)
    torch.set_default_device("cuda")
    spikes, got = _run("exodus", c, dtype, 7, train_alpha)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert torch.equal(spikes.cpu(), ref_spikes)
    for name in ref:
        assert rel_err(got[name].cpu(), ref[name]) <= tol, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_keep_float32_state(dtype):
    g = torch.Generator().manual_seed(0)
    x_half = (torch.rand(4, 200, 64, generator=g) * 0.4).to(dtype)
    x32 = x_half.float().cuda().requires_grad_()
    xh = x_half.cuda().requires_grad_()
    s32, v32, _ = lif_with_membrane(x32, LIFParameters(tau_mem=10.0, tau_syn=4.0))
    sh, vh, _ = lif_with_membrane(xh, LIFParameters(tau_mem=10.0, tau_syn=4.0))
    assert sh.dtype == dtype
    # the same float32 arithmetic on the same (half-rounded) inputs: identical spikes
    assert torch.equal(sh.float(), s32)
    gs = torch.randn(4, 200, 64, generator=g).cuda()
    (g32,) = torch.autograd.grad((s32 * gs).sum(), x32)
    (gh,) = torch.autograd.grad((sh.float() * gs).sum(), xh)
    assert rel_err(gh.float(), g32) <= 1e-2


def test_leaky_on_gpu():
    x = torch.randn(3, 40, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    tau = torch.tensor([2.0, 3.0, 4.0, 5.0, 50.0], dtype=torch.float64, device="cuda", requires_grad=True)
    out = leaky_integrator(x, tau, norm_input=True)
    ref = leaky_reference(x.detach().cpu(), tau.detach().cpu(), norm_input=True)
    assert rel_err(out.cpu(), ref) <= 1e-12


def test_runs_on_the_callers_stream_and_device():
    n = torch.cuda.device_count()
    for index in range(n):
        dev = torch.device("cuda", index)
        stream = torch.cuda.Stream(device=dev)
        x = torch.rand(2, 30, 7, device=dev)
        with torch.cuda.device(dev), torch.cuda.stream(stream):
            s = lif(x, LIFParameters(tau_mem=5.0))
        stream.synchronize()
        assert s.device == dev
        assert torch.equal(s.cpu(), lif(x.cpu(), LIFParameters(tau_mem=5.0)))
