"""``exodus-lightning fit|validate|test|predict``: LightningCLI with the project's defaults.

- Any LightningModule / LightningDataModule by ``class_path`` (ours, e.g.
  ``exodus_lightning.models.SpikingClassifier``, or the user's own), configured by ``-c config.yaml``
  and command-line overrides; ``--print_config`` shows the full resolved config.
- Default logger: Weights & Biases, offline unless the user is logged in (see
  :mod:`exodus_lightning.tracking`); ``--trainer.logger`` replaces it.
- The resolved config is saved with every run, into the run's own folder (the W&B run's files,
  or the logger's log dir), atomically and overwrite-safe, so a requeued job that resumes the same
  run rewrites it instead of failing.
- Runs are grouped into experiments (:mod:`exodus_lightning.experiment`): the W&B run id is
  ``<experiment>-<8 hex digits>``, and ``--ckpt_path last`` resumes the newest ``last.ckpt`` of
  the experiment and continues its W&B run under the same id.
- Checkpoints are written atomically and checked before they are read
  (:mod:`exodus_lightning.checkpoint_io`); a truncated or corrupted ``--ckpt_path``, a missing
  dataset or a full disk end the command with a one-paragraph error, no traceback.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, NoReturn, Optional

from jsonargparse import DefaultHelpFormatter
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

import exodus_lightning.callbacks  # noqa: F401  (short class names resolve in configs)
from exodus_lightning.callbacks import SlurmAutoRequeue
from exodus_lightning.data.binning import renamed_argument_hint
from exodus_lightning.checkpoint_io import AtomicCheckpointIO, CheckpointNotFoundError, CheckpointSaveError, \
    CorruptCheckpointError, verify_checkpoint
from exodus_lightning.experiment import experiment_name, experiments_with_checkpoints, new_run_id, \
    newest_last_checkpoint
import exodus_lightning.models  # noqa: F401
import exodus_lightning.nn  # noqa: F401
from exodus_lightning.tracking import IncompleteRunError, finish_wandb_run, leave_anonymous_unset, wandb_mode

_WANDB_LOGGERS = {"lightning.pytorch.loggers.WandbLogger", "lightning.pytorch.loggers.wandb.WandbLogger",
                  "pytorch_lightning.loggers.WandbLogger", "pytorch_lightning.loggers.wandb.WandbLogger"}
# --ckpt_path values that are keywords, not files ("registry" also as "registry:<model>:...")
_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


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


def _quiet_third_party() -> None:
    """Silence, precisely, what Lightning prints on every run that is not about the run: an advert
    for its paid loggers (logged as "💡 Tip: ...") and torch's deprecation of ``LeafSpec``, which
    Lightning's own ``_pytree`` helper triggers.  (W&B's "anonymous setting" warning is fixed at
    its cause, :func:`~exodus_lightning.tracking.leave_anonymous_unset`.)"""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            module=r"lightning\.pytorch\.utilities\._pytree")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _AdvertFilter) for f in log.filters):
            log.addFilter(_AdvertFilter())


class _AdvertFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


class ExodusHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, with a long "known subclasses" list (an ``nn.Module`` argument would
    list every imported ``torch.nn`` class, hundreds of lines) replaced by how to choose one."""

    longest_list = 20

    def _get_help_string(self, action: Any) -> str:
        text = super()._get_help_string(action)
        head, known, rest = text.partition(", known subclasses: ")
        if not known or not rest.endswith(")") or rest.count(", ") < self.longest_list:
            return text
        option = action.option_strings[0] if action.option_strings else action.dest
        ours = [p for p in rest[:-1].split(", ") if p.startswith("exodus_lightning.")]
        listed = f" (the framework's: {', '.join(ours)})" if 0 < len(ours) <= 8 else ""
        return f"{head}, any subclass by class_path{listed}: {option}.help CLASS shows its arguments)"


