"""N-MNIST DataModule."""

from __future__ import annotations

import os
from typing import Any

from .binning import EventBinner, default_time_window_ms
from .event_datamodule import CacheMode, EventDataModule, RequiredPath

__all__ = ["NMNISTDataModule"]

_BASE = "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"


class NMNISTDataModule(EventDataModule):
    """N-MNIST: 10 classes, 34x34x2 sensor -> frames ``(B, T, 2, 34, 34)``.

    Files: ``<data_dir>/NMNIST/Train/<digit>/<id>.bin`` and ``<data_dir>/NMNIST/Test/<digit>/<id>.bin``
    (from ``train.zip`` / ``test.zip`` on Mendeley Data), read by :class:`tonic.datasets.NMNIST`.
    Time is binned from the recording start (t = 0).

    Args:
        data_dir: the folder holding ``NMNIST/`` (tonic's ``save_to``).
        time_window_ms: frame length in ms (default 1 ms when neither this nor ``n_time_bins`` is given).
        n_time_bins: alternatively a fixed number of frames over ``[0, max_duration_ms)`` (or
            over each recording when ``max_duration_ms`` is None).
        max_duration_ms: events at or after this time are dropped; None keeps all.
        first_saccade_only: keep only the first of the three saccades (t < 100 ms; tonic option).
        denoise_ms: if set, tonic's ``Denoise`` with this filter time.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        val_fraction: held-out fraction of train for validation; 0 validates on the test set.
        cache: ``"disk"``, ``"device"``, ``"memory"`` or ``"none"`` (see :class:`~exodus_lightning.data.SHDDataModule`).
        cache_dir: cache folder; default ``<data_dir>/exodus_cache``.
        download: use tonic's downloader when files are missing.
        split_seed: seed of the train/val split.
        pin_memory: pin batches (default: when CUDA is available).
    """

    folder = "NMNIST"
    num_classes = 10
    raw_splits = ("train", "test")
    sensor_size = (34, 34, 2)

    def __init__(
        self,
        data_dir: str,
        time_window_ms: float | None = None,
        n_time_bins: int | None = None,
        max_duration_ms: float | None = None,
        first_saccade_only: bool = False,
        denoise_ms: float | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        cache: CacheMode = "disk",
        cache_dir: str | None = None,
        download: bool = False,
        split_seed: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, val_fraction, cache, cache_dir, download, split_seed, pin_memory)
        self.time_window_ms = default_time_window_ms(time_window_ms, n_time_bins, 1.0)
        self.n_time_bins = n_time_bins
        self.max_duration_ms = max_duration_ms
        self.first_saccade_only = bool(first_saccade_only)
        self.denoise_ms = denoise_ms
        self._binner()  # validates the binning arguments now
        self.save_hyperparameters()

    def _binner(self) -> EventBinner:
        return EventBinner.from_ms(
            self.sensor_size,
            time_window_ms=self.time_window_ms,
            n_time_bins=self.n_time_bins,
            max_duration_ms=self.max_duration_ms,
            start_at_first_event=False,
            denoise_ms=self.denoise_ms,
        )

    def _reader_params(self) -> dict[str, Any]:
        return {"first_saccade_only": self.first_saccade_only}

    def _required(self, split: str) -> list[RequiredPath]:
        name, arch, fid = (
            ("Train", "train.zip", "39c25547-014b-4137-a934-9d29fa53c7a0")
            if split == "train"
            else ("Test", "test.zip", "05a4d654-7e03-4c15-bdfa-9bb2bcbea494")
        )
        return [
            RequiredPath(
                os.path.join(self.folder, name),
                f"unzip {arch} (N-MNIST, {_BASE}{fid}/file_downloaded) into "
                f"{os.path.join(self.data_dir, self.folder)}; it holds {name}/<digit>/<id>.bin",
                ext=".bin",
            )
        ]

    def _make_source(self, split: str) -> Any:
        from ._tonic import NMNIST

        return NMNIST(self.data_dir, train=split == "train", first_saccade_only=self.first_saccade_only)
