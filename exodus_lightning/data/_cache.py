"""Sample cache for binned event frames: on disk (shared by all ranks and workers) or in memory.

Disk layout: ``<cache_root>/<name>-<key>/`` where ``key`` is a hash of everything that determines
the cached content (dataset identity: class, split, source files with sizes and mtimes; every
transform parameter; the cache format version). Changing e.g. ``dt_ms`` therefore changes the
key and never serves a stale entry. Each sample is one ``<index>.npz`` holding the frames in
sparse form (flat indices of non-zero entries + values + shape) and the label.

Every file is written to a temporary file in the same folder and then moved into place with
``os.replace`` (atomic on POSIX), so a crash or kill never leaves a half-written entry under the
final name, and concurrent writers (several ranks or workers) are harmless: the last replace wins
with identical content. A corrupt entry (e.g. disk error) is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from typing import Any

import numpy as np

__all__ = ["SampleCache", "cache_key", "atomic_write_bytes"]

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
_COMPLETE = "COMPLETE"


def cache_key(material: dict[str, Any]) -> str:
    """Stable short hash (16 hex digits) of a JSON-serialisable description."""
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class SampleCache:
    """Cache of ``(frames, label)`` per sample index.

    Args:
        root: parent folder for disk caches, or ``None`` for a memory-only cache.
        name: readable prefix of the cache folder (e.g. ``"SHD-train"``).
        material: description of the dataset identity and transform parameters; hashed into
            the folder name (and stored in ``meta.json`` for humans).
        memory: also (or, with ``root=None``, only) keep entries in a per-process dict. With
            DataLoader workers each worker holds its own copy (use ``persistent_workers``).
    """

    def __init__(self, root: str | None, name: str, material: dict[str, Any], memory: bool = False):
        self.material = dict(material, cache_format=CACHE_FORMAT_VERSION)
        self.key = cache_key(self.material)
        self.memory = memory or root is None
        self._mem: dict[int, tuple[np.ndarray, int]] = {}
        self.path: str | None = None
        if root is not None:
            self.path = os.path.join(root, f"{name}-{self.key}")

    # -- disk helpers -------------------------------------------------------------------------
    def ensure_dir(self) -> None:
        """Create the cache folder and its ``meta.json`` (idempotent, safe across processes)."""
        if self.path is None:
            return
        os.makedirs(self.path, exist_ok=True)
        meta = os.path.join(self.path, "meta.json")
        if not os.path.exists(meta):
            atomic_write_bytes(meta, json.dumps(self.material, sort_keys=True, indent=1, default=str).encode())

    def _entry(self, index: int) -> str:
        assert self.path is not None
        return os.path.join(self.path, f"{index:07d}.npz")

    @property
    def complete(self) -> bool:
        """True once :meth:`mark_complete` ran (every entry was written)."""
        return self.path is not None and os.path.exists(os.path.join(self.path, _COMPLETE))

    def mark_complete(self, n: int) -> None:
        """Record that all ``n`` entries exist."""
        if self.path is not None:
            atomic_write_bytes(os.path.join(self.path, _COMPLETE), str(n).encode())

    def has(self, index: int) -> bool:
        """Whether ``index`` is cached (memory or disk)."""
        if index in self._mem:
            return True
        return self.path is not None and os.path.exists(self._entry(index))

    # -- API ----------------------------------------------------------------------------------
    def get(self, index: int) -> tuple[np.ndarray, int] | None:
        """Return the cached ``(frames, label)`` or ``None`` on a miss."""
        hit = self._mem.get(index)
        if hit is not None:
            return hit
        if self.path is None:
            return None
        p = self._entry(index)
        if not os.path.exists(p):
            return None
        try:
            with np.load(p) as z:
                shape = tuple(int(s) for s in z["shape"])
                frames = np.zeros(int(np.prod(shape)), dtype=z["val"].dtype)
                frames[z["idx"]] = z["val"]
                frames = frames.reshape(shape)
                label = int(z["label"])
        except Exception as e:  # corrupt entry: recompute instead of failing
            log.warning("ignoring unreadable cache entry %s (%s)", p, e)
            return None
        if self.memory:
            self._mem[index] = (frames, label)
        return frames, label

    def put(self, index: int, frames: np.ndarray, label: int) -> None:
        """Store ``(frames, label)`` for ``index``."""
        if self.memory:
            self._mem[index] = (frames, int(label))
        if self.path is None:
            return
        flat = frames.reshape(-1)
        idx = np.flatnonzero(flat)
        idx = idx.astype(np.int32 if flat.size < 2**31 else np.int64)
        import io

        buf = io.BytesIO()
        np.savez(buf, shape=np.asarray(frames.shape, dtype=np.int64), idx=idx, val=flat[idx], label=np.int64(label))
        if not os.path.isdir(self.path):
            self.ensure_dir()
        atomic_write_bytes(self._entry(index), buf.getvalue())
