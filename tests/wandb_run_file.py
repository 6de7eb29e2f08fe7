"""Decoding a W&B offline run file for the tests: config, history, summary, files and exit code of
``run-<id>.wandb`` (the records come from :func:`exodus_lightning.tracking.iter_records`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from exodus_lightning.tracking import iter_records


@dataclass
class OfflineRun:
    """What a run file holds: config, history rows (``{key: value}`` per ``log`` call), summary, and
    the names of the media files it logged."""

    run_id: Optional[str] = None
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    exit_code: Optional[int] = None

    def metric(self, key: str) -> list[Any]:
        """Every logged value of ``key``, in order."""
        return [row[key] for row in self.history if key in row]


def _item_key(item: Any) -> str:
    return item.key if item.key else "/".join(item.nested_key)


def _value(value_json: str) -> Any:
    try:
        return json.loads(value_json)
    except ValueError:
        return value_json


def read_offline_run(path: Union[str, Path]) -> OfflineRun:
    """Decode a ``run-<id>.wandb`` file (or the run folder holding one) into an :class:`OfflineRun`."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("run-*.wandb"))
        if not found:
            raise FileNotFoundError(f"no run-*.wandb file in {path}")
        path = found[0]
    run = OfflineRun()
    for payload in iter_records(path):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.run_id = rec.run.run_id
            for item in rec.run.config.update:
                run.config[_item_key(item)] = _value(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                run.config[_item_key(item)] = _value(item.value_json)
        elif kind == "history":
            run.history.append({_item_key(i): _value(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for item in rec.summary.update:
                run.summary[_item_key(item)] = _value(item.value_json)
        elif kind == "files":
            run.files.extend(f.path for f in rec.files.files)
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    return run
