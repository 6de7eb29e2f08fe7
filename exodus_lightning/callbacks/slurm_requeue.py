"""Slurm's checkpoint-and-requeue signal, handled where every DDP rank can act on it."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Any, Optional

import lightning.pytorch as pl
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn


class SlurmAutoRequeue(pl.Callback):
    """Slurm auto-requeue that cannot deadlock DDP: on the requeue signal (``#SBATCH
    --signal=SIGUSR1@90``), every rank saves ``hpc_ckpt_<n>.ckpt`` together at the end of a
    training batch and rank 0 runs ``scontrol requeue <job id>``; the restarted job resumes from
    that checkpoint (Lightning loads the newest ``hpc_ckpt_*`` in ``default_root_dir`` on Slurm).

    Why not Lightning's own handler (``SLURMEnvironment(auto_requeue=True)``): it saves the
    checkpoint *inside* the signal handler, and saving is collective (a barrier).  Python runs a
    signal handler wherever the rank's main thread happens to be, so a rank that takes the signal
    between two collectives enters the barrier while another rank is in the gradient all-reduce:
    the job hangs until its time limit, with no checkpoint and no requeue.  Here the handler only
    records the request; after each training batch the ranks agree on it (any rank,
    ``reduce_boolean_decision``) and then act at the same point.  Installed in ``setup``, before
    Lightning registers its handlers, so Lightning keeps this one for the requeue signal.

    Active in a Slurm batch job whose ``SLURMEnvironment`` has ``auto_requeue=True`` (Lightning's
    default), during ``fit``; inert elsewhere.  ``exodus-lightning fit`` adds it; add it to your own
    Trainer's callbacks when you launch Lightning on Slurm yourself.  Cost: one boolean all-reduce
    every ``check_every_n_steps`` training batches (on GPUs also a host-device synchronisation; raise
    it for very short steps, keeping ``check_every_n_steps`` steps well under the signal's 90 s).

    Example::

        trainer = Trainer(strategy="ddp", callbacks=[SlurmAutoRequeue()])
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        super().__init__()
        if isinstance(check_every_n_steps, bool) or not isinstance(check_every_n_steps, int) or check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be a positive int, got {check_every_n_steps!r}")
        self.check_every_n_steps = check_every_n_steps
        self._signal: Optional[int] = None
        self._previous: Any = None
        self._requested = False

    @staticmethod
    def _environment(trainer: "pl.Trainer") -> Any:
        env = getattr(trainer.strategy, "cluster_environment", None)
        if env is None:  # single-device strategies keep it on the accelerator connector only
            env = getattr(getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)
        return env

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        env = self._environment(trainer)
        if stage != "fit" or not isinstance(env, SLURMEnvironment) or not env.auto_requeue or self._signal is not None:
            return
        if threading.current_thread() is not threading.main_thread():
            rank_zero_warn("SlurmAutoRequeue: not in the main thread, cannot install the requeue signal handler; "
                           "Lightning's own handler stays in place")
            return
        sig = env.requeue_signal or signal.SIGUSR1
        self._previous = signal.signal(sig, self._on_signal)
        self._signal = int(sig)
        self._requested = False

    def _on_signal(self, signum: int, frame: Any) -> None:
        # a flag only: the collective work happens at the next batch end, on every rank at once
        self._requested = True

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self._signal is None or trainer.global_step % self.check_every_n_steps:
            return
        if not trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            return
        self._requested = False
        rank_zero_info(f"Handling auto-requeue signal: {self._signal} (at step {trainer.global_step}, all ranks)")
        for logger in trainer.loggers:  # flush the metrics before the job is killed
            logger.finalize("finished")
        trainer.save_checkpoint(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))
        if trainer.is_global_zero:
            array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
            result = subprocess.call(["scontrol", "requeue", job])
            if result == 0:
                rank_zero_info(f"Requeued SLURM job: {job}")
            else:
                rank_zero_warn(f"Requeuing SLURM job {job} failed with exit code {result}")

    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if self._signal is not None and stage == "fit":
            signal.signal(self._signal, self._previous if self._previous is not None else signal.SIG_DFL)
            self._signal = None


__all__ = ["SlurmAutoRequeue"]
