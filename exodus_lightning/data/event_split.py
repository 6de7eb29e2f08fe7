"""One split of an event dataset as the DataModules serve it: from its packed cache, or binned from the
raw files batch by batch (``cache="none"``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .binned_source import BinnedSource
from .compact import CompactBatch
from .packed import PackedSplit

__all__ = ["EventSplit"]


class EventSplit(Dataset):
    """Map-style dataset of binned recordings.

    ``split[i]`` is ``(frames float32 (T, *features), label)``; a DataLoader with a batch size calls
    ``split.__getitems__(indices)``, which builds the whole batch at once as a
    :class:`~exodus_lightning.data.compact.CompactBatch` (a gather from the packed arrays, or the batch's
    samples read and binned together when there is no cache).

    Args:
        source: the raw files through the binner (labels, file names; the samples when ``packed`` is None).
        packed: the split's packed cache (memory-mapped, in memory or on a device), or None.
    """

    def __init__(self, source: BinnedSource, packed: PackedSplit | None = None) -> None:
        if packed is not None and len(packed) != len(source):
            raise ValueError(f"the packed cache holds {len(packed)} samples, the files {len(source)}")
        self.source = source
        self.packed = packed

    def __len__(self) -> int:
        return len(self.source)

    def targets_array(self) -> np.ndarray:
        """The labels of all samples."""
        return self.source.targets_array()

    def __getitems__(self, indices: Sequence[int]) -> CompactBatch:
        if self.packed is not None:
            return self.packed.gather(indices)
        return self.source.packed(indices).gather(range(len(indices)))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of a split of {len(self)}")
        x, y, _ = self.__getitems__([index]).densify()
        return x[0], int(y[0])
