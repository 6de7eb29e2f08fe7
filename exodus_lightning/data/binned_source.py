"""A dataset's raw files read through an :class:`~exodus_lightning.data.binning.EventBinner`: binned
samples by index, and the whole split packed (in worker processes when asked)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch.utils.data import DataLoader, Dataset

from .binning import BinnedEvents, EventBinner
from .errors import CorruptFileError
from .packed import PackedSplit

__all__ = ["BinnedSource"]


class BinnedSource:
    """Binned samples of one split of a tonic dataset.

    Args:
        source: one of the readers of :mod:`exodus_lightning.data._tonic` (``read_events``,
            ``targets_array``, ``sample_file``, ``source_files``).
        binner: turns one sample's events into cells and counts.
        num_classes: labels must lie in ``0 .. num_classes - 1`` (``None``: not checked).
        block_size: samples read and binned together (SHD/SSC read a block as one range of the file).
    """

    def __init__(self, source: Any, binner: EventBinner, num_classes: int | None = None, block_size: int = 64) -> None:
        self.source = source
        self.binner = binner
        self.num_classes = num_classes
        self.block_size = block_size
        self._targets = np.asarray(source.targets_array(), dtype=np.int64)

    def __len__(self) -> int:
        return len(self._targets)

    def targets_array(self) -> np.ndarray:
        """The labels of all samples (from the files' metadata, without binning)."""
        return self._targets

    def sample_file(self, index: int) -> str:
        """The file that holds sample ``index``."""
        try:
            return str(self.source.sample_file(index))
        except Exception:  # pragma: no cover - defensive
            return f"<{type(self.source).__name__} sample {index}>"

    def _read(self, indices: list[int]) -> list[tuple]:
        try:
            return self.source.read_events(indices)
        except CorruptFileError:
            raise
        except Exception as e:
            if len(indices) > 1:  # find the sample that fails, to name its file
                return [ev for i in indices for ev in self._read([i])]
            raise CorruptFileError(
                f"cannot read sample {indices[0]} from {self.sample_file(indices[0])}: {type(e).__name__}: {e} "
                "(truncated or corrupt file? re-extract it from the original archive)"
            ) from e

    def binned(self, indices: Sequence[int]) -> tuple[list[BinnedEvents], np.ndarray]:
        """The binned samples ``indices`` and their labels.

        Raises:
            CorruptFileError: a file cannot be read, holds events outside the sensor, or a label out of
                range; the message names the file.
        """
        indices = [int(i) for i in indices]
        labels = self._targets[indices]
        if self.num_classes is not None:
            bad = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
            if len(bad):
                i = indices[bad[0]]
                raise CorruptFileError(f"sample {i} in {self.sample_file(i)} has label {labels[bad[0]]}, expected "
                                       f"0..{self.num_classes - 1}")
        out = []
        for i, (t, x, y, p) in zip(indices, self._read(indices)):
            try:
                out.append(self.binner.bin(t, x, y, p))
            except ValueError as e:
                raise CorruptFileError(f"sample {i} in {self.sample_file(i)}: {e}") from e
        return out, labels

    def pack(self, num_workers: int = 0) -> PackedSplit:
        """Every sample, binned and packed in sample order; ``num_workers`` processes read and bin blocks."""
        blocks = [list(range(a, min(a + self.block_size, len(self)))) for a in range(0, len(self), self.block_size)]
        binned: list[BinnedEvents] = []
        if num_workers > 0 and len(blocks) > 1:
            loader = DataLoader(_Blocks(self, blocks), batch_size=None, num_workers=min(num_workers, len(blocks)),
                                collate_fn=_as_is)
            for part in loader:
                binned += part
        else:
            for block in blocks:
                binned += self.binned(block)[0]
        return PackedSplit.from_binned(binned, self._targets, self.binner.feature_shape)


class _Blocks(Dataset):
    def __init__(self, source: BinnedSource, blocks: list[list[int]]) -> None:
        self.source, self.blocks = source, blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> list[BinnedEvents]:
        return self.source.binned(self.blocks[i])[0]


def _as_is(x: Any) -> Any:
    return x
