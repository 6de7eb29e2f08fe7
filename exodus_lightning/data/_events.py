"""Shared machinery of the event-dataset DataModules: binning, the cached frames dataset, errors,
file checks and the common LightningDataModule base class."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ._cache import SampleCache
from ..resume import ResumableDataLoader
from .collate import pad_collate

__all__ = [
    "DataNotFoundError",
    "CorruptFileError",
    "EventBinner",
    "FramesDataset",
    "EventDataModule",
    "RequiredPath",
]

CacheMode = Literal["none", "disk", "memory"]


class DataNotFoundError(FileNotFoundError):
    """Dataset files are missing or ``data_dir`` is wrong; the message says what goes where."""


class CorruptFileError(RuntimeError):
    """A dataset file exists but cannot be read (truncated, wrong format); the message names it."""


# ------------------------------------------------------------------------------------------------
# binning
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventBinner:
    """Turn one tonic event array (time in µs) into dense frames with tonic's transforms.

    Steps: optional ``tonic.transforms.Denoise`` -> ``CropTime`` to ``[t0, t0 + max_duration)`` ->
    ``Downsample`` to ``target_size`` -> ``ToFrame`` with explicit start and end times.

    ``t0`` is 0 (recording onset, e.g. SHD, N-MNIST) or the first event's time
    (``start_at_first_event``, for recordings cut from longer streams such as DVS Gesture).

    * ``dt_us`` mode: bin ``k`` holds events with ``t0 + k*dt <= t < t0 + (k+1)*dt``; the sample has
      ``T = floor((t_last - t0) / dt) + 1`` bins (variable length, padded in the batch), at most
      ``ceil(max_duration / dt)``.
    * ``n_time_bins`` mode: ``K`` equal bins over ``[t0, t0 + D)`` with ``D = max_duration`` if given,
      else ``t_last - t0 + 1`` (per sample); always ``T = K``.

    Output: ``int16`` array ``(T, C)`` for 1-D sensors (``sensor_size = (C, 1, 1)``), else
    ``(T, P, H, W)`` (tonic's frame layout). An empty recording gives one (or ``K``) zero frames.
    """

    sensor_size: tuple[int, int, int]
    target_size: tuple[int, int] | None = None
    dt_us: float | None = None
    n_time_bins: int | None = None
    max_duration_us: float | None = None
    start_at_first_event: bool = False
    denoise_us: float | None = None

    def __post_init__(self) -> None:
        if (self.dt_us is None) == (self.n_time_bins is None):
            raise ValueError("EventBinner: give exactly one of dt_us and n_time_bins")

    @property
    def out_sensor(self) -> tuple[int, int, int]:
        """Sensor size ``(W, H, P)`` after downsampling."""
        w, h, p = self.sensor_size
        if self.target_size is not None:
            w, h = self.target_size
        return (int(w), int(h), int(p))

    @property
    def one_d(self) -> bool:
        return self.sensor_size[1] == 1 and self.sensor_size[2] == 1

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Per-time-step feature shape: ``(C,)`` for 1-D sensors, else ``(P, H, W)``."""
        w, h, p = self.out_sensor
        return (w,) if self.one_d else (p, h, w)

    @property
    def max_steps(self) -> int | None:
        """Largest possible ``T`` (``None`` when unbounded)."""
        if self.n_time_bins is not None:
            return int(self.n_time_bins)
        if self.max_duration_us is None:
            return None
        return int(math.ceil(self.max_duration_us / self.dt_us))

    def params(self) -> dict[str, Any]:
        """All parameters (for cache keys)."""
        return asdict(self)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        from tonic import transforms as tt

        ev = events
        if len(ev) and not np.all(np.diff(ev["t"].astype(np.int64)) >= 0):
            ev = ev[np.argsort(ev["t"], kind="stable")]
        if len(ev) and self.denoise_us is not None:
            ev = tt.Denoise(filter_time=self.denoise_us)(ev)
        t0 = int(ev["t"].min()) if (self.start_at_first_event and len(ev)) else 0
        if len(ev):
            # integer µs timestamps: t <= t0 + ceil(D) - 1  <=>  t < t0 + D
            t_max = None if self.max_duration_us is None else t0 + int(math.ceil(self.max_duration_us)) - 1
            ev = tt.CropTime(min=t0, max=t_max if t_max is not None else int(ev["t"].max()))(ev)
        if self.target_size is not None and tuple(self.target_size) != tuple(self.sensor_size[:2]):
            w, h, _ = self.sensor_size
            tw, th = self.target_size
            factor = tw / w if self.one_d else (tw / w, th / h)
            ev = tt.Downsample(spatial_factor=factor)(ev)
        if self.n_time_bins is not None:
            n = int(self.n_time_bins)
            if len(ev) == 0:
                return np.zeros((n, *self.feature_shape), dtype=np.int16)
            span = self.max_duration_us if self.max_duration_us is not None else int(ev["t"].max()) - t0 + 1
            dt = float(span) / n
        else:
            dt = float(self.dt_us)
            if len(ev) == 0:
                return np.zeros((1, *self.feature_shape), dtype=np.int16)
            n = int((int(ev["t"].max()) - t0) // dt) + 1
        frames = tt.ToFrame(
            sensor_size=self.out_sensor,
            time_window=dt,
            start_time=t0,
            end_time=t0 + n * dt,
            include_incomplete=True,
        )(ev)
        frames = np.asarray(frames, dtype=np.int16)
        # float rounding of the window edges may add one empty trailing slice or miss one
        if frames.shape[0] > n:
            frames = frames[:n]
        elif frames.shape[0] < n:
            pad = np.zeros((n - frames.shape[0], *frames.shape[1:]), dtype=np.int16)
            frames = np.concatenate([frames, pad])
        return frames.reshape(n, *self.feature_shape)


# ------------------------------------------------------------------------------------------------
# dataset
# ------------------------------------------------------------------------------------------------
class FramesDataset(Dataset):
    """Map-style dataset: a tonic dataset (read without transform) -> :class:`EventBinner` -> cache.

    ``__getitem__`` returns ``(frames float32 tensor (T, *features), label int)``. On a cache hit the
    raw file is not touched and the binner is not called. Read errors are re-raised as
    :class:`CorruptFileError` naming the file.
    """

    def __init__(self, source: Any, binner: EventBinner, cache: SampleCache | None = None, num_classes: int | None = None):
        self.source = source
        self.binner = binner
        self.cache = cache
        self.num_classes = num_classes
        self._len = len(source)

    def __len__(self) -> int:
        return self._len

    def _sample_file(self, index: int) -> str:
        try:
            return str(self.source.sample_file(index))
        except Exception:  # pragma: no cover - defensive
            return f"<{type(self.source).__name__} sample {index}>"

    def load(self, index: int) -> tuple[np.ndarray, int]:
        """Return ``(int16 frames, label)`` from the cache or by reading and binning."""
        if self.cache is not None:
            hit = self.cache.get(index)
            if hit is not None:
                return hit
        try:
            events, label = self.source[index]
        except CorruptFileError:
            raise
        except Exception as e:
            raise CorruptFileError(
                f"cannot read sample {index} from {self._sample_file(index)}: {type(e).__name__}: {e} "
                "(truncated or corrupt file? re-extract it from the original archive)"
            ) from e
        label = int(label)
        if self.num_classes is not None and not 0 <= label < self.num_classes:
            raise CorruptFileError(
                f"sample {index} in {self._sample_file(index)} has label {label}, expected 0..{self.num_classes - 1}"
            )
        frames = self.binner(events)
        if self.cache is not None:
            self.cache.put(index, frames, label)
        return frames, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.load(int(index))
        return torch.from_numpy(np.asarray(frames, dtype=np.float32)), label


def files_fingerprint(paths: Sequence[str], root: str) -> str:
    """Hash of (relative path, size, mtime) of the source files: new or changed files -> new cache."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.relpath(p, root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def stratified_split(
    targets: Sequence[int], fractions: Sequence[float], seed: int
) -> list[list[int]]:
    """Deterministic, class-balanced split of indices into ``len(fractions) + 1`` parts.

    Part ``k`` gets ``round(n * fractions[k])`` indices, the last part the rest. The indices of each
    class are shuffled with ``seed`` and spread evenly over a global order (a sample at within-class
    rank ``r`` of ``n_c`` gets the key ``(r + u) / n_c``, ``u`` uniform), which is then cut into the
    parts, so every part holds the classes in proportion. Returned lists are sorted.
    """
    targets = np.asarray(targets)
    n = len(targets)
    rng = np.random.default_rng(seed)
    keys = np.empty(n, dtype=np.float64)
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        idx = idx[rng.permutation(len(idx))]
        keys[idx] = (np.arange(len(idx)) + rng.uniform(size=len(idx))) / len(idx)
    order = np.argsort(keys, kind="stable")
    parts: list[list[int]] = []
    start = 0
    for f in fractions:
        m = int(round(n * f))
        parts.append(sorted(order[start : start + m].tolist()))
        start += m
    parts.append(sorted(order[start:].tolist()))
    return parts


# ------------------------------------------------------------------------------------------------
# file checks
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequiredPath:
    """A file (or a folder that must contain files with suffix ``ext``) below ``data_dir``."""

    rel: str
    how: str
    ext: str | None = None  # set for folders

    def describe(self, data_dir: str) -> str:
        what = f"folder with *{self.ext} files" if self.ext else "file"
        return f"  {os.path.join(data_dir, self.rel)}  ({what})\n      <- {self.how}"


def _folder_has(path: str, ext: str) -> bool:
    for _, _, files in os.walk(path):
        if any(f.endswith(ext) for f in files):
            return True
    return False


# ------------------------------------------------------------------------------------------------
# DataModule base
# ------------------------------------------------------------------------------------------------
class EventDataModule(pl.LightningDataModule):
    """Base class of the tonic-backed DataModules (not used directly).

    Subclasses set ``folder`` (tonic's folder below ``data_dir``), ``num_classes``, ``raw_splits``,
    ``source_url`` and implement :meth:`_binner`, :meth:`_make_source` and :meth:`_required`.

    Batches follow the convention of :mod:`exodus_lightning.data.collate`.
    """

    folder: str = ""
    num_classes: int = 0
    raw_splits: tuple[str, ...] = ("train", "test")
    has_valid_split: bool = False

    def __init__(
        self,
        data_dir: str,
        batch_size: int,
        num_workers: int,
        val_fraction: float,
        cache: CacheMode,
        cache_dir: str | None,
        download: bool,
        split_seed: int,
        pin_memory: bool | None,
    ) -> None:
        super().__init__()
        if not isinstance(data_dir, (str, os.PathLike)) or str(data_dir) == "":
            raise ValueError(f"data_dir must be a non-empty path, got {data_dir!r}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        if cache not in ("none", "disk", "memory"):
            raise ValueError(f"cache must be one of 'none', 'disk', 'memory', got {cache!r}")
        self.data_dir = os.path.abspath(os.path.expanduser(str(data_dir)))
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = float(val_fraction)
        self.cache = cache
        self.cache_dir = (
            os.path.abspath(os.path.expanduser(cache_dir))
            if cache_dir
            else os.path.join(self.data_dir, "exodus_cache")
        )
        self.download = bool(download)
        self.split_seed = int(split_seed)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self._raw: dict[str, FramesDataset] = {}
        self._splits: dict[str, Dataset] = {}

    # -- to implement -------------------------------------------------------------------------
    def _binner(self) -> EventBinner:  # pragma: no cover - abstract
        raise NotImplementedError

    def _make_source(self, split: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _required(self, split: str) -> list[RequiredPath]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reader_params(self) -> dict[str, Any]:
        """Reader options that change the samples (part of the cache key)."""
        return {}

    # -- public attributes --------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        """Feature shape of one time step (without B and T)."""
        return self._binner().feature_shape

    @property
    def n_time_steps(self) -> int | None:
        """Maximum number of time steps of a sample (``None`` if unbounded)."""
        return self._binner().max_steps

    # -- checks -------------------------------------------------------------------------------
    def _instructions(self) -> str:
        lines = [f"Expected layout for {type(self).__name__} (data_dir is the folder that holds {self.folder}/, tonic's save_to):"]
        for s in self.raw_splits:
            lines += [r.describe(self.data_dir) for r in self._required(s)]
        lines.append(
            "Place the files there, or pass download=True to use tonic's downloader (needs internet; "
            "tonic's download links are often broken, so downloading by hand is the reliable way)."
        )
        return "\n".join(lines)

    def check_files(self, splits: Sequence[str] | None = None) -> None:
        """Raise :class:`DataNotFoundError` / :class:`CorruptFileError` unless the files are in place."""
        d = self.data_dir
        if not os.path.exists(d):
            raise DataNotFoundError(f"data_dir {d!r} does not exist.\n{self._instructions()}")
        if not os.path.isdir(d):
            raise DataNotFoundError(f"data_dir {d!r} is not a directory.\n{self._instructions()}")
        if not os.path.isdir(os.path.join(d, self.folder)):
            hint = ""
            inner = [r.rel.split(os.sep, 1)[-1] for s in self.raw_splits for r in self._required(s)]
            if os.path.basename(os.path.normpath(d)) == self.folder or any(
                os.path.exists(os.path.join(d, p)) for p in inner
            ):
                hint = (
                    f" It looks like data_dir points at the {self.folder} folder itself: data_dir must be its "
                    f"parent (data_dir={os.path.dirname(os.path.normpath(d))!r})."
                )
            raise DataNotFoundError(
                f"wrong data_dir {d!r}: it has no {self.folder}/ subfolder.{hint}\n{self._instructions()}"
            )
        missing = []
        for s in splits or self.raw_splits:
            for r in self._required(s):
                p = os.path.join(d, r.rel)
                if r.ext is None:
                    if not os.path.isfile(p):
                        missing.append(p)
                    elif os.path.getsize(p) == 0:
                        raise CorruptFileError(f"dataset file {p} is empty (truncated copy or failed download?)")
                elif not (os.path.isdir(p) and _folder_has(p, r.ext)):
                    missing.append(p + os.sep)
        if missing:
            raise DataNotFoundError(
                f"{type(self).__name__}: missing " + ", ".join(missing) + "\n" + self._instructions()
            )

    # -- datasets -----------------------------------------------------------------------------
    def _cache_for(self, split: str, source: Any) -> SampleCache | None:
        if self.cache == "none":
            return None
        files = list(source.source_files())
        material = {
            "dataset": self.folder,
            "split": split,
            "sources": files_fingerprint(files, self.data_dir),
            "n_samples": len(source),
            "binner": self._binner().params(),
            "reader": self._reader_params(),
        }
        root = self.cache_dir if self.cache == "disk" else None
        return SampleCache(root, f"{self.folder}-{split}", material, memory=self.cache == "memory")

    def _build(self, split: str) -> FramesDataset:
        source = self._make_source(split)
        return FramesDataset(source, self._binner(), self._cache_for(split, source), self.num_classes)

    def prepare_data(self) -> None:
        """Check (or with ``download=True`` download) the files; fill the disk cache once.

        Runs on one process per node; only touches the file system, sets no state.
        """
        if self.download:
            os.makedirs(self.data_dir, exist_ok=True)
            for s in self.raw_splits:
                self._make_source(s)  # tonic downloads and extracts when files are missing
        self.check_files()
        if self.cache != "disk":
            return
        for s in self.raw_splits:
            ds = self._build(s)
            assert ds.cache is not None
            if ds.cache.complete:
                continue
            ds.cache.ensure_dir()
            todo = [i for i in range(len(ds)) if not ds.cache.has(i)]
            if self.num_workers > 0 and len(todo) > 1:
                loader = DataLoader(
                    Subset(ds, todo), batch_size=None, num_workers=self.num_workers, collate_fn=_drop
                )
                for _ in loader:
                    pass
            else:
                for i in todo:
                    ds.load(i)
            ds.cache.mark_complete(len(ds))

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets and the (seeded, stratified) train/val split on every process."""
        if self._splits:
            return
        self.check_files()
        self._raw = {s: self._build(s) for s in self.raw_splits}
        train = self._raw["train"]
        if self.val_fraction > 0:
            val_idx, train_idx = stratified_split(
                train.source.targets_array(), [self.val_fraction], self.split_seed
            )
            self._splits["train"] = Subset(train, train_idx)
            self._splits["val"] = Subset(train, val_idx)
        else:
            self._splits["train"] = train
            self._splits["val"] = self._raw["valid"] if self.has_valid_split else self._raw["test"]
        self._splits["test"] = self._raw["test"]

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (``'train'``, ``'val'`` or ``'test'``); calls :meth:`setup` if needed."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        if not self._splits:
            self.setup()
        return self._splits[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        kwargs = dict(batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=pad_collate,
                      pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)
        if shuffle:
            # Training order is a function of (split_seed, epoch) and its position is checkpointed
            # (exact resume, exodus_lightning.resume).
            return ResumableDataLoader(self.dataset(split), shuffle=True, seed=self.split_seed, **kwargs)
        return DataLoader(self.dataset(split), shuffle=False, **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches ``(x, y, lengths)``."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches (the held-out ``val_fraction`` of train, else the dataset's valid
        split if it has one, else the test split)."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches."""
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Same as :meth:`test_dataloader`."""
        return self._loader("test", shuffle=False)


def _drop(sample: Any) -> None:
    return None
