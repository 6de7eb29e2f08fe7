"""The base of the event-dataset DataModules: file checks, the packed split caches, the train/val
split and batch loading (compact batches densified on the training device)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..resume import ResumableDataLoader
from .binned_source import BinnedSource
from .binning import EventBinner
from .dense_on_device import DenseOnDevice
from .errors import CorruptFileError, DataNotFoundError
from .event_split import EventSplit
from .packed import PackedSplit
from .split_cache import SplitCache

__all__ = ["EventDataModule", "RequiredPath", "stratified_split", "files_fingerprint"]

CacheMode = Literal["none", "disk", "memory", "device"]
CACHE_MODES = ("none", "disk", "memory", "device")


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
class EventDataModule(DenseOnDevice, pl.LightningDataModule):
    """Base class of the tonic-backed DataModules (not used directly).

    Subclasses set ``folder`` (tonic's folder below ``data_dir``), ``num_classes``, ``raw_splits``
    and implement :meth:`_binner`, :meth:`_make_source` and :meth:`_required`.

    Samples are binned once into a packed cache per split (:mod:`~exodus_lightning.data.split_cache`,
    built in :meth:`prepare_data` or by the first process that needs it) and served a whole batch at
    a time: under a Trainer as :class:`~exodus_lightning.data.compact.CompactBatch`, made dense on the
    training device (:class:`~exodus_lightning.data.dense_on_device.DenseOnDevice`); a loader used on
    its own yields the dense ``(x, y, lengths)`` of :mod:`exodus_lightning.data.collate`.

    ``cache`` modes: ``"disk"`` (the packed file under ``cache_dir``, memory-mapped and shared by all
    processes of a node through the page cache), ``"device"`` (the same file copied to the training
    device once: a batch is a gather there, for ``num_workers=0``), ``"memory"`` (packed in this
    process's memory, nothing written) and ``"none"`` (every batch read and binned from the raw files).
    """

    folder: str = ""
    num_classes: int = 0
    raw_splits: tuple[str, ...] = ("train", "test")
    has_valid_split: bool = False
    #: samples read and binned together when a cache is built
    block_size: int = 64
    #: seconds to wait for another process that builds the same cache
    cache_lock_timeout_s: float = 3600.0

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
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(map(repr, CACHE_MODES))}, got {cache!r}")
        if cache == "device" and num_workers > 0:
            raise ValueError(f"cache='device' keeps the split on the training device, where DataLoader workers cannot "
                             f"reach it: use num_workers=0 (got {num_workers}), or cache='disk' with workers")
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
        self.pin_memory = (torch.cuda.is_available() if pin_memory is None else bool(pin_memory)) and cache != "device"
        self._raw: dict[str, EventSplit] = {}
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
            "Place the files there, or let tonic download them: add --data.init_args.download true to the "
            "exodus-lightning command (download=True in Python; needs internet; tonic's download links are "
            "often broken, so downloading by hand is the reliable way)."
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
    def _source(self, split: str) -> BinnedSource:
        return BinnedSource(self._make_source(split), self._binner(), self.num_classes, self.block_size)

    def split_cache(self, split: str, source: BinnedSource | None = None) -> SplitCache:
        """The packed cache of raw split ``split`` (its file exists once it has been built)."""
        source = source or self._source(split)
        material = {
            "dataset": self.folder,
            "split": split,
            "sources": files_fingerprint(list(source.source.source_files()), self.data_dir),
            "n_samples": len(source),
            "binner": source.binner.params(),
            "reader": self._reader_params(),
        }
        return SplitCache(self.cache_dir, f"{self.folder}-{split}", material, self.cache_lock_timeout_s)

    def _packed(self, split: str, source: BinnedSource) -> PackedSplit | None:
        if self.cache == "none":
            return None
        if self.cache == "memory":
            return source.pack(self.num_workers)
        packed = self.split_cache(split, source).open(lambda: source.pack(self.num_workers))
        return packed.to(self._device()) if self.cache == "device" else packed

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def prepare_data(self) -> None:
        """Check (or with ``download=True`` download) the files; build the packed caches once.

        Lightning runs this on one process per node; a cache that another process is building is
        waited for (see :mod:`~exodus_lightning.data.split_cache`).
        """
        if self.download:
            os.makedirs(self.data_dir, exist_ok=True)
            for s in self.raw_splits:
                self._make_source(s)  # tonic downloads and extracts when files are missing
        self.check_files()
        if self.cache not in ("disk", "device"):
            return
        for s in self.raw_splits:
            source = self._source(s)
            cache = self.split_cache(s, source)
            if not cache.exists:
                cache.open(lambda: source.pack(self.num_workers))

    def setup(self, stage: str | None = None) -> None:
        """Open (or build) the packed splits and make the seeded, stratified train/val split."""
        if self._splits:
            return
        self.check_files()
        for s in self.raw_splits:
            source = self._source(s)
            self._raw[s] = EventSplit(source, self._packed(s, source))
        self._split_raw()

    def _split_raw(self) -> None:
        train = self._raw["train"]
        if self.val_fraction > 0:
            val_idx, train_idx = stratified_split(train.targets_array(), [self.val_fraction], self.split_seed)
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

    # -- loading ------------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        kwargs = dict(batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self.batch_collate(),
                      pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)
        if shuffle:
            # Training order is a function of (split_seed, epoch) and its position is checkpointed
            # (exact resume, exodus_lightning.resume).
            return ResumableDataLoader(self.dataset(split), shuffle=True, seed=self.split_seed, **kwargs)
        return DataLoader(self.dataset(split), shuffle=False, **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
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