class ExodusArgumentParser(LightningArgumentParser):
    """The CLI's parser: :class:`ExodusHelpFormatter` (also for ``--model.help CLASS``, which builds
    a new parser of this class)."""

    def __init__(self, *args: Any, formatter_class: type = ExodusHelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        """jsonargparse's error, with the new name of an earlier time-binning argument the config used
        (``dt_ms`` -> ``time_window_ms``, :data:`~exodus_lightning.data.binning.RENAMED_ARGUMENTS`)."""
        super().error(message + renamed_argument_hint(message), ex)


def _wandb_logger_config(logger: Any) -> Optional[Any]:
    """The config namespace of the (first) W&B logger among the Trainer's logger settings."""
    for item in logger if isinstance(logger, list) else [logger]:
        if getattr(item, "class_path", None) in _WANDB_LOGGERS:
            return item
    return None


def _config_file(config: Any) -> Optional[str]:
    files = config.get("config") or []
    return os.fspath(getattr(files[-1], "relative", files[-1])) if files else None


def _checkpoint_configs(config: Any) -> list[Any]:
    """The ModelCheckpoint entries among the config's callbacks."""
    callbacks = config.trainer.get("callbacks") or []
    return [cb for cb in (callbacks if isinstance(callbacks, list) else [callbacks])
            if str(getattr(cb, "class_path", "")).endswith("ModelCheckpoint")]


def _has_own_checkpoint_folder(config: Any) -> bool:
    """Whether a ModelCheckpoint of the config sets ``dirpath`` (Lightning then finds ``last`` there)."""
    return any(cb.get("init_args") is not None and cb.init_args.get("dirpath") for cb in _checkpoint_configs(config))


class ExodusCLI(LightningCLI):
    """LightningCLI with W&B as the default logger, per-run config saving, experiments and
    ``--ckpt_path last`` across launches (module docstring), atomic checkpoints and, under Slurm,
    the DDP-safe auto-requeue (:class:`~exodus_lightning.callbacks.SlurmAutoRequeue`)."""

    def __init__(self, args: Optional[list[str]] = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("save_config_callback", RunConfigSaver)
        kwargs.setdefault("parser_class", ExodusArgumentParser)
        trainer_defaults = dict(kwargs.pop("trainer_defaults", {}) or {})
        trainer_defaults.setdefault("logger", default_logger_config())
        self.experiment: Optional[str] = None
        _quiet_third_party()
        super().__init__(
            model_class=None,
            datamodule_class=None,
            trainer_defaults=trainer_defaults,
            args=args,
            run=run,
            **kwargs,
        )

    def _command_config(self) -> Any:
        sub = self.config.get("subcommand")
        return self.config[sub] if sub else self.config

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        config = self._command_config()
        # Named now, before seed_everything=true becomes a random seed.
        wandb = _wandb_logger_config(config.trainer.get("logger"))
        name = wandb.init_args.get("name") if wandb is not None else None
        self.experiment = experiment_name(config.as_dict(), _config_file(config), name)
        ckpt = config.get("ckpt_path")
        if ckpt and str(ckpt).split(":")[0] not in _CKPT_KEYWORDS and "://" not in str(ckpt):
            verify_checkpoint(ckpt)  # before anything starts, and before LightningCLI reads its hyperparameters

    def before_instantiate_classes(self) -> None:
        config = self._command_config()
        wandb = _wandb_logger_config(config.trainer.get("logger"))
        if wandb is None:  # another logger: `last` is Lightning's (the checkpoint folder of this launch)
            return
        init = wandb.init_args
        root = Path(init.get("save_dir") or ".") / (init.get("project") or "lightning_logs")
        run_id = init.get("id") or os.environ.get("WANDB_RUN_ID")
        if config.get("ckpt_path") == "last" and not _has_own_checkpoint_folder(config):
            found = newest_last_checkpoint(root, self.experiment, run_id)
            if found is not None:
                verify_checkpoint(found.path)
                config.ckpt_path = str(found.path)
                if self.subcommand == "fit":  # the checkpoints and the W&B run continue
                    run_id = found.run_id
                    init.resume = "allow"
                    # continuing into the run's own folder is the point, not something to warn about
                    warnings.filterwarnings("ignore", message=rf"Checkpoint directory .*{re.escape(run_id)}"
                                                              r"[/\\]checkpoints exists and is not empty")
                rank_zero_info(f"--ckpt_path last: run {found.run_id} of experiment {self.experiment}, {found.path}")
            else:
                others = experiments_with_checkpoints(root)
                hint = f" (experiments with checkpoints there: {', '.join(others)})" if others else ""
                rank_zero_warn(f"--ckpt_path last: experiment {self.experiment} has no last.ckpt under "
                               f"{root}/{self.experiment}-*/checkpoints/{hint}; starting a new run. The experiment is "
                               "the model, data and seed of the config; name it with --trainer.logger.init_args.name")
                config.ckpt_path = None
        init.id = run_id or new_run_id(self.experiment)
        init.group = self.experiment

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # inert outside a Slurm batch job; replaces Lightning's in-handler checkpoint, which can
        # deadlock DDP (see SlurmAutoRequeue)
        if not any(isinstance(c, SlurmAutoRequeue) for c in trainer.callbacks):
            trainer.callbacks.append(SlurmAutoRequeue())
        if not _checkpoint_configs(self._command_config()):
            # Lightning's default ModelCheckpoint (no monitor, every epoch): keep last.ckpt too, for
            # --ckpt_path last.  (One with a monitor writes last.ckpt only when the metric improves,
            # Lightning >= 2.6: the shipped configs add a ModelCheckpoint(filename="last").)
            for callback in trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint) and callback.monitor is None and not callback.save_last:
                    callback.save_last = True
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not one the user chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                leave_anonymous_unset(logger)
        return trainer


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix and say how: shown as one message, without a traceback."""
    from exodus_lightning import data

    return (CheckpointNotFoundError, CorruptCheckpointError, CheckpointSaveError, IncompleteRunError,
            data.DataNotFoundError, data.CorruptFileError, data.CacheError)


def cli_main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the training sub-commands (``argv`` starts with fit/validate/test/predict).
    The W&B run is finished here and checked (:func:`~exodus_lightning.tracking.finish_wandb_run`);
    errors the user can act on are printed as ``exodus-lightning: error: ...`` (exit code 1)."""
    # LightningCLI reads sys.argv itself (and warns when given both): hand it exactly argv.
    saved = sys.argv
    sys.argv = [saved[0] if saved else "exodus-lightning", *(argv if argv is not None else saved[1:])]
    errors: list[BaseException] = []
    try:
        ExodusCLI()
    except _user_errors() as e:
        errors.append(e)
    finally:
        sys.argv = saved
    try:
        finish_wandb_run()
    except IncompleteRunError as e:
        errors.append(e)
    for e in errors:
        print(f"exodus-lightning: error: {e}", file=sys.stderr)
    return 1 if errors else 0
