"""Data for exodus_lightning: LightningDataModules over tonic's neuromorphic datasets plus
embedded synthetic tasks that need no download.

Batch convention (all DataModules): ``(x, y, lengths)`` with ``x`` float32 ``(B, T, *features)``,
``y`` int64 ``(B,)`` and ``lengths`` int64 ``(B,)``, see :mod:`exodus_lightning.data.collate`. The event
datasets are binned once into packed caches and travel to the training device as a
:class:`~exodus_lightning.data.compact.CompactBatch`, made dense there (see
:class:`~exodus_lightning.data.event_datamodule.EventDataModule`).
Each DataModule exposes ``num_classes``, ``input_shape`` (features of one time step) and
``n_time_steps`` (maximum T) so a LightningModule can be built from it.
"""

from __future__ import annotations

import importlib

from .collate import Batch, pad_collate

_LAZY = {
    "SHDDataModule": "shd",
    "SSCDataModule": "shd",
    "DVSGestureDataModule": "dvs_gesture",
    "NMNISTDataModule": "nmnist",
    "CIFAR10DVSDataModule": "cifar10_dvs",
    "SpikePatternsDataModule": "spike_patterns",
    "SpikePatternsDataset": "spike_patterns",
    "PoissonSpikeFitDataModule": "poisson_fit",
    "EventBinner": "binning",
    "BinnedEvents": "binning",
    "CompactBatch": "compact",
    "PackedSplit": "packed",
    "EventSplit": "event_split",
    "EventDataModule": "event_datamodule",
    "DataNotFoundError": "errors",
    "CorruptFileError": "errors",
    "CacheError": "errors",
}

__all__ = ["Batch", "pad_collate", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        mod = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
