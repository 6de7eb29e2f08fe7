"""The compact batch: a batch of binned event recordings as the non-empty cells of its frames.

A :class:`CompactBatch` is what the event DataModules' loaders hand to a Trainer: a few bytes per
non-empty (time bin, feature) cell instead of ``4 * T * prod(features)`` bytes per sample, so it crosses
to the training device cheaply (pinned, ``non_blocking``). There
:meth:`~exodus_lightning.data.event_datamodule.EventDataModule.on_after_batch_transfer` turns it into
the dense batch ``(x, y, lengths)`` of :mod:`exodus_lightning.data.collate` with one scatter.

Example:
    >>> import torch
    >>> b = CompactBatch(cells=torch.tensor([1, 7, 2]), counts=torch.tensor([2, 1, 3], dtype=torch.uint8),
    ...                  entries=torch.tensor([2, 1]), y=torch.tensor([4, 0]), lengths=torch.tensor([2, 1]),
    ...                  n_steps=2, feature_shape=(4,))
    >>> x, y, lengths = b.densify()
    >>> x[0].tolist(), x[1].tolist()
    ([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], [[0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from .collate import Batch
from .host_buffers import host_buffers

__all__ = ["CompactBatch"]


class CompactBatch(NamedTuple):
    """A batch of binned recordings in sparse form.

    Attributes:
        cells: ``(E,)`` integer cell index inside its sample, ``time_bin * prod(feature_shape) + feature``;
            the cells of sample 0 come first, then those of sample 1, ...
        counts: ``(E,)`` events in each cell (``uint8`` or ``int16``).
        entries: ``(B,)`` int64 number of cells of each sample.
        y: ``(B,)`` int64 labels.
        lengths: ``(B,)`` int64 time steps of each sample.
        n_steps: ``T`` of the dense batch (``max(lengths)``, kept as a Python int so densifying on a GPU
            needs no host synchronisation).
        feature_shape: per-time-step feature shape, e.g. ``(700,)`` or ``(2, 32, 32)``.
    """

    cells: torch.Tensor
    counts: torch.Tensor
    entries: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor
    n_steps: int
    feature_shape: tuple[int, ...]

    def densify(self, dtype: torch.dtype = torch.float32) -> Batch:
        """The dense batch ``(x (B, T, *feature_shape), y, lengths)`` on the device the batch is on.

        ``x[b].view(-1)[cells of b] = counts of b``, zeros elsewhere (padding included); each cell
        occurs once per sample, so the scatter has no collisions and is deterministic.
        """
        shape = (self.y.shape[0], self.n_steps, *self.feature_shape)
        x = self._dense_host(shape, dtype) if self.cells.device.type == "cpu" else self._dense_device(shape, dtype)
        return Batch(x, self.y, self.lengths)

    def _dense_device(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        x = torch.zeros(shape, dtype=dtype, device=self.cells.device)
        if self.cells.numel():
            rows = torch.arange(shape[0], device=x.device) * math.prod(shape[1:])
            flat = torch.repeat_interleave(rows, self.entries, output_size=self.cells.numel()).add_(self.cells)
            x.view(-1).index_copy_(0, flat, self.counts.to(dtype))
        return x

    def _dense_host(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        # Sample by sample, so each sample's frames are zeroed and filled while they are in the cache
        # (one pass over the batch's memory instead of a zeroing pass and a scattered one), with numpy
        # on one thread: an OpenMP-parallel fill stalls at its barrier whenever another process holds
        # one of the cores. The output comes from reused memory (host_buffers).
        direct = dtype in (torch.float16, torch.float32, torch.float64)
        x = host_buffers.empty(shape, dtype if direct else torch.float32)
        rows = x.numpy().reshape(shape[0], -1)
        # Indices as intp and values in the output dtype, converted once for the batch: numpy would
        # otherwise convert each sample's slice inside the assignment (~25 % of the fill's time).
        cells = self.cells.numpy().astype(np.intp, copy=False)
        counts = self.counts.numpy().astype(rows.dtype)
        bounds = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(self.entries.numpy(), out=bounds[1:])
        for row, start, stop in zip(rows, bounds[:-1].tolist(), bounds[1:].tolist()):
            row.fill(0)
            row[cells[start:stop]] = counts[start:stop]
        return x if direct else x.to(dtype)
