"""The packed cache of one dataset split on disk: found by a content key, built once, never read half-written.

``<cache_dir>/<name>-<key>.packed`` where ``key`` hashes everything that determines the content
(dataset, split, the source files' names, sizes and mtimes, every binning parameter, the file format
version). Changing e.g. ``time_window_ms`` therefore changes the file name and never serves a stale cache.

Building: the first process takes the lock ``<file>.lock``, builds and writes the file (temporary
name, fsync, rename); every other process (DDP ranks, other jobs on the same file system) waits for
the lock and then reads the finished file. A build killed half-way leaves a temporary file and no
cache: the next build removes it and says so. A truncated or damaged file is detected when it is
opened (size, CRC-32), named in a warning and rebuilt.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from typing import Any, Callable

from .file_lock import FileLock
from .packed import PackedSplit
from .packed_file import FORMAT_VERSION, CorruptCacheError, read_packed, write_packed

__all__ = ["cache_key", "SplitCache"]

log = logging.getLogger(__name__)


def cache_key(material: dict[str, Any]) -> str:
    """Stable short hash (16 hex digits) of a JSON-serialisable description."""
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class SplitCache:
    """Where the packed cache of one split lives, and how it is opened or built.

    Args:
        root: the cache folder.
        name: readable prefix of the file name (e.g. ``"SHD-train"``).
        material: everything that determines the content (hashed into the file name, stored in the header).
        lock_timeout_s: how long to wait for another process that builds the same cache.
    """

    def __init__(self, root: str, name: str, material: dict[str, Any], lock_timeout_s: float = 3600.0) -> None:
        self.material = dict(material, cache_format=FORMAT_VERSION)
        self.key = cache_key(self.material)
        self.path = os.path.join(root, f"{name}-{self.key}.packed")
        self.lock_timeout_s = lock_timeout_s

    @property
    def exists(self) -> bool:
        """Whether a finished cache file is in place (not checked for damage)."""
        return os.path.isfile(self.path)

    def _read(self) -> PackedSplit | None:
        try:
            return read_packed(self.path)
        except FileNotFoundError:
            return None
        except CorruptCacheError as e:
            log.warning("packed cache %s cannot be used and is rebuilt: %s", self.path, e)
            return None

    def open(self, build: Callable[[], PackedSplit]) -> PackedSplit:
        """The cached split, memory-mapped; built with ``build()`` and written first if needed."""
        split = self._read()
        if split is not None:
            return split
        with FileLock(self.path + ".lock", self.lock_timeout_s, purpose=f"building {os.path.basename(self.path)}"):
            split = self._read()  # another process may have finished it while this one waited
            if split is not None:
                return split
            for stale in glob.glob(os.path.join(glob.escape(os.path.dirname(self.path)),
                                                f".{glob.escape(os.path.basename(self.path))}.*.tmp")):
                log.warning("an earlier build of %s did not finish (left %s); building it again", self.path, stale)
                os.unlink(stale)
            if os.path.exists(self.path):
                os.unlink(self.path)  # damaged (reported by _read)
            write_packed(self.path, build(), self.material)
            return read_packed(self.path, verify=False)
