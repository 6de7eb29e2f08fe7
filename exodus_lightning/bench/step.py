"""``exodus-lightning bench step``: where one training step of a shipped config goes (the quickstart by
default), as a user runs it: the config's model and DataModule built by ExodusCLI and trained by one
Lightning Trainer (batch transfer and densify, forward, loss, backward, optimiser step, hooks).  After
the warm-up steps, ``--steps`` steps are timed (profiler off), then ``--steps`` more are profiled and
broken down by :class:`exodus_lightning.bench.breakdown.StepProfile` into GEMMs, the LIF and leaky
scans, allocation, the optimiser and the rest.  Printed with the step time and samples/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Optional

import torch


class _Phases:
    """A Lightning callback: steps [warmup, warmup + steps) timed, the next ``steps`` profiled."""

    def __init__(self, warmup: int, steps: int) -> None:
        import lightning.pytorch as pl

        from exodus_lightning.bench.breakdown import StepProfile

        phases = self
        self.wall = 0.0
        self.profile = StepProfile()

        class Phases(pl.Callback):
            def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
                if trainer.global_step == warmup:
                    phases.t0 = time.perf_counter()
                elif trainer.global_step == warmup + steps:
                    phases.wall = time.perf_counter() - phases.t0
                    phases.profile.__enter__()

            def on_train_end(self, trainer: Any, pl_module: Any) -> None:
                phases.profile.__exit__(None, None, None)

        self.callback = Phases()


def run(config: str, steps: int, warmup: int) -> str:
    """The report of ``steps`` timed and ``steps`` profiled training steps of ``config`` after ``warmup``."""
    import lightning.pytorch as pl

    from exodus_lightning.lightning_cli import ExodusCLI

    cli = ExodusCLI(args=["--config", config], run=False)
    model, dm = cli.model, cli.datamodule
    phases = _Phases(warmup, steps)
    trainer = pl.Trainer(max_steps=warmup + 2 * steps, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, callbacks=[phases.callback])
    trainer.fit(model, datamodule=dm)
    if trainer.global_step < warmup + 2 * steps:
        raise RuntimeError(f"the config's training ran {trainer.global_step} steps, fewer than the "
                           f"{warmup + 2 * steps} asked (--warmup + 2 * --steps)")
    wall = phases.wall / steps
    batch = getattr(dm, "batch_size", None)
    head = [f"training step of {os.path.basename(config)}: {wall * 1e3:.2f} ms per step (wall, profiler off, "
            f"{steps} steps after {warmup} warm-up), torch threads {torch.get_num_threads()}"
            + (f", batch {batch}: {batch / wall:,.0f} samples/s" if batch else ""),
            f"breakdown of the next {steps} steps (profiled):"]
    return "\n".join(head + phases.profile.report(steps))


def bench_step(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench step``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench step", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/quickstart.yaml", help="a LightningCLI config (default: the quickstart)")
    p.add_argument("--steps", type=int, default=20, help="timed steps, and as many profiled ones (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="steps before timing (default 5)")
    args = p.parse_args(argv)
    if not os.path.isfile(args.config):
        p.error(f"--config {args.config!r} is not a file (run from the repository root, or give its path)")
    if args.steps < 1 or args.warmup < 1:
        p.error(f"--steps and --warmup must be >= 1, got {args.steps} and {args.warmup}")
    print(run(args.config, args.steps, args.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(bench_step())
