"""CPU DDP (2 processes, gloo) through the CLI: one DDP step with a per-rank batch of B/2 gives the
same weights as one single-process step with batch B."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

CONFIG = textwrap.dedent("""\
    seed_everything: 0
    trainer:
      accelerator: cpu
      max_steps: 1
      limit_val_batches: 0
      logger: false
      enable_progress_bar: false
      enable_model_summary: false
      callbacks:
        - class_path: lightning.pytorch.callbacks.ModelCheckpoint
          init_args: {dirpath: ckpt, filename: final}
    model:
      class_path: exodus_lightning.models.SpikingClassifier
      init_args:
        network: "100-32l-20l"
        num_classes: 20
        neuron: {class_path: exodus_lightning.nn.LIF, init_args: {tau_mem: 20.0}}
        readout: {class_path: exodus_lightning.nn.LeakyIntegrator, init_args: {tau: 20.0}}
        optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.5}}
    data:
      class_path: exodus_lightning.data.SpikePatternsDataModule
      init_args: {n_train: 64, n_val: 16, n_test: 16, n_time_steps: 60}
    """)


def _fit(cwd: Path, devices: int, batch_size: int, precision: str) -> dict[str, torch.Tensor]:
    cwd.mkdir(parents=True)
    (cwd / "c.yaml").write_text(CONFIG)
    args = ["fit", "-c", "c.yaml", f"--trainer.devices={devices}", f"--trainer.precision={precision}",
            f"--data.init_args.batch_size={batch_size}"]
    if devices > 1:
        args.append("--trainer.strategy=ddp")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SLURM_"))}
    proc = subprocess.run([sys.executable, "-m", "exodus_lightning.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if devices > 1:
        assert "MEMBER: 2/2" in proc.stderr + proc.stdout
    (ckpt,) = glob.glob(str(cwd / "ckpt" / "final*.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 1
    return state["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("precision,tol", [("64-true", 1e-12), ("32-true", 1e-6)], ids=["f64", "f32"])
def test_one_ddp_step_equals_one_single_process_step(tmp_path, precision, tol):
    single = _fit(tmp_path / "single", 1, 16, precision)
    ddp = _fit(tmp_path / "ddp", 2, 8, precision)
    initial = None
    for name, w in single.items():
        if not name.startswith("network.") or not w.is_floating_point():
            continue
        err = (ddp[name] - w).abs().max().item() / max(w.abs().max().item(), 1e-30)
        assert err <= tol, f"{name}: relative difference {err:.3g} > {tol:g}"
        initial = name
    assert initial is not None, "no network weights compared"
