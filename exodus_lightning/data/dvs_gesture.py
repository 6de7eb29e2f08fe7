"""IBM DVS Gesture DataModule (tonic's preprocessed ``.npy`` version)."""

from __future__ import annotations

import os
from typing import Any

from .binning import EventBinner
from .event_datamodule import CacheMode, EventDataModule, RequiredPath

__all__ = ["DVSGestureDataModule"]


class DVSGestureDataModule(EventDataModule):
    """DVS Gesture: 11 classes, 128x128x2 sensor -> frames ``(B, T, 2, S, S)``.

    Files: ``<data_dir>/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy`` and the same
    under ``ibmGestureTest/`` (extracted from tonic's ``ibmGestureTrain.tar.gz`` /
    ``ibmGestureTest.tar.gz``), read by :class:`tonic.datasets.DVSGesture`.

    Each sample starts at its first event; frames of ``time_window_ms`` cover the first
    ``max_duration_ms`` (5 ms and 1.5 s give up to 300 steps, as in the EXODUS paper); shorter
    recordings give fewer steps (padded per batch, see ``lengths``).

    Args:
        data_dir: the folder holding ``DVSGesture/`` (tonic's ``save_to``).
        time_window_ms: frame length in ms.
        max_duration_ms: events after this time (from the first event) are dropped; None keeps all.
        spatial_size: output width = height; 128 -> ``spatial_size`` with tonic's ``Downsample``
            (pixel ``x`` goes to ``floor(x * spatial_size / 128)``, events are summed).
        denoise_ms: if set, tonic's ``Denoise(filter_time)`` drops events without a neighbour
            event within this time (applied before downsampling).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        val_fraction: held-out fraction of train for validation; 0 validates on the test set.
        cache: ``"disk"``, ``"device"``, ``"memory"`` or ``"none"`` (see :class:`~exodus_lightning.data.SHDDataModule`).
        cache_dir: cache folder; default ``<data_dir>/exodus_cache``.
        download: use tonic's downloader when files are missing.
        split_seed: seed of the train/val split.
        pin_memory: pin batches (default: when CUDA is available).
    """

    folder = "DVSGesture"
    num_classes = 11
    raw_splits = ("train", "test")
    sensor_size = (128, 128, 2)

    def __init__(
        self,
        data_dir: str,
        time_window_ms: float = 5.0,
        max_duration_ms: float | None = 1500.0,
        spatial_size: int = 64,
        denoise_ms: float | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        cache: CacheMode = "disk",
        cache_dir: str | None = None,
        download: bool = False,
        split_seed: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, val_fraction, cache, cache_dir, download, split_seed, pin_memory)
        if not isinstance(spatial_size, int) or not 1 <= spatial_size <= 128:
            raise ValueError(f"spatial_size must be an integer in 1..128, got {spatial_size!r}")
        if time_window_ms is None:
            raise ValueError("time_window_ms (frame length in ms) is required for DVS Gesture, got None")
        self.time_window_ms = time_window_ms
        self.max_duration_ms = max_duration_ms
        self.spatial_size = spatial_size
        self.denoise_ms = denoise_ms
        self._binner()  # validates the binning arguments now
        self.save_hyperparameters()

    def _binner(self) -> EventBinner:
        return EventBinner.from_ms(
            self.sensor_size,
            (self.spatial_size, self.spatial_size),
            time_window_ms=self.time_window_ms,
            max_duration_ms=self.max_duration_ms,
            start_at_first_event=True,
            denoise_ms=self.denoise_ms,
        )

    def _required(self, split: str) -> list[RequiredPath]:
        name = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
        file_id = "38022171" if split == "train" else "38020584"
        return [
            RequiredPath(
                os.path.join(self.folder, name),
                f"extract {name}.tar.gz (tonic's preprocessed DVS Gesture, https://figshare.com/ndownloader/files/{file_id}; "
                f"if figshare blocks scripts use a browser or https://api.figshare.com/v2/file/download/{file_id}) "
                f"with `tar xzf {name}.tar.gz -C {os.path.join(self.data_dir, self.folder)}`; it holds "
                "user<NN>_<lighting>/<label>.npy",
                ext=".npy",
            )
        ]

    def _make_source(self, split: str) -> Any:
        from ._tonic import DVSGesture

        return DVSGesture(self.data_dir, train=split == "train")
