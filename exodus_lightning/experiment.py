"""Which experiment a run belongs to, and which run ``--ckpt_path last`` continues.

An *experiment* is named by the user (the W&B run name, ``--trainer.logger.init_args.name``) or
derived from the config: the stem of the last ``-c`` file and a digest of what decides what is
learned — the ``model``, ``data`` and ``seed_everything`` sections of the resolved config, without
the data options that only say where files are or how they are loaded (:data:`LOCATION_KEYS`).
Trainer options (``max_epochs``, devices, callbacks, ...) do not change the experiment, so a run
stopped after epoch 1 and restarted with more epochs is the same experiment.

Each launch is a *run* ``<experiment>-<8 hex digits>`` with its own folder
``<save_dir>/<project>/<run id>/checkpoints/`` (Lightning's layout under the W&B logger) and a W&B
run of the same id.  ``--ckpt_path last`` picks the newest ``last*.ckpt`` among the runs of the
experiment (:func:`newest_last_checkpoint`); the CLI then reuses that run's id, so the checkpoints
keep going into the same folder and the W&B run continues.  Under Slurm (``WANDB_RUN_ID`` set by
the sbatch templates) or with an explicit ``--trainer.logger.init_args.id`` the run id is given and
``last`` looks in that run only.

Example:
    >>> name = experiment_name({"model": {"class_path": "M"}, "data": {"init_args": {"data_dir": "/a"}}},
    ...                        config_file="configs/quickstart.yaml")
    >>> name.startswith("quickstart-"), name == experiment_name(
    ...     {"model": {"class_path": "M"}, "data": {"init_args": {"data_dir": "/b"}}}, "configs/quickstart.yaml")
    (True, True)
    >>> is_run_of("quickstart-0a1b2c3d-12345678", "quickstart-0a1b2c3d")
    True
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

__all__ = ["LOCATION_KEYS", "experiment_name", "new_run_id", "is_run_of", "newest_last_checkpoint", "LastCheckpoint",
           "experiments_with_checkpoints"]

#: Data options that say where the files are or how they are read, not what is learned.
LOCATION_KEYS = frozenset({"data_dir", "cache_dir", "download", "num_workers", "pin_memory", "persistent_workers",
                           "prefetch_factor"})
_SUFFIX = re.compile(r"^[0-9a-f]{8}$")


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return slug[:limit].rstrip("-") or "run"


def _without_location(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _without_location(v) for k, v in data.items() if k not in LOCATION_KEYS}
    return data


def experiment_name(config: Mapping[str, Any], config_file: Optional[Union[str, Path]] = None,
                    name: Optional[str] = None) -> str:
    """``name`` made safe for a folder and a W&B id, or ``<config stem>-<digest>`` (module
    docstring) from the resolved ``config`` (a dict with ``model``, ``data``, ``seed_everything``)."""
    if name:
        return _slug(name)
    identity = {"model": config.get("model"), "data": _without_location(config.get("data")),
                "seed_everything": config.get("seed_everything")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    stem = _slug(Path(config_file).stem) if config_file else "run"
    return f"{stem}-{digest}"


def new_run_id(experiment: str) -> str:
    """A fresh run id of ``experiment``: ``<experiment>-<8 random hex digits>``."""
    return f"{experiment}-{secrets.token_hex(4)}"


def is_run_of(run_id: str, experiment: str) -> bool:
    prefix = f"{experiment}-"
    return run_id.startswith(prefix) and bool(_SUFFIX.match(run_id[len(prefix):]))


@dataclass(frozen=True)
class LastCheckpoint:
    path: Path
    run_id: str


def newest_last_checkpoint(root: Union[str, Path], experiment: str,
                           run_id: Optional[str] = None) -> Optional[LastCheckpoint]:
    """The newest (by modification time) ``<root>/<run>/checkpoints/last*.ckpt`` over the runs of
    ``experiment`` (or of the run ``run_id`` only), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = []
    for run in root.iterdir():
        if run.is_dir() and (run.name == run_id if run_id is not None else is_run_of(run.name, experiment)):
            found += [(f.stat().st_mtime, str(f), run.name) for f in (run / "checkpoints").glob("last*.ckpt")]
    if not found:
        return None
    _, path, run = max(found)
    return LastCheckpoint(Path(path), run)


def experiments_with_checkpoints(root: Union[str, Path]) -> list[str]:
    """The experiments that have a ``last*.ckpt`` under ``root`` (for the message when ``last``
    finds none of the current experiment: usually a changed model or data argument)."""
    root = Path(root)
    names = set()
    if root.is_dir():
        for run in root.iterdir():
            head, _, tail = run.name.rpartition("-")
            if head and _SUFFIX.match(tail) and any((run / "checkpoints").glob("last*.ckpt")):
                names.add(head)
    return sorted(names)
