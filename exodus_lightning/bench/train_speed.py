"""``exodus-lightning bench train-speed``: seconds per training epoch with the ``exodus``, ``slayer``
and ``bptt`` backends — our version of the EXODUS paper's Table 3.

The Heidelberg-digits network of the paper's Table 2 (``100-128l-128l-20l``, IF neurons between
the weight layers, max-over-time cross-entropy, Adam lr 1e-3, batch 128, 250 steps) trained with
Lightning on SpikePatterns data of the same shape (100 channels, 20 classes, T = 250).  An epoch's
time covers what the paper's does: data loading, forward, backward and the optimiser step
(validation is off).  The backends take turns epoch by epoch (round-robin, each with its own model
from the same initial weights), so they share the machine's state; the first epoch of each is a
warm-up and the median of the others is reported.  The row ``exodus, nonfinite off`` is EXODUS
without the NaN/Inf check of training (:mod:`exodus_lightning.nonfinite`, on in the others): the
check's whole cost per step (layer flags, batch, loss, gradients, one synchronisation).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Optional

import torch

from exodus_lightning.bench import _report

BACKENDS = ("exodus", "slayer", "bptt")
UNCHECKED = "exodus, nonfinite off"
PAPER_HSD = {"exodus": 15.7, "slayer": 16.1, "bptt": 40.4}  # Table 3, s/epoch, GTX 1080 Ti, full SHD


class _EpochTimer:
    def __init__(self) -> None:
        self.times: list[float] = []

    def make(self):
        import lightning.pytorch as pl

        timer = self

        class EpochTimer(pl.Callback):
            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self.t0 = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                timer.times.append(time.perf_counter() - self.t0)

        return EpochTimer()


def run(arch: str = "100-128l-128l-20l", n_train: int = 1024, batch: int = 128, time_steps: int = 250,
        epochs: int = 3, backends=BACKENDS, seed: int = 0, num_workers: int = 0) -> list[dict]:
    import lightning.pytorch as pl

    from exodus_lightning.bench.fidelity import pattern_timing
    from exodus_lightning.data import SpikePatternsDataModule
    from exodus_lightning.models import SpikingClassifier

    n_in, n_classes = int(arch.split("-")[0]), int(arch.split("-")[-1].rstrip("l"))
    dm = SpikePatternsDataModule(n_train=n_train, n_val=batch, n_test=batch, seed=seed, n_channels=n_in,
                                 n_classes=n_classes, n_time_steps=time_steps, batch_size=batch,
                                 num_workers=num_workers, **pattern_timing(time_steps))
    torch.manual_seed(seed)
    base = SpikingClassifier(arch, num_classes=n_classes, loss="max_over_time_cross_entropy")
    models = {}
    for b in backends:
        m = copy.deepcopy(base)
        m.backend = b
        models[b] = m
    if "exodus" in backends:
        models[UNCHECKED] = copy.deepcopy(models["exodus"])
        models[UNCHECKED].nonfinite = "off"
    backends = list(models)
    timers = {b: _EpochTimer() for b in backends}
    losses: dict[str, float] = {}
    for _ in range(epochs + 1):  # the first round is the warm-up
        for b in backends:
            trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                 limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timers[b].make()])
            trainer.fit(models[b], datamodule=dm)
            m = trainer.callback_metrics.get("train/loss")
            if m is not None:
                losses[b] = float(m)
    rows = []
    for b in backends:
        ts = timers[b].times[1:] or timers[b].times
        rows.append({"backend": b, "epoch_s": statistics.median(ts), "epochs": len(ts), "all_epoch_s": timers[b].times,
                     "batches": -(-n_train // batch), "last_loss": losses.get(b), "paper_hsd_s": PAPER_HSD.get(b)})
    ex = next(r for r in rows if r["backend"] == "exodus") if "exodus" in backends else None
    bp = next((r for r in rows if r["backend"] == "bptt"), None)
    for r in rows:
        r["x_exodus"] = r["epoch_s"] / ex["epoch_s"] if ex else None
        r["speedup_vs_bptt"] = bp["epoch_s"] / r["epoch_s"] if bp else None
        if bp and r["paper_hsd_s"]:
            r["paper_speedup_vs_bptt"] = PAPER_HSD["bptt"] / r["paper_hsd_s"]
    return rows


def bench_train_speed(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench train-speed``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench train-speed",
                                description="seconds per epoch, exodus vs slayer vs bptt (paper Table 3, HSD network)")
    p.add_argument("--arch", default="100-128l-128l-20l", help="architecture (default: paper Table 2, HSD)")
    p.add_argument("--n-train", type=int, default=1024, help="training samples per epoch (default 1024 = 8 batches; SHD has 8156)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--time-steps", type=int, default=250)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per backend after one warm-up epoch")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default=None, help="directory for train_speed.md/.json/.png")
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in BACKENDS for b in backends):
        p.error(f"--backends must come from {', '.join(BACKENDS)}, got {args.backends!r}")
    if min(args.n_train, args.batch, args.time_steps, args.epochs) < 1:
        p.error("--n-train, --batch, --time-steps and --epochs must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging

    import lightning.pytorch  # noqa: F401 - configures its loggers on import; quiet them afterwards

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    t0 = time.perf_counter()
    rows = run(args.arch, args.n_train, args.batch, args.time_steps, args.epochs, backends, num_workers=args.num_workers)
    elapsed = time.perf_counter() - t0
    cols = [("backend", "backend", ""), ("epoch_s", "s / epoch (median)", ".2f"), ("x_exodus", "× exodus", ".2f"),
            ("speedup_vs_bptt", "speed-up vs bptt", ".2f"), ("paper_hsd_s", "paper HSD s/epoch (1080 Ti, full SHD)", ".1f"),
            ("paper_speedup_vs_bptt", "paper speed-up vs bptt", ".2f"), ("epochs", "timed epochs", "d"),
            ("batches", "batches / epoch", "d"), ("last_loss", "train loss, last epoch", ".3f")]
    table = _report.markdown_table(rows, cols)
    print(table)
    plt = _report.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [r["backend"] for r in rows]
    ax.barh(names, [r["epoch_s"] for r in rows], color=["C0" if n == "exodus" else "C1" if n == "slayer" else "C2" for n in names])
    for i, r in enumerate(rows):
        ax.text(r["epoch_s"], i, f" {r['epoch_s']:.2f} s" + (f" ({r['speedup_vs_bptt']:.1f}× vs bptt)" if r.get("speedup_vs_bptt") else ""),
                va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per epoch (data, forward, backward, optimiser)")
    ax.set_title(f"{args.arch}, IF, B={args.batch}, T={args.time_steps}, {args.n_train} samples/epoch, CPU", fontsize=9)
    ax.set_xlim(0, max(r["epoch_s"] for r in rows) * 1.45)
    fig.tight_layout()
    paths = _report.write_results(
        args.out, "train_speed", "Training speed per epoch (EXODUS paper Table 3, HSD network)",
        _report.command_line("exodus-lightning bench train-speed", argv), _report.machine_info("cpu"), [table],
        {"config": vars(args), "elapsed_s": elapsed, "rows": rows}, [("train_speed.png", fig)],
        notes=["Lightning training (SpikingClassifier, Adam lr 1e-3, max-over-time CE, no validation) on "
               "SpikePatterns data shaped like SHD. Backends alternate epoch by epoch in one process from the same "
               "initial weights; the first epoch of each is a warm-up. The paper's numbers are for the full SHD "
               "training set on a GPU and are shown for the speed-up ratios only."],
    )
    _report.print_paths(paths)
    return 0
