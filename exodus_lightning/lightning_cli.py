"""``exodus-lightning fit|validate|test|predict``: LightningCLI with the project's defaults.

- Any LightningModule / LightningDataModule by ``class_path`` (ours, e.g.
  ``exodus_lightning.models.SpikingClassifier``, or the user's own), configured by ``-c config.yaml``
  and command-line overrides; ``--print_config`` shows the full resolved config.
- Default logger: Weights & Biases, offline unless the user is logged in (see
  :mod:`exodus_lightning.tracking`); ``--trainer.logger`` replaces it.
- The resolved config is saved with every run, into the run's own folder (the W&B run's files,
  or the logger's log dir), atomically and overwrite-safe, so a requeued job that resumes the same
  run rewrites it instead of failing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger, WandbLogger

import exodus_lightning.callbacks  # noqa: F401  (short class names resolve in configs)
from exodus_lightning.callbacks import SlurmAutoRequeue
import exodus_lightning.models  # noqa: F401
import exodus_lightning.nn  # noqa: F401
from exodus_lightning.tracking import wandb_mode


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_dir(trainer: Trainer, log_dir: Optional[str]) -> Path:
    """The folder that belongs to this run: the W&B run's files folder, else the logger's log dir
    (``trainer.log_dir``, a collective call: the caller evaluates it on every rank), else the
    trainer's root dir."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return Path(logger.experiment.dir)
    return Path(log_dir) if log_dir else Path(trainer.default_root_dir)


class RunConfigSaver(SaveConfigCallback):
    """Writes the resolved config to ``<run dir>/config.yaml`` (atomic replace) and logs it as the
    run's hyperparameters."""

    def __init__(self, parser, config, config_filename: str = "config.yaml", overwrite: bool = True,
                 multifile: bool = False, save_to_log_dir: bool = False) -> None:
        super().__init__(parser, config, config_filename, overwrite, multifile, save_to_log_dir=save_to_log_dir)
        self.saved_path: Optional[Path] = None
        self._log_dir: Optional[str] = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not self.already_saved:
            # trainer.log_dir broadcasts: every rank must ask, not only rank 0 in save_config.
            self._log_dir = trainer.log_dir
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        path = run_dir(trainer, self._log_dir) / self.config_filename
        _atomic_write(path, text)
        self.saved_path = path
        for logger in trainer.loggers:
            if isinstance(logger, Logger):
                logger.log_hyperparams({"cli_config": text})


def default_logger_config(project: str = "exodus-lightning", save_dir: Optional[str] = None) -> dict:
    """The Trainer's default logger as a config dict (so ``--print_config`` shows it).  The run is
    written under ``$WANDB_DIR`` when set (the SLURM templates point it at the job's run folder),
    else the working directory."""
    mode = wandb_mode()
    save_dir = save_dir if save_dir is not None else os.environ.get("WANDB_DIR", ".")
    return {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        # Online runs upload the checkpoints as artifacts when training ends; offline runs keep them
        # on disk only (artifacts cannot be written offline).
        "init_args": {"project": project, "save_dir": save_dir, "offline": mode == "offline",
                      "log_model": mode == "online"},
    }


class ExodusCLI(LightningCLI):
    """LightningCLI with W&B as the default logger, per-run config saving and, under Slurm, the
    DDP-safe auto-requeue (:class:`~exodus_lightning.callbacks.SlurmAutoRequeue`)."""

    def __init__(self, args: Optional[list[str]] = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("save_config_callback", RunConfigSaver)
        trainer_defaults = dict(kwargs.pop("trainer_defaults", {}) or {})
        trainer_defaults.setdefault("logger", default_logger_config())
        super().__init__(
            model_class=None,
            datamodule_class=None,
            trainer_defaults=trainer_defaults,
            args=args,
            run=run,
            **kwargs,
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # inert outside a Slurm batch job; replaces Lightning's in-handler checkpoint, which can
        # deadlock DDP (see SlurmAutoRequeue)
        if not any(isinstance(c, SlurmAutoRequeue) for c in trainer.callbacks):
            trainer.callbacks.append(SlurmAutoRequeue())
        return trainer


def cli_main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the training sub-commands (``argv`` starts with fit/validate/test/predict)."""
    import sys

    # LightningCLI reads sys.argv itself (and warns when given both): hand it exactly argv.
    saved = sys.argv
    sys.argv = [saved[0] if saved else "exodus-lightning", *(argv if argv is not None else saved[1:])]
    try:
        ExodusCLI()
    finally:
        sys.argv = saved
    return 0
