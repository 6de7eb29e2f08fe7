"""Experiment tracking in Weights & Biases: offline by default, online when the user is logged in.

:func:`wandb_logger` builds the default logger of the CLI: a Lightning ``WandbLogger`` writing an
offline run to ``./wandb`` (no account needed; ``wandb sync wandb/offline-run-*`` uploads it later),
or an online run when ``WANDB_API_KEY`` is set or ``WANDB_MODE=online``.

:func:`iter_records` reads the records of a run's ``run-<id>.wandb`` file (wandb 0.31 ships no Python
reader: its ``DataStore`` went with the Go core): the file is a LevelDB-style log — a 7-byte header
``":W&B"``, magic ``0xBEE1``, version 0, then 32 KiB blocks of records, each with a 7-byte header
(CRC-32 seeded with the record type, length, type FULL/FIRST/MIDDLE/LAST) — and every record payload
is a ``wandb.proto`` ``Record`` message.

:func:`finish_wandb_run` finishes the active run and checks that its run file ends with the run's
exit record: when the disk fills up, wandb drops what it cannot write, notes it only in its
internal log and exits 0; the CLI turns that into :class:`IncompleteRunError`.

Example:
    >>> from exodus_lightning.tracking import wandb_mode
    >>> wandb_mode({"WANDB_MODE": "online"}), wandb_mode({})
    ('online', 'offline')
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any, Mapping, Optional, Union

_HEADER = struct.Struct("<4sHB")
_RECORD = struct.Struct("<IHB")
_IDENT, _MAGIC, _VERSION = b":W&B", 0xBEE1, 0
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_mode(environ: Optional[Mapping[str, str]] = None) -> str:
    """``"online"`` when the user asked for it (``WANDB_MODE=online``) or is logged in through
    ``WANDB_API_KEY``; ``WANDB_MODE`` = offline/disabled wins; ``"offline"`` otherwise."""
    env = os.environ if environ is None else environ
    mode = env.get("WANDB_MODE", "").strip().lower()
    if mode in ("online", "offline", "disabled"):
        return mode
    if mode == "dryrun":
        return "offline"
    return "online" if env.get("WANDB_API_KEY") else "offline"


def wandb_logger(project: str = "exodus-lightning", save_dir: str = ".", name: Optional[str] = None,
                 run_id: Optional[str] = None, log_model: bool = False, **kwargs: Any):
    """The default experiment logger: a ``lightning.pytorch.loggers.WandbLogger`` in the mode of
    :func:`wandb_mode`, writing under ``save_dir/wandb``. ``run_id`` resumes a run (requeued jobs)."""
    from lightning.pytorch.loggers import WandbLogger

    mode = wandb_mode()
    if run_id is not None:
        kwargs.setdefault("resume", "allow")
    logger = WandbLogger(project=project, save_dir=save_dir, name=name, id=run_id, offline=(mode == "offline"),
                         mode=mode, log_model=log_model, **kwargs)
    leave_anonymous_unset(logger)
    return logger


def leave_anonymous_unset(logger: Any) -> None:
    """Lightning's ``WandbLogger`` hands ``anonymous=None`` to ``wandb.init``, which wandb (>= 0.19)
    takes as set and answers on every run with "The anonymous setting has no effect"; None means
    unset, so leave it out.  Call before the run starts (before ``logger.experiment``)."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and "anonymous" in init and init["anonymous"] is None:
        del init["anonymous"]


class CorruptRunFile(ValueError):
    """A ``.wandb`` file whose framing or checksums are wrong."""


