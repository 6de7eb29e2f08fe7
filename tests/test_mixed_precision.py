"""Mixed precision: under CPU autocast (``bf16-mixed``, and float16 autocast) every op path takes
float32 — the LIF scan (exodus, slayer), the BPTT loop, the leaky integrator, the sparse-SGD
layer, the event-driven layer, OTTT — and gives what float32 gives on the same (rounded) input;
Trainers with ``bf16-mixed`` / ``16-mixed`` train every model kind; on CUDA the LIF kernels read
half inputs with float32 state (run when a GPU is present)."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from tests.test_nonfinite import _classifier, _data, _event, _online, _sparse
from exodus_lightning.neuron_parameters import LIFParameters

ROOT = Path(__file__).resolve().parents[1]
HALF = [torch.bfloat16, torch.float16]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none present)")
# `@CUDA` tests also carry the cuda marker: `pytest -m cuda` (scripts/gpu_acceptance.sh) selects them


def _lif(backend):
    from exodus_lightning.nn import LIF

    return LIF(tau_mem=5.0, tau_syn=3.0, backend=backend)


def _leaky():
    from exodus_lightning.nn import LeakyIntegrator

    return LeakyIntegrator(tau=8.0)


def _sparse_layer():
    from exodus_lightning.algorithms.sparse_sgd import SparseLinearLIF

    torch.manual_seed(0)
    return SparseLinearLIF(12, 9, init="normal")


def _event_layer():
    from exodus_lightning.algorithms.event_driven import EventLinear

    torch.manual_seed(0)
    return EventLinear(12, 9, weight_norm=False, init_gain=3.0)


LAYERS = {"lif-exodus": lambda: _lif("exodus"), "lif-slayer": lambda: _lif("slayer"), "lif-bptt": lambda: _lif("bptt"),
          "leaky": _leaky, "sparse": _sparse_layer, "event": _event_layer}


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_computes_in_float32_under_cpu_autocast(name, dtype):
    """The layer under autocast, fed by an autocast Linear (half output), equals the layer in float32
    on the same rounded values, forward and backward (the reference runs without autocast)."""
    layer = LAYERS[name]()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 30, 12, generator=g) < 0.4).float()
    linear = torch.nn.Linear(12, 12, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(12) * 1.7)  # exact in both half types: the layer's input stays spikes * 1.7
    spiking_input = name in ("sparse", "event")  # these layers fuse their own weights and take spikes
    xa = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        h = xa if spiking_input else linear(xa)
        if not spiking_input:
            assert h.dtype == dtype  # what autocast hands our layers
        out = layer(h)
    # the native ops are cast to float32; the BPTT loop (plain PyTorch) returns its input's dtype
    assert out.dtype == (dtype if name == "lif-bptt" else torch.float32)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()

    xr = x.clone().requires_grad_()
    hr = xr if spiking_input else (xr @ linear.weight.t()).to(dtype).float()
    ref = layer(hr)
    (ref * torch.linspace(-1, 1, ref.shape[-1])).sum().backward()
    assert torch.equal(out.float(), ref)
    assert xa.grad is not None and torch.allclose(xa.grad, xr.grad, rtol=1e-2, atol=1e-2)
    assert ref.abs().sum() > 0


def test_ottt_network_runs_under_cpu_autocast():
    from exodus_lightning.algorithms.ottt import build_online_network

    torch.manual_seed(0)
    net = build_online_network("12-16l-4l")
    x = (torch.rand(3, 12) < 0.5).float()
    net.reset_state()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    net.reset_state()
    ref = net(x)
    assert out.shape == ref.shape == (3, 4)
    assert torch.allclose(out.float(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("build", [_classifier, _sparse, _event, _online], ids=["exodus", "sparse", "event", "ottt"])
def test_trainer_with_mixed_precision_trains_every_model_on_the_cpu(build, precision):
    model = build()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", precision=precision, limit_train_batches=3,
                         limit_val_batches=1)
    trainer.fit(model, _data(), _data(seed=1))
    assert trainer.global_step > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert torch.isfinite(trainer.callback_metrics["val/loss"])


@pytest.mark.slow
def test_quickstart_with_bf16_mixed_on_the_cpu_learns(tmp_path):
    """``exodus-lightning fit -c configs/quickstart.yaml --trainer.precision bf16-mixed`` on the CPU:
    3 of its 20 epochs reach >= 0.5 validation accuracy (20 classes, chance 0.05; float32 and
    bf16 both reach ~0.8 there)."""
    from exodus_lightning.lightning_cli import ExodusCLI

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cli = ExodusCLI(args=["fit", "-c", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.precision", "bf16-mixed",
                              "--trainer.accelerator", "cpu", "--trainer.max_epochs", "3", "--trainer.logger=false",
                              "--trainer.enable_progress_bar=false"])
    finally:
        os.chdir(cwd)
    assert cli.trainer.precision == "bf16-mixed" and cli.trainer.current_epoch == 3
    assert float(cli.trainer.callback_metrics["val/accuracy"]) >= 0.5


# ------------------------------------------------------------------ CUDA (run where a GPU is)


@CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_cuda_lif_reads_half_inputs_with_float32_state(dtype):
    """Under CUDA autocast the LIF kernel gets the half input itself; its float32 state makes it
    agree with the float32 scan of the same rounded input (outputs rounded once)."""
    from exodus_lightning.functional import lif

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 200, 64, generator=g) * 0.4).to(dtype).cuda()
    spikes, ref = lif(x, LIFParameters(tau_mem=20.0, tau_syn=5.0)), lif(x.float(), LIFParameters(tau_mem=20.0, tau_syn=5.0))
    assert spikes.dtype == dtype
    mismatch = (spikes.float() != ref).float().mean().item()
    assert mismatch < 1e-3, mismatch


@CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("build", [_classifier, _sparse, _event, _online], ids=["exodus", "sparse", "event", "ottt"])
def test_trainer_with_mixed_precision_trains_every_model_on_cuda(build, precision):
    model = build()
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="gpu", devices=1, precision=precision,
                         limit_train_batches=3, limit_val_batches=1)
    trainer.fit(model, _data(), _data(seed=1))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
