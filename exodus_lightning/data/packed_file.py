"""The on-disk form of a :class:`~exodus_lightning.data.packed.PackedSplit`: one file, memory-mapped.

Layout: the 8 bytes ``EXODUSPK``, a little-endian uint64 header length, a JSON header (format
version, feature shape, every array's dtype, length and byte offset, the data size and its CRC-32,
and the description the cache key was made from), then the arrays, each aligned to 64 bytes.

A file is written under a temporary name in the same folder, flushed to disk and renamed, so a
crash or kill never leaves a half-written file under the final name; :func:`read_packed` checks the
magic, the format version, the size and the checksum before anything is used.

Example:
    >>> import os, tempfile, numpy as np
    >>> from exodus_lightning.data.binning import BinnedEvents
    >>> from exodus_lightning.data.packed import PackedSplit
    >>> split = PackedSplit.from_binned([BinnedEvents(np.array([3]), np.array([1]), 1)], [2], (4,))
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.packed")
    >>> write_packed(path, split, {"dataset": "demo"})
    >>> read_packed(path).gather([0]).cells.tolist()
    [3]
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import tempfile
import zlib
from typing import Any

import numpy as np
import torch

from .errors import CacheError
from .packed import ARRAYS, PackedSplit

__all__ = ["FORMAT_VERSION", "CorruptCacheError", "write_packed", "read_packed"]

FORMAT_VERSION = 1
_MAGIC = b"EXODUSPK"
_ALIGN = 64
_CHUNK = 64 << 20


class CorruptCacheError(ValueError):
    """A cache file is truncated, corrupted or of another format version (the message says which)."""


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _crc32(buffer: memoryview, crc: int = 0) -> int:
    for start in range(0, len(buffer), _CHUNK):
        crc = zlib.crc32(buffer[start:start + _CHUNK], crc)
    return crc


def write_packed(path: str, split: PackedSplit, material: dict[str, Any]) -> None:
    """Write ``split`` (on the CPU) to ``path`` atomically.

    Raises:
        CacheError: the folder lacks the space (checked before writing, and on ``ENOSPC``); the
            message names the folder and the bytes needed. Nothing is left behind.
    """
    arrays = {name: getattr(split, name).cpu().numpy() for name in ARRAYS}
    layout, offset = {}, 0
    for name, a in arrays.items():
        layout[name] = {"dtype": a.dtype.str, "length": int(a.shape[0]), "offset": offset}
        offset = _align(offset + a.nbytes)
    data_bytes = offset
    crc = 0
    for name, a in arrays.items():
        crc = _crc32(memoryview(np.ascontiguousarray(a)).cast("B"), crc)
        crc = zlib.crc32(bytes(_align(a.nbytes) - a.nbytes), crc)
    header = json.dumps({
        "format_version": FORMAT_VERSION, "feature_shape": list(split.feature_shape), "arrays": layout,
        "data_bytes": data_bytes, "crc32": crc, "material": material,
    }, sort_keys=True, default=str).encode()
    data_start = _align(len(_MAGIC) + 8 + len(header))
    total = data_start + data_bytes
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < total:
        raise CacheError(errno.ENOSPC, f"not enough space in {folder} for the packed cache {os.path.basename(path)}: "
                         f"{total:,} bytes needed, {free:,} free (pass cache_dir= a folder with room, or "
                         "cache='memory')")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(header)) + header)
            f.write(bytes(data_start - f.tell()))
            for a in arrays.values():
                f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
                f.write(bytes(_align(a.nbytes) - a.nbytes))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise CacheError(errno.ENOSPC, f"no space left in {folder} while writing the packed cache "
                             f"{os.path.basename(path)} ({total:,} bytes needed); nothing was kept") from e
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_header(path: str) -> tuple[dict[str, Any], int]:
    """The header of a cache file and where its data starts.

    Raises:
        CorruptCacheError: not a packed cache, another format version, or a damaged header.
    """
    with open(path, "rb") as f:
        head = f.read(len(_MAGIC) + 8)
        if len(head) < len(_MAGIC) + 8 or head[: len(_MAGIC)] != _MAGIC:
            raise CorruptCacheError(f"{path} is not a packed cache file (bad magic; truncated?)")
        (n,) = struct.unpack("<Q", head[len(_MAGIC):])
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except ValueError as e:
        raise CorruptCacheError(f"{path}: unreadable header ({e}; truncated?)") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise CorruptCacheError(f"{path} has cache format version {header.get('format_version')!r}, this "
                                f"version of exodus-lightning reads version {FORMAT_VERSION}")
    return header, _align(len(_MAGIC) + 8 + n)


def read_packed(path: str, verify: bool = True) -> PackedSplit:
    """Memory-map the cache file at ``path`` as a :class:`PackedSplit` (arrays on the CPU).

    With ``verify`` the file size and the CRC-32 of the data are checked (one sequential read).

    Raises:
        CorruptCacheError: wrong magic or format version, a size or checksum mismatch.
    """
    header, data_start = read_header(path)
    size = os.path.getsize(path)
    if size != data_start + header["data_bytes"]:
        raise CorruptCacheError(f"{path} has {size:,} bytes, its header says {data_start + header['data_bytes']:,} "
                                "(truncated or appended to)")
    # copy-on-write mapping: writable for torch.from_numpy, never written back
    data = np.memmap(path, dtype=np.uint8, mode="c", offset=data_start, shape=(header["data_bytes"],))
    if verify and _crc32(memoryview(data)) != header["crc32"]:
        raise CorruptCacheError(f"{path}: checksum mismatch (the file was damaged after it was written)")
    tensors = {}
    for name in ARRAYS:
        spec = header["arrays"][name]
        dtype = np.dtype(spec["dtype"])
        view = data[spec["offset"]: spec["offset"] + spec["length"] * dtype.itemsize].view(dtype)
        tensors[name] = torch.from_numpy(view)
    return PackedSplit(**tensors, feature_shape=header["feature_shape"], path=path)
