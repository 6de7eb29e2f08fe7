"""DataModule hooks that make compact batches dense on the training device."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .collate import Batch
from .compact import CompactBatch

__all__ = ["DenseOnDevice"]


def _compact(batch: CompactBatch) -> CompactBatch:
    return batch


def _dense(batch: CompactBatch) -> Batch:
    return batch.densify()


class DenseOnDevice:
    """Mixin for a ``LightningDataModule`` whose datasets build whole batches as
    :class:`~exodus_lightning.data.compact.CompactBatch` (``__getitems__``).

    Under a Trainer its loaders pass the compact batch on (:meth:`batch_collate`); it crosses to the
    device as it is and :meth:`on_after_batch_transfer` makes it dense there, in the LightningModule's
    floating dtype. A loader used on its own (no Trainer attached) yields dense batches.
    """

    trainer: Any

    def batch_collate(self) -> Callable[[CompactBatch], Any]:
        """The ``collate_fn`` for this DataModule's loaders."""
        return _compact if self.trainer is not None else _dense

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A :class:`CompactBatch` that reached the device becomes ``(x, y, lengths)`` there."""
        if not isinstance(batch, CompactBatch):
            return batch
        dtype = torch.float32
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is not None and module.dtype.is_floating_point:
            dtype = module.dtype
        return batch.densify(dtype)
