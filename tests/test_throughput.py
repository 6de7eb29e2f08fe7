"""Throughput in a CLI run (issue 28.2): the shipped quickstart config logs training samples/s and time
steps/s; checked against the run's own wall clock and the dataset's length."""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import pytest
import torch

from exodus_lightning.callbacks import Throughput
from exodus_lightning.callbacks.throughput import batch_counts

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_config_reports_throughput():
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        assert "exodus_lightning.callbacks.Throughput" in config.read_text(), config.name


def test_quickstart_logs_samples_and_time_steps_per_second(tmp_path: Path) -> None:
    from exodus_lightning.lightning_cli import ExodusCLI

    batches = 24
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        cli = ExodusCLI(args=[
            "-c", str(ROOT / "configs" / "quickstart.yaml"),
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path),
            "--trainer.enable_progress_bar=false", "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
            "--trainer.limit_train_batches", str(batches), "--trainer.num_sanity_val_steps", "0",
        ], run=False)
        start = time.perf_counter()
        cli.trainer.fit(cli.model, cli.datamodule)
        wall = time.perf_counter() - start
    finally:
        os.chdir(old)
    monitor = next(c for c in cli.trainer.callbacks if isinstance(c, Throughput))
    assert batches >= monitor.window

    with open(Path(cli.trainer.logger.log_dir) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("throughput/samples_per_s")]
    assert len(rows) == batches - monitor.window + 1  # every step once the window is full
    samples_per_s = [float(r["throughput/samples_per_s"]) for r in rows]
    steps_per_s = [float(r["throughput/time_steps_per_s"]) for r in rows]

    # each sample of the quickstart's embedded dataset has the same number of steps
    dm = cli.datamodule
    x, _, _ = cli.model.unpack(dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0))
    T = x.shape[1]
    for s, t in zip(samples_per_s, steps_per_s):
        assert t == pytest.approx(T * s, rel=1e-6)  # the logger stores float32
    # the fit's wall clock holds more than the window (setup, validation): a lower bound
    batch_size = cli.datamodule.batch_size
    assert all(math.isfinite(s) for s in samples_per_s)
    assert min(samples_per_s) >= monitor.window * batch_size / wall


def test_batch_counts_take_the_real_steps_from_lengths():
    x = torch.zeros(3, 8, 2)
    assert batch_counts((x, torch.zeros(3))) == (3, 24)
    n, steps = batch_counts((x, torch.zeros(3), torch.tensor([8, 5, 1])))
    assert n == 3 and int(steps) == 14
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        Throughput(window=0)
    with pytest.raises(ValueError, match=r"x of shape \(B, T, \.\.\.\)"):
        batch_counts((torch.zeros(3), torch.zeros(3)))
