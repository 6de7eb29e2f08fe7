"""Reused host memory for dense batches.

glibc hands blocks above its mmap threshold (at most 32 MB) back to the operating system when they
are freed, so a fresh dense batch of that size (SHD with 700 channels: 128 x 140 x 700 float32 = 50 MB)
is page-faulted in again every time: ~16 ms of a batch that takes ~3 ms to fill. The pool keeps a
few such buffers and hands one out again only once no tensor refers to its memory any more (its
storage's reference count is back to the pool's own), so a batch that is still in use (kept by a
callback, saved for backward, viewed by numpy) is never overwritten.

Example:
    >>> pool = HostBuffers()
    >>> a = pool.empty((2, 3), torch.float32)
    >>> b = pool.empty((2, 3), torch.float32)
    >>> b.data_ptr() != a.data_ptr()       # ``a`` is alive: its memory is not handed out
    True
    >>> ptr = a.data_ptr()
    >>> del a
    >>> pool.empty((3, 2), torch.float32).data_ptr() == ptr
    True
"""

from __future__ import annotations

import math
import threading
from typing import Sequence

import torch
from torch.utils.data import get_worker_info

__all__ = ["HostBuffers", "host_buffers"]

_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _references(t: torch.Tensor) -> int:
    return int(_use_count(t.untyped_storage()._cdata))


class HostBuffers:
    """CPU tensors (uninitialised) carved from at most ``keep`` reused buffers per dtype.

    Outside the pool's reach (no storage reference count in this torch, or in a DataLoader worker,
    whose tensors travel to the main process through shared memory) it allocates fresh tensors.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._buffers: dict[torch.dtype, list[tuple[torch.Tensor, int]]] = {}
        self._lock = threading.Lock()

    def empty(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised CPU tensor of ``shape`` and ``dtype``."""
        n = math.prod(shape)
        if _use_count is None or get_worker_info() is not None:
            return torch.empty(tuple(shape), dtype=dtype)
        with self._lock:
            buffers = self._buffers.setdefault(dtype, [])
            # a buffer moved to shared memory (sent to another process) is never reused
            buffers[:] = [(b, own) for b, own in buffers if not b.is_shared()]
            free = [(b, own) for b, own in buffers if _references(b) == own]
            fits = [b for b, _ in free if b.numel() >= n]
            if fits:
                out = min(fits, key=torch.Tensor.numel)[:n]
            else:
                if len(buffers) >= self.keep:
                    if not free:
                        return torch.empty(tuple(shape), dtype=dtype)
                    smallest = min((b for b, _ in free), key=torch.Tensor.numel)
                    buffers[:] = [(b, own) for b, own in buffers if b is not smallest]
                fresh = torch.empty(n, dtype=dtype)
                buffers.append((fresh, _references(fresh)))
                out = fresh[:n]
            return out.view(tuple(shape))


host_buffers = HostBuffers()