def iter_records(path: Union[str, Path]):
    """Yield the raw record payloads (bytes) of a ``run-<id>.wandb`` file, checking every CRC.

    A truncated final record (a run killed mid-write) ends the iteration without error: every
    complete record before it is still returned."""
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size:
        raise CorruptRunFile(f"{path}: too short to be a W&B run file ({len(data)} bytes)")
    ident, magic, version = _HEADER.unpack_from(data, 0)
    if ident != _IDENT or magic != _MAGIC or version != _VERSION:
        raise CorruptRunFile(f"{path}: not a W&B run file (header {ident!r}, magic {magic:#x}, version {version})")
    pos = _HEADER.size
    pending: list[bytes] = []
    while pos < len(data):
        space = _BLOCK - pos % _BLOCK
        if space < _RECORD.size:  # the rest of the block is zero padding
            pos += space
            continue
        if pos + _RECORD.size > len(data):
            return
        crc, length, rtype = _RECORD.unpack_from(data, pos)
        if crc == 0 and length == 0 and rtype == 0:  # zero-filled tail of a block
            pos += space
            continue
        start = pos + _RECORD.size
        if start + length > len(data):
            return  # truncated record at the end
        chunk = data[start:start + length]
        expected = zlib.crc32(chunk, zlib.crc32(bytes([rtype]))) & 0xFFFFFFFF
        if crc != expected:
            raise CorruptRunFile(f"{path}: record at byte {pos} has CRC {crc:#010x}, expected {expected:#010x}")
        pos = start + length
        if rtype == _FULL:
            yield chunk
        elif rtype == _FIRST:
            pending = [chunk]
        elif rtype == _MIDDLE:
            pending.append(chunk)
        elif rtype == _LAST:
            pending.append(chunk)
            yield b"".join(pending)
            pending = []
        else:
            raise CorruptRunFile(f"{path}: record at byte {pos} has unknown type {rtype}")


class IncompleteRunError(RuntimeError):
    """W&B could not write the whole run file (a full disk): the run ends at the last record written."""


def _write_errors(run_dir: Path) -> list[str]:
    """The errors wandb's writer logged for the run (``logs/debug-internal.log``, JSON lines)."""
    errors = []
    try:
        lines = (run_dir / "logs" / "debug-internal.log").read_text(errors="replace").splitlines()
    except OSError:
        return errors
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") == "ERROR":
            errors.append(str(entry.get("msg", "")))
    return errors


def _has_exit_record(path: Path, tail: int = 64) -> bool:
    from wandb.proto import wandb_internal_pb2 as pb

    last = collections.deque(iter_records(path), maxlen=tail)  # the exit record is among the last ones
    for payload in last:
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "exit":
            return True
    return False


def check_run_file(run_dir: Union[str, Path], run_id: str) -> None:
    """Raise :class:`IncompleteRunError` unless ``<run_dir>/run-<run_id>.wandb`` of a finished run
    holds the run's exit record (every record before it was written)."""
    run_dir = Path(run_dir)
    path = run_dir / f"run-{run_id}.wandb"
    try:
        complete = _has_exit_record(path)
    except (OSError, CorruptRunFile):
        complete = False
    if complete:
        return
    errors = _write_errors(run_dir)  # wandb cannot always log the failure: its log is on that disk too
    try:
        free_bytes: Optional[int] = shutil.disk_usage(run_dir).free
        free = f"{free_bytes / 2**20:.1f} MiB free there"
    except OSError:
        free_bytes, free = None, "free space unknown"
    if any("no space left" in e for e in errors) or (free_bytes is not None and free_bytes < 2**20):
        reason = "no space left on device"
    else:
        reason = errors[0] if errors else "the file ends before the run's exit record"
    raise IncompleteRunError(
        f"the W&B run {run_id} was not written completely: {reason} ({free}). {path} holds the records up to the "
        "failure; what was logged after it is lost. Free space or point WANDB_DIR elsewhere before the next run; "
        "the checkpoints are written separately.")


def finish_wandb_run() -> None:
    """Finish the active W&B run, if any, wait until wandb has written everything (its service
    stops), and :func:`check_run_file` the run."""
    try:
        import wandb
    except ImportError:
        return
    run = wandb.run
    if run is None or getattr(run, "disabled", False):
        return
    run_dir, run_id = Path(run.dir).parent, run.id
    wandb.finish()
    wandb.teardown()  # finish() can return before wandb-core has closed the run file
    check_run_file(run_dir, run_id)
