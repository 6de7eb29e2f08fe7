"""CIFAR10-DVS DataModule."""

from __future__ import annotations

import os
from typing import Any

from torch.utils.data import Subset

from .binning import EventBinner
from .event_datamodule import CacheMode, EventDataModule, RequiredPath, stratified_split

__all__ = ["CIFAR10DVSDataModule"]

_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class CIFAR10DVSDataModule(EventDataModule):
    """CIFAR10-DVS: 10 classes, 128x128x2 -> ``n_time_bins`` frames ``(B, T, 2, S, S)``.

    Defaults follow the OTTT supplementary: 10 frames, 48x48. Files:
    ``<data_dir>/CIFAR10DVS/<class>/*.aedat4`` (``CIFAR10DVS.zip`` holds one zip per class; unzip
    each into ``CIFAR10DVS/``), read by :class:`tonic.datasets.CIFAR10DVS`, which needs the ``aedat``
    package. The dataset has no official split: a seeded, class-balanced split holds out
    ``test_fraction`` (and ``val_fraction``) of it.

    Args:
        data_dir: the folder holding ``CIFAR10DVS/`` (tonic's ``save_to``).
        n_time_bins: number of frames, equal bins from the first event over ``max_duration_ms``
            (or over each recording when None).
        max_duration_ms: events after this time (from the first event) are dropped; None keeps all.
        spatial_size: output width = height (tonic ``Downsample`` from 128).
        test_fraction: held-out test fraction (per class).
        val_fraction: held-out validation fraction; 0 validates on the test part.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        cache: ``"disk"``, ``"device"``, ``"memory"`` or ``"none"`` (see :class:`~exodus_lightning.data.SHDDataModule`).
        cache_dir: cache folder; default ``<data_dir>/exodus_cache``.
        download: use tonic's downloader when files are missing.
        split_seed: seed of the splits.
        pin_memory: pin batches (default: when CUDA is available).
    """

    folder = "CIFAR10DVS"
    num_classes = 10
    raw_splits = ("all",)
    sensor_size = (128, 128, 2)

    def __init__(
        self,
        data_dir: str,
        n_time_bins: int = 10,
        max_duration_ms: float | None = None,
        spatial_size: int = 48,
        test_fraction: float = 0.1,
        val_fraction: float = 0.0,
        batch_size: int = 64,
        num_workers: int = 0,
        cache: CacheMode = "disk",
        cache_dir: str | None = None,
        download: bool = False,
        split_seed: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, val_fraction, cache, cache_dir, download, split_seed, pin_memory)
        if n_time_bins is None:
            raise ValueError("n_time_bins (number of frames) is required for CIFAR10-DVS, got None")
        if not isinstance(spatial_size, int) or not 1 <= spatial_size <= 128:
            raise ValueError(f"spatial_size must be an integer in 1..128, got {spatial_size!r}")
        if not 0.0 < float(test_fraction) < 1.0 or float(test_fraction) + self.val_fraction >= 1.0:
            raise ValueError(
                f"test_fraction must be in (0, 1) with test_fraction + val_fraction < 1, got {test_fraction!r}"
            )
        self.n_time_bins = n_time_bins
        self.max_duration_ms = max_duration_ms
        self.spatial_size = spatial_size
        self.test_fraction = float(test_fraction)
        self._binner()  # validates the binning arguments now
        self.save_hyperparameters()

    def _binner(self) -> EventBinner:
        return EventBinner.from_ms(
            self.sensor_size,
            (self.spatial_size, self.spatial_size),
            n_time_bins=self.n_time_bins,
            max_duration_ms=self.max_duration_ms,
            start_at_first_event=True,
        )

    def _required(self, split: str) -> list[RequiredPath]:
        return [
            RequiredPath(
                os.path.join(self.folder, c),
                f"unzip {c}.zip from CIFAR10DVS.zip (https://figshare.com/ndownloader/files/38023437) into "
                f"{os.path.join(self.data_dir, self.folder)}",
                ext=".aedat4",
            )
            for c in _CLASSES
        ]

    def _make_source(self, split: str) -> Any:
        from ._tonic import CIFAR10DVS

        return CIFAR10DVS(self.data_dir)

    def _split_raw(self) -> None:
        """The seeded, class-balanced test/val/train split of the one raw split."""
        ds = self._raw["all"]
        test_idx, val_idx, train_idx = stratified_split(
            ds.targets_array(), [self.test_fraction, self.val_fraction], self.split_seed
        )
        self._splits["train"] = Subset(ds, train_idx)
        self._splits["test"] = Subset(ds, test_idx)
        self._splits["val"] = Subset(ds, val_idx) if val_idx else self._splits["test"]
