"""A packed split: every binned recording of one dataset split in a few flat arrays.

The cells and counts of all samples are concatenated (sample ``i`` owns entries
``offsets[i]:offsets[i + 1]``) in the smallest integer types that hold them, beside one length and
one label per sample. The arrays are torch tensors: in memory, memory-mapped from a cache file
(:mod:`exodus_lightning.data.packed_file`) or resident on the training device, and a batch is a
gather of whole samples into a :class:`~exodus_lightning.data.compact.CompactBatch`.

Example:
    >>> import numpy as np
    >>> from exodus_lightning.data.binning import BinnedEvents
    >>> split = PackedSplit.from_binned(
    ...     [BinnedEvents(np.array([1, 7]), np.array([2, 1]), 2), BinnedEvents(np.array([2]), np.array([3]), 1)],
    ...     labels=[4, 0], feature_shape=(4,))
    >>> batch = split.gather([1, 0])
    >>> batch.cells.tolist(), batch.entries.tolist(), batch.lengths.tolist(), batch.n_steps
    ([2, 1, 7], [1, 2], [1, 2], 2)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .binning import BinnedEvents
from .compact import CompactBatch

__all__ = ["PackedSplit", "smallest_int_dtype"]

ARRAYS = ("cells", "counts", "offsets", "n_steps", "labels")


def smallest_int_dtype(max_value: int, candidates: Sequence[np.dtype]) -> np.dtype:
    """The first of ``candidates`` that holds every value in ``[0, max_value]``."""
    for dt in candidates:
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"no integer type among {candidates} holds {max_value}")


class PackedSplit:
    """The binned recordings of one split (see the module docstring).

    Args:
        cells: ``(E,)`` int32/int64, per sample sorted ``time_bin * prod(feature_shape) + feature``.
        counts: ``(E,)`` uint8/int16/int32 events per cell.
        offsets: ``(N + 1,)`` int64, sample ``i`` owns ``cells[offsets[i]:offsets[i + 1]]``.
        n_steps: ``(N,)`` int32 time steps per sample.
        labels: ``(N,)`` int64 class labels.
        feature_shape: per-time-step feature shape.
        path: the cache file the arrays are memory-mapped from, if any.
    """

    def __init__(self, cells: torch.Tensor, counts: torch.Tensor, offsets: torch.Tensor, n_steps: torch.Tensor,
                 labels: torch.Tensor, feature_shape: Sequence[int], path: str | None = None) -> None:
        n = labels.shape[0]
        if offsets.shape != (n + 1,) or n_steps.shape != (n,):
            raise ValueError(f"packed split: offsets {tuple(offsets.shape)} and n_steps {tuple(n_steps.shape)} "
                             f"do not fit {n} labels (expected ({n + 1},) and ({n},))")
        if cells.shape != counts.shape or cells.shape[0] != int(offsets[-1]):
            raise ValueError(f"packed split: {cells.shape[0]} cells and {counts.shape[0]} counts, offsets end at "
                             f"{int(offsets[-1])}")
        self.cells, self.counts, self.offsets, self.n_steps, self.labels = cells, counts, offsets, n_steps, labels
        self.feature_shape = tuple(int(s) for s in feature_shape)
        self.path = path
        # Batches are cut on the host: sample positions and lengths stay in host memory even when the
        # arrays live on a GPU, so a gather needs no device synchronisation.
        self._offsets_host = offsets.cpu().numpy()
        self._n_steps_host = n_steps.cpu().numpy()

    @classmethod
    def from_binned(cls, binned: Sequence[BinnedEvents], labels: Sequence[int], feature_shape: Sequence[int]) -> "PackedSplit":
        """Pack binned recordings (one per sample, in sample order) and their labels."""
        if len(binned) != len(labels):
            raise ValueError(f"{len(binned)} binned recordings but {len(labels)} labels")
        lens = np.fromiter((len(b.cells) for b in binned), dtype=np.int64, count=len(binned))
        offsets = np.zeros(len(binned) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        n_steps = np.fromiter((b.n_steps for b in binned), dtype=np.int64, count=len(binned))
        max_cell = int(n_steps.max(initial=0)) * math.prod(feature_shape)
        max_count = max((int(b.counts.max()) for b in binned if len(b.counts)), default=0)
        cell_type = smallest_int_dtype(max_cell, (np.int32, np.int64))
        count_type = smallest_int_dtype(max_count, (np.uint8, np.int16, np.int32))
        cells = np.concatenate([b.cells for b in binned] or [np.zeros(0)], dtype=cell_type, casting="unsafe")
        counts = np.concatenate([b.counts for b in binned] or [np.zeros(0)], dtype=count_type, casting="unsafe")
        return cls(torch.from_numpy(cells), torch.from_numpy(counts), torch.from_numpy(offsets),
                   torch.from_numpy(n_steps.astype(np.int32)), torch.as_tensor(np.asarray(labels, dtype=np.int64)),
                   feature_shape)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __reduce__(self):
        # A memory-mapped split travels to worker processes as its file name: each maps the file
        # itself (sharing the page cache) instead of copying the arrays into shared memory.
        if self.path is not None and self.device.type == "cpu":
            from .packed_file import read_packed

            return read_packed, (self.path, False)
        return PackedSplit, (*(getattr(self, a) for a in ARRAYS), self.feature_shape)

    @property
    def device(self) -> torch.device:
        """Where the arrays live."""
        return self.cells.device

    @property
    def nbytes(self) -> int:
        """Bytes of the five arrays."""
        return sum(getattr(self, a).numel() * getattr(self, a).element_size() for a in ARRAYS)

    def to(self, device: torch.device | str) -> "PackedSplit":
        """The same split with its arrays on ``device`` (``cache="device"``)."""
        return PackedSplit(*(getattr(self, a).to(device) for a in ARRAYS), self.feature_shape)

    def gather(self, indices: Sequence[int]) -> CompactBatch:
        """The samples ``indices`` (in that order) as a :class:`CompactBatch` on :attr:`device`.

        Each sample is one contiguous run of entries, so the batch is the concatenation of whole runs:
        a memory copy per sample, about ten times faster than an element-wise gather of the same bytes.
        On the CPU numpy copies them, on one thread: an OpenMP-parallel copy stalls at its barrier
        whenever another process holds one of the cores.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1 or len(idx) == 0:
            raise ValueError(f"indices must be a non-empty sequence of sample numbers, got {indices!r}")
        starts, stops = self._offsets_host[idx], self._offsets_host[idx + 1]
        runs = [slice(a, b) for a, b in zip(starts.tolist(), stops.tolist())]
        lengths = self._n_steps_host[idx].astype(np.int64)
        if self.device.type == "cpu":
            cells, counts = self.cells.numpy(), self.counts.numpy()
            return CompactBatch(
                cells=torch.from_numpy(np.concatenate([cells[r] for r in runs])),
                counts=torch.from_numpy(np.concatenate([counts[r] for r in runs])),
                entries=torch.from_numpy(stops - starts),
                y=torch.from_numpy(self.labels.numpy()[idx]),
                lengths=torch.from_numpy(lengths),
                n_steps=int(lengths.max()),
                feature_shape=self.feature_shape,
            )
        on_device = {"device": self.device, "non_blocking": True}
        return CompactBatch(
            cells=torch.cat([self.cells[r] for r in runs]),
            counts=torch.cat([self.counts[r] for r in runs]),
            entries=torch.from_numpy(stops - starts).to(**on_device),
            y=self.labels.index_select(0, torch.from_numpy(idx).to(**on_device)),
            lengths=torch.from_numpy(lengths).to(**on_device),
            n_steps=int(lengths.max()),
            feature_shape=self.feature_shape,
        )
