"""``exodus-lightning bench epoch``: one training epoch of the EXODUS paper's Table 2 SHD network
through ``exodus-lightning fit -c configs/shd.yaml``, split into the time the training loop waits
between steps (fetching, moving and densifying the next batch, plus Lightning's per-step
bookkeeping) and the time of the steps themselves (forward, backward, optimiser).

The SHD files are written in the real format at the real size (8156 training samples with
3000-12000 spikes), the packed cache is built before the timed run, and the run is the user's
command with ``--trainer.max_epochs 1`` and the timer callback added last.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl

from exodus_lightning.bench import _report

_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "shd.yaml"


class DataWaitTimer(pl.Callback):
    """Seconds the training loop spends between steps (``wait``) and in them (``step``), per batch.

    A step is ``on_train_batch_start`` -> ``on_train_batch_end``; the wait before it starts when the
    previous step ended (or the epoch started), so it holds the fetch of the batch, its transfer to
    the device and ``on_after_batch_transfer``. Add it as the last callback so that the other
    callbacks' per-step work counts as waiting, not as the step.
    """

    def __init__(self) -> None:
        self.wait: list[float] = []
        self.step: list[float] = []
        self._mark = 0.0
        self._start = 0.0
        self.epoch_s = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wait.clear()
        self.step.clear()
        self._mark = self._epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        self.wait.append(self._start - self._mark)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._mark = time.perf_counter()
        self.step.append(self._mark - self._start)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_s = time.perf_counter() - self._epoch_start


def run_epoch(config: str, data_dir: str, workers: int, root: str, extra: list[str]) -> dict:
    """One epoch through the CLI; the timer's figures."""
    from exodus_lightning.lightning_cli import ExodusCLI

    cli = ExodusCLI(args=[
        "fit", "-c", config, "--data.init_args.data_dir", data_dir, "--data.init_args.num_workers", str(workers),
        "--data.init_args.cache_dir", os.path.join(root, "cache"), "--trainer.max_epochs", "1",
        "--trainer.default_root_dir", os.path.join(root, "runs"), "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=exodus_lightning.bench.epoch.DataWaitTimer", *extra,
    ])
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, DataWaitTimer))
    wait, step = sum(timer.wait), sum(timer.step)
    samples = len(cli.datamodule.dataset("train"))
    return {"workers": workers, "batches": len(timer.step), "samples": samples, "wait_s": wait, "step_s": step,
            "wait_fraction": wait / (wait + step), "first_wait_s": timer.wait[0] if timer.wait else None,
            "epoch_s": timer.epoch_s, "samples_per_s": samples / (wait + step)}


def bench_epoch(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench epoch``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench epoch", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(_CONFIG), help="the SHD config (default: the repository's configs/shd.yaml)")
    p.add_argument("--shd-samples", type=int, default=8156, help="SHD training samples (the real set has 8156)")
    p.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts, one epoch each")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--tmp-dir", default=None, help="folder for the generated files (default: a temporary folder)")
    p.add_argument("--out", default=None, help="directory for epoch.md/.json")
    p.add_argument("overrides", nargs="*", help="further `fit` arguments, e.g. --trainer.accelerator gpu (after --)")
    args = p.parse_args(argv)
    if not os.path.isfile(args.config):
        p.error(f"--config {args.config} does not exist (pass the path of configs/shd.yaml)")
    if args.shd_samples < 8:
        p.error("--shd-samples must be >= 8")
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        p.error(f"--workers takes comma-separated integers, got {args.workers!r}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from exodus_lightning.data.dataset_writers import random_hsd_samples, write_shd

    root = tempfile.mkdtemp(prefix="exodus-bench-epoch-", dir=args.tmp_dir)
    saved_env = {k: os.environ.get(k) for k in ("WANDB_DIR", "WANDB_MODE")}
    os.environ["WANDB_DIR"] = root
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        data_dir = os.path.join(root, "data")
        spikes, duration = (3000, 12000), (0.5, 1.4)
        write_shd(data_dir, "train", *random_hsd_samples(args.shd_samples, 20, spikes=spikes, duration_s=duration, seed=0))
        write_shd(data_dir, "test", *random_hsd_samples(max(1, args.shd_samples // 4), 20, spikes=spikes, duration_s=duration, seed=1))
        rows = [run_epoch(args.config, data_dir, w, root, args.overrides) for w in workers]
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)
    cols = [("workers", "workers", "d"), ("batches", "batches", "d"), ("samples_per_s", "samples/s (training)", ",.0f"),
            ("step_s", "steps s", ".2f"), ("wait_s", "waiting s", ".3f"), ("wait_fraction", "waiting / epoch", ".1%"),
            ("first_wait_s", "first batch wait s", ".3f"), ("epoch_s", "epoch s (incl. validation)", ".2f")]
    table = _report.markdown_table(rows, cols)
    print(table)
    paths = _report.write_results(
        args.out, "epoch", "One training epoch of the SHD network: waiting for data vs steps",
        _report.command_line("exodus-lightning bench epoch", argv), _report.machine_info("cpu"), [table],
        {"config": vars(args), "rows": rows}, notes=[__doc__.split("\n\n", 1)[1].strip()],
    )
    _report.print_paths(paths)
    return 0
