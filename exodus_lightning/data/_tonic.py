"""Thin subclasses of tonic's dataset classes (same class names, so tonic's folder
``<save_to>/<ClassName>`` is unchanged) that keep tonic's real reading code and change only:

* ``_check_exists``: tonic requires the downloaded *archive* (``shd_train.h5.zip``,
  ``ibmGestureTrain.tar.gz``, ...) to be present next to the extracted data, and a minimum number
  of files (>= 100 ``.npy`` for DVS Gesture, >= 10 000 ``.bin`` for N-MNIST, >= 1000 ``.aedat4``
  for CIFAR10-DVS); otherwise its constructor starts a download. These checks reject users who
  deleted the archives after extracting, as well as the small test files. Here the check is only
  "the extracted files that tonic reads exist" (md5 sums are never checked by tonic's
  ``_check_exists`` either: it only runs them inside its downloader). The DataModules check the
  layout themselves first and raise an error with instructions when files are missing, so with
  ``download=False`` tonic's downloader is never reached; with ``download=True`` a failed check
  falls through to tonic's real ``download()``.
* the sample lists of path-based datasets are sorted by path (tonic's DVS Gesture walks the top
  folder in file-system order), so indices and splits are reproducible;
* helpers for the DataModules: ``sample_file(i)``, ``source_files()``, ``targets_array()``, and
  ``read_events(indices)``: the events of several samples as arrays ``(t, x, y, p)`` (``y`` is None
  for 1-D sensors), the same values tonic's ``__getitem__`` returns; SHD/SSC read a whole range of
  samples from the HDF5 file at once and DVS Gesture reads its ``.npy`` files directly;
* readable :class:`CorruptFileError` for truncated files.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import tonic.datasets as td

from .errors import CorruptFileError

__all__ = ["SHD", "SSC", "DVSGesture", "NMNIST", "CIFAR10DVS"]

EventArrays = tuple  # one sample's events as separate arrays: (t int64 µs, x, y or None, p)


def _has_files(path: str, ext: str) -> bool:
    for _, _, files in os.walk(path):
        if any(f.endswith(ext) for f in files):
            return True
    return False


class _HSDMixin:
    """Shared by SHD and SSC (tonic's ``HSD`` reads ``spikes/times``, ``spikes/units``, ``labels``)."""

    def _check_exists(self) -> bool:
        return os.path.isfile(self.sample_file(0))

    def sample_file(self, index: int = 0) -> str:
        return os.path.join(self.location_on_system, self.filename[:-4])

    def source_files(self) -> list[str]:
        return [self.sample_file()]

    def _validate(self) -> None:
        path = self.sample_file()
        try:
            with h5py.File(path, "r") as f:
                for key in ("spikes/times", "spikes/units", "labels"):
                    if key not in f:
                        raise CorruptFileError(f"{path} has no dataset '{key}' (not an SHD/SSC HDF5 file?)")
                n = len(f["labels"])
                if len(f["spikes/times"]) != n or len(f["spikes/units"]) != n:
                    raise CorruptFileError(
                        f"{path}: spikes/times, spikes/units and labels have different lengths "
                        f"({len(f['spikes/times'])}, {len(f['spikes/units'])}, {n})"
                    )
                self._targets = np.asarray(f["labels"][()], dtype=np.int64)
        except CorruptFileError:
            raise
        except Exception as e:
            raise CorruptFileError(f"cannot read HDF5 file {path}: {type(e).__name__}: {e} (truncated or corrupt?)") from e

    def targets_array(self) -> np.ndarray:
        return self._targets

    def __len__(self) -> int:  # tonic re-opens the file for every len(); the labels are known
        return len(self._targets)

    def read_events(self, indices: list[int]) -> list[EventArrays]:
        """The spikes of samples ``indices``: time in µs truncated from float64 seconds and the channel
        in ``x``, as tonic's ``HSD.__getitem__`` gives them. Nearby samples (a block of the cache build)
        are read as one range of the file, scattered ones (a shuffled batch) one by one."""
        lo, hi = min(indices), max(indices) + 1
        wanted = sorted(set(indices)) if hi - lo > 2 * len(indices) else range(lo, hi)
        with h5py.File(self.sample_file(), "r") as f:
            if isinstance(wanted, range):
                read = {"times": f["spikes/times"][lo:hi], "units": f["spikes/units"][lo:hi]}
            else:
                read = {name: f[f"spikes/{name}"][wanted] for name in ("times", "units")}
        row = {i: k for k, i in enumerate(wanted)}
        out = []
        for i in indices:
            t = (read["times"][row[i]].astype(np.float64) * 1e6).astype(np.int64)
            out.append((t, read["units"][row[i]].astype(np.int64), None, np.ones(len(t), dtype=np.int64)))
        return out


def _wrap_init(cls_name: str, init, self, *args, **kwargs) -> None:
    try:
        init(self, *args, **kwargs)
    except CorruptFileError:
        raise
    except (OSError, KeyError) as e:
        if not os.path.exists(self.sample_file()):
            raise
        raise CorruptFileError(
            f"cannot open {self.sample_file()} with tonic.datasets.{cls_name}: {type(e).__name__}: {e} "
            "(truncated or corrupt file? SHD/SSC files need spikes/times, spikes/units, labels, extra/keys, extra/speaker)"
        ) from e


class SHD(_HSDMixin, td.SHD):
    """tonic's :class:`tonic.datasets.SHD` with the offline checks described in the module docstring."""

    def __init__(self, save_to: str, train: bool = True) -> None:
        self.filename = td.SHD.train_zip if train else td.SHD.test_zip
        self.location_on_system = os.path.join(os.path.expanduser(save_to), "SHD")
        _wrap_init("SHD", td.SHD.__init__, self, save_to, train=train)
        self._validate()


class SSC(_HSDMixin, td.SSC):
    """tonic's :class:`tonic.datasets.SSC` with the offline checks described in the module docstring."""

    def __init__(self, save_to: str, split: str = "train") -> None:
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
        self.filename = {"train": td.SSC.train_zip, "valid": td.SSC.valid_zip, "test": td.SSC.test_zip}[split]
        self.location_on_system = os.path.join(os.path.expanduser(save_to), "SSC")
        _wrap_init("SSC", td.SSC.__init__, self, save_to, split=split)
        self._validate()


class _PathListMixin:
    """For datasets that keep one file per sample in ``self.data``."""

    ext = ""

    def _check_exists(self) -> bool:
        return _has_files(os.path.join(self.location_on_system, self.folder_name), self.ext)

    def _sort(self, extra: tuple[str, ...] = ()) -> None:
        order = sorted(range(len(self.data)), key=lambda i: self.data[i])
        for name in ("data", "targets", *extra):
            seq = getattr(self, name)
            setattr(self, name, [seq[i] for i in order])

    def sample_file(self, index: int) -> str:
        return self.data[index]

    def source_files(self) -> list[str]:
        return list(self.data)

    def targets_array(self) -> np.ndarray:
        return np.asarray(self.targets, dtype=np.int64)

    def read_events(self, indices: list[int]) -> list[EventArrays]:
        """The events of samples ``indices`` as ``(t, x, y, p)`` arrays, through tonic's ``__getitem__``."""
        out = []
        for i in indices:
            ev, _ = self[i]
            out.append((ev["t"], ev["x"], ev["y"], ev["p"]))
        return out


class DVSGesture(_PathListMixin, td.DVSGesture):
    """tonic's :class:`tonic.datasets.DVSGesture` (preprocessed ``.npy`` version), offline checks, sorted."""

    ext = ".npy"

    def __init__(self, save_to: str, train: bool = True) -> None:
        super().__init__(save_to, train=train)
        self._sort(("users", "lighting"))

    def read_events(self, indices: list[int]) -> list[EventArrays]:
        """The ``(N, 4)`` rows ``x, y, p, t_ms`` of each file, ``t`` in µs (tonic multiplies by 1000),
        without tonic's conversion to a structured array."""
        out = []
        for i in indices:
            a = np.load(self.data[i])
            if a.ndim != 2 or a.shape[1] != 4:
                raise ValueError(f"expected an (N, 4) array of x, y, p, t_ms, got shape {a.shape}")
            out.append(((a[:, 3] * 1000).astype(np.int64), a[:, 0], a[:, 1], a[:, 2] != 0))
        return out


class NMNIST(_PathListMixin, td.NMNIST):
    """tonic's :class:`tonic.datasets.NMNIST` with offline checks and a truncation check."""

    ext = ".bin"

    def __init__(self, save_to: str, train: bool = True, first_saccade_only: bool = False, stabilize: bool = False) -> None:
        super().__init__(save_to, train=train, first_saccade_only=first_saccade_only, stabilize=stabilize)
        self._sort()

    def __getitem__(self, index: int):
        path = self.data[index]
        size = os.path.getsize(path)
        if size % 5:
            raise CorruptFileError(
                f"N-MNIST file {path} has {size} bytes, not a multiple of 5 (5 bytes per event): truncated?"
            )
        return super().__getitem__(index)


class CIFAR10DVS(_PathListMixin, td.CIFAR10DVS):
    """tonic's :class:`tonic.datasets.CIFAR10DVS` (reads ``.aedat4`` through the ``aedat`` package), offline checks, sorted."""

    ext = ".aedat4"

    def __init__(self, save_to: str) -> None:
        super().__init__(save_to)
        self._sort()
