"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC) DataModules (tonic readers)."""

from __future__ import annotations

import os
from typing import Any

from .binning import EventBinner, default_time_window_ms
from .event_datamodule import CacheMode, EventDataModule, RequiredPath

__all__ = ["SHDDataModule", "SSCDataModule"]

_URL = "https://zenkelab.org/datasets/"


class _HSDDataModule(EventDataModule):
    n_sensor_channels = 700
    _prefix = ""

    def __init__(
        self,
        data_dir: str,
        time_window_ms: float | None,
        n_time_bins: int | None,
        n_channels: int,
        max_duration_ms: float | None,
        batch_size: int,
        num_workers: int,
        val_fraction: float,
        cache: CacheMode,
        cache_dir: str | None,
        download: bool,
        split_seed: int,
        pin_memory: bool | None,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, val_fraction, cache, cache_dir, download, split_seed, pin_memory)
        if not isinstance(n_channels, int) or not 1 <= n_channels <= self.n_sensor_channels:
            raise ValueError(f"n_channels must be an integer in 1..700, got {n_channels!r}")
        self.time_window_ms = default_time_window_ms(time_window_ms, n_time_bins, 10.0)
        self.n_time_bins = n_time_bins
        self.n_channels = n_channels
        self.max_duration_ms = max_duration_ms
        self._binner()  # validates the binning arguments now

    def _binner(self) -> EventBinner:
        return EventBinner.from_ms(
            (self.n_sensor_channels, 1, 1),
            (self.n_channels, 1),
            time_window_ms=self.time_window_ms,
            n_time_bins=self.n_time_bins,
            max_duration_ms=self.max_duration_ms,
            start_at_first_event=False,
        )

    def _required(self, split: str) -> list[RequiredPath]:
        name = f"{self._prefix}_{split}.h5"
        return [
            RequiredPath(
                os.path.join(self.folder, name),
                f"unzip {name}.zip from {_URL}{name}.zip (the .zip itself is not needed afterwards)",
            )
        ]


class SHDDataModule(_HSDDataModule):
    """Spiking Heidelberg Digits: 20 classes, 700 input channels (binned to ``(B, T, n_channels)``).

    Files: ``<data_dir>/SHD/shd_train.h5`` and ``shd_test.h5`` (from zenkelab.org, read by
    :class:`tonic.datasets.SHD`). Spike times are binned from the stimulus onset (t = 0).

    Args:
        data_dir: the folder holding ``SHD/`` (tonic's ``save_to``).
        time_window_ms: bin width in ms (variable-length samples, padded per batch). Default 10 ms
            when neither ``time_window_ms`` nor ``n_time_bins`` is given.
        n_time_bins: alternatively a fixed number of bins over ``[0, max_duration_ms)`` (or over each
            sample's own duration when ``max_duration_ms`` is None).
        n_channels: channels after downsampling 700 -> ``n_channels`` (channel ``c`` goes to
            ``floor(c * n_channels / 700)``, tonic's ``Downsample``); e.g. 100 as in EXODUS Table 2.
        max_duration_ms: spikes at or after this time (ms) are dropped; bounds ``n_time_steps``;
            None keeps all.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (they also bin the files when a cache is built).
        val_fraction: fraction of the training set held out (stratified, seeded) for validation;
            0 validates on the test set (the usual SHD protocol, which has no validation split).
        cache: ``"disk"`` (each split binned once into a packed file under ``cache_dir``, keyed by every
            binning parameter, memory-mapped), ``"device"`` (that file copied to the training device:
            batches are gathered there; ``num_workers=0``), ``"memory"`` (packed in this process, nothing
            written) or ``"none"`` (every batch read and binned from the files). See
            :class:`~exodus_lightning.data.event_datamodule.EventDataModule`.
        cache_dir: cache folder; default ``<data_dir>/exodus_cache``.
        download: use tonic's downloader when files are missing (needs internet).
        split_seed: seed of the train/val split.
        pin_memory: pin batches in memory (default: when CUDA is available).
    """

    folder = "SHD"
    num_classes = 20
    raw_splits = ("train", "test")
    _prefix = "shd"

    def __init__(
        self,
        data_dir: str,
        time_window_ms: float | None = None,
        n_time_bins: int | None = None,
        n_channels: int = 700,
        max_duration_ms: float | None = 1400.0,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        cache: CacheMode = "disk",
        cache_dir: str | None = None,
        download: bool = False,
        split_seed: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(
            data_dir, time_window_ms, n_time_bins, n_channels, max_duration_ms, batch_size, num_workers,
            val_fraction, cache, cache_dir, download, split_seed, pin_memory,
        )
        self.save_hyperparameters()

    def _make_source(self, split: str) -> Any:
        from ._tonic import SHD

        return SHD(self.data_dir, train=split == "train")


class SSCDataModule(_HSDDataModule):
    """Spiking Speech Commands: 35 classes, 700 channels, with its own validation split.

    Files: ``<data_dir>/SSC/ssc_train.h5``, ``ssc_valid.h5``, ``ssc_test.h5`` (read by
    :class:`tonic.datasets.SSC`). Arguments as in :class:`SHDDataModule`, except that the
    validation set is ``ssc_valid.h5`` unless ``val_fraction > 0``.
    """

    folder = "SSC"
    num_classes = 35
    raw_splits = ("train", "valid", "test")
    has_valid_split = True
    _prefix = "ssc"

    def __init__(
        self,
        data_dir: str,
        time_window_ms: float | None = None,
        n_time_bins: int | None = None,
        n_channels: int = 700,
        max_duration_ms: float | None = 1400.0,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        cache: CacheMode = "disk",
        cache_dir: str | None = None,
        download: bool = False,
        split_seed: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(
            data_dir, time_window_ms, n_time_bins, n_channels, max_duration_ms, batch_size, num_workers,
            val_fraction, cache, cache_dir, download, split_seed, pin_memory,
        )
        self.save_hyperparameters()

    def _make_source(self, split: str) -> Any:
        from ._tonic import SSC

        return SSC(self.data_dir, split=split)
