"""Checkpoint files that survive a crash: written atomically, checked before they are read.

:class:`AtomicCheckpointIO` is Lightning's ``CheckpointIO`` plugin for local files (the CLI puts it
in place of ``TorchCheckpointIO``; in Python pass ``Trainer(plugins=[AtomicCheckpointIO()])``):

- **save**: ``torch.save`` streams into a temporary file in the checkpoint's own folder
  (``.<name>.<random>.tmp``), which is flushed and ``fsync``-ed, then renamed over the target
  (``os.replace``, atomic on POSIX) and the folder is ``fsync``-ed.  A process killed at any
  point leaves the previous file or the new one, never a partial file under the checkpoint's
  name.  (Lightning's own writer serialises into memory and then *moves* a file from the system
  temp folder — a copy into the target when that folder is on another file system — without
  ``fsync``.)  A failed write (no space left, quota, I/O error) removes the temporary file and
  raises :class:`CheckpointSaveError` naming the file, the reason and the free space; the
  previous checkpoint is untouched.  Temporary files of writers that were killed are removed at
  the next successful save of the same name.
- **load**: :func:`verify_checkpoint` first, so a truncated or corrupted file is an error that
  names it (:class:`CorruptCheckpointError`) instead of a pickle or zip traceback.

:func:`verify_checkpoint` checks that the file is a complete zip archive (``torch.save``'s format)
and that every record matches the CRC-32 that ``torch.save`` stored for it (a flipped bit in the
weights is otherwise loaded silently).

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "last.ckpt"
    >>> AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    >>> verify_checkpoint(path)
    >>> path.write_bytes(path.read_bytes()[:100]) and None      # truncated
    >>> try:
    ...     verify_checkpoint(path)
    ... except CorruptCheckpointError as e:
    ...     print("truncated or not a checkpoint" in str(e), str(path) in str(e))
    True True
"""

from __future__ import annotations

import errno as errno_codes
import os
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "verify_checkpoint", "CorruptCheckpointError", "CheckpointNotFoundError",
           "CheckpointSaveError"]

PathLike = Union[str, os.PathLike]
_verified: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) of the last file that passed


class CorruptCheckpointError(ValueError):
    """A checkpoint file that cannot be read: empty, truncated, or with a record that fails its CRC."""


class CheckpointNotFoundError(FileNotFoundError):
    """The checkpoint file named does not exist."""


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written; the previous file of that name is untouched."""

    def __init__(self, message: str, errno: Optional[int] = None) -> None:
        super().__init__(message)
        self.errno = errno


def _others(path: Path) -> str:
    """The other checkpoints next to ``path``, newest first (what the user can fall back to)."""
    try:
        files = sorted((p for p in path.parent.glob("*.ckpt") if p != path), key=lambda p: -p.stat().st_mtime)
    except OSError:
        return ""
    return f" Other checkpoints in {path.parent}: {', '.join(p.name for p in files[:5])}." if files else ""


def verify_checkpoint(path: PathLike) -> None:
    """Raise :class:`CorruptCheckpointError` naming ``path`` unless it is a complete checkpoint whose
    records all match their CRC-32 (:class:`CheckpointNotFoundError` if it does not exist).  A file in the
    pre-1.6 (non-zip) ``torch.save`` format, and a folder (a sharded checkpoint), are not checked."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        return
    stat = path.stat()
    key = str(path.resolve())
    if _verified.get(key) == (stat.st_size, stat.st_mtime_ns):
        return
    if stat.st_size == 0:
        raise CorruptCheckpointError(f"checkpoint {path} is empty (0 bytes): a write that was cut short?{_others(path)}")
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":  # a pickle: the legacy format, which has no checksums
        return
    if not zipfile.is_zipfile(path):
        raise CorruptCheckpointError(
            f"checkpoint {path} is truncated or not a checkpoint: it has no zip directory at its end "
            f"({stat.st_size} bytes; a copy or write that was cut short?).{_others(path)}")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CorruptCheckpointError(f"checkpoint {path} is corrupted: {e}.{_others(path)}") from None
    if bad is not None:
        raise CorruptCheckpointError(
            f"checkpoint {path} is corrupted: record {bad!r} does not match its CRC-32 checksum.{_others(path)}")
    _verified[key] = (stat.st_size, stat.st_mtime_ns)


def _os_error(exc: BaseException) -> Optional[OSError]:
    """The ``OSError`` behind ``exc`` (torch.save reports a failed write as a RuntimeError whose
    context is the OSError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def _free(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free there"
    except OSError:
        return "free space unknown"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic, ``fsync``-ed saves and verified loads (module docstring).
    Remote paths (``s3://`` and other fsspec URLs) go to Lightning's writer unchanged."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: PathLike, storage_options: Optional[Any] = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            cause = _os_error(e)
            if cause is None:
                raise
            reason = "no space left on device" if cause.errno == errno_codes.ENOSPC else cause.strerror
            kept = "the previous checkpoint of that name is kept" if path.exists() else "no file was written"
            raise CheckpointSaveError(f"could not save checkpoint {path}: {reason} ({_free(path.parent)}); {kept}",
                                      cause.errno) from e
        _fsync_folder(path.parent)
        _verified.pop(str(path.resolve()), None)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by writers that were killed
            stale.unlink(missing_ok=True)

    def load_checkpoint(self, path: PathLike, map_location: Optional[Callable] = lambda storage, loc: storage,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        if "://" not in str(path):
            verify_checkpoint(path)
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
