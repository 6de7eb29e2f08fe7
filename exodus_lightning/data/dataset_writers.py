"""Writers for small dataset files in the real on-disk formats that tonic reads.

Used by the data benchmarks (:mod:`exodus_lightning.bench.data`, :mod:`exodus_lightning.bench.epoch`) to
write inputs in the formats users have, and by the tests. Formats (tonic 1.7):

* SHD/SSC: HDF5 ``<root>/SHD/shd_{train,test}.h5`` / ``<root>/SSC/ssc_{train,valid,test}.h5`` with
  vlen ``spikes/times`` (float32 seconds), vlen ``spikes/units`` (uint16 channel ids), ``labels``
  (uint16), ``extra/keys`` (class names), ``extra/speaker``.
* DVS Gesture (tonic's preprocessed version): ``<root>/DVSGesture/ibmGesture{Train,Test}/
  user<NN>_<lighting>/<label>.npy``, int array ``(N, 4)`` with columns ``x, y, p, t_ms``.
* N-MNIST: ``<root>/NMNIST/{Train,Test}/<digit>/<id>.bin``, 5 bytes per event: x, y,
  ``p << 7 | t[22:16]``, ``t[15:8]``, ``t[7:0]`` (t in µs).

The archives tonic downloads (``.zip``/``.tar.gz``) are not written: the DataModules do not need them.
"""

from __future__ import annotations

import os
from typing import Sequence

import h5py
import numpy as np

__all__ = [
    "write_hsd_file",
    "write_shd",
    "write_ssc",
    "random_hsd_samples",
    "write_dvsgesture_sample",
    "random_dvs_events",
    "write_dvsgesture_tree",
    "encode_nmnist",
    "write_nmnist_sample",
]


def write_hsd_file(
    path: str,
    times: Sequence[np.ndarray],
    units: Sequence[np.ndarray],
    labels: Sequence[int],
    n_classes: int = 20,
) -> str:
    """Write an SHD/SSC-format HDF5 file; ``times`` in seconds, ``units`` channel ids."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = len(labels)
    assert len(times) == n and len(units) == n
    with h5py.File(path, "w") as f:
        dt_t = h5py.vlen_dtype(np.dtype("float32"))
        dt_u = h5py.vlen_dtype(np.dtype("uint16"))
        ts = f.create_dataset("spikes/times", (n,), dtype=dt_t)
        us = f.create_dataset("spikes/units", (n,), dtype=dt_u)
        for i in range(n):
            ts[i] = np.asarray(times[i], dtype=np.float32)
            us[i] = np.asarray(units[i], dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.array([f"class_{c}".encode() for c in range(n_classes)]))
        f.create_dataset("extra/speaker", data=np.zeros(n, dtype=np.uint16))
    return path


def write_shd(root: str, split: str, times, units, labels, n_classes: int = 20) -> str:
    """Write ``<root>/SHD/shd_<split>.h5`` (``split`` is ``train`` or ``test``)."""
    return write_hsd_file(os.path.join(root, "SHD", f"shd_{split}.h5"), times, units, labels, n_classes)


def write_ssc(root: str, split: str, times, units, labels, n_classes: int = 35) -> str:
    """Write ``<root>/SSC/ssc_<split>.h5`` (``split`` is ``train``, ``valid`` or ``test``)."""
    return write_hsd_file(os.path.join(root, "SSC", f"ssc_{split}.h5"), times, units, labels, n_classes)


def random_hsd_samples(
    n: int,
    n_classes: int = 20,
    n_channels: int = 700,
    spikes: tuple[int, int] = (50, 200),
    duration_s: tuple[float, float] = (0.3, 1.0),
    seed: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Random SHD-like samples: sorted spike times (s), channel ids, balanced labels."""
    rng = np.random.default_rng(seed)
    times, units, labels = [], [], []
    for i in range(n):
        k = int(rng.integers(spikes[0], spikes[1] + 1))
        dur = rng.uniform(*duration_s)
        times.append(np.sort(rng.uniform(0.0, dur, size=k)).astype(np.float32))
        units.append(rng.integers(0, n_channels, size=k).astype(np.uint16))
        labels.append(i % n_classes)
    return times, units, labels


def write_dvsgesture_sample(
    root: str, train: bool, user: int, lighting: str, label: int, events: np.ndarray
) -> str:
    """Write one DVS Gesture ``.npy`` (``events`` int ``(N, 4)``: x, y, p, t in ms)."""
    folder = os.path.join(root, "DVSGesture", "ibmGestureTrain" if train else "ibmGestureTest", f"user{user:02d}_{lighting}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{label}.npy")
    np.save(path, np.asarray(events, dtype=np.int64))
    return path


def random_dvs_events(
    n_events: int, duration_ms: int, rng: np.random.Generator, t_offset_ms: int = 0, size: int = 128
) -> np.ndarray:
    """Random time-sorted DVS events ``(N, 4)`` int64: x, y, p, t_ms."""
    ev = np.empty((n_events, 4), dtype=np.int64)
    ev[:, 0] = rng.integers(0, size, n_events)
    ev[:, 1] = rng.integers(0, size, n_events)
    ev[:, 2] = rng.integers(0, 2, n_events)
    ev[:, 3] = np.sort(rng.integers(0, duration_ms, n_events)) + t_offset_ms
    return ev


def write_dvsgesture_tree(
    root: str, train: bool, n_users: int, n_events: int = 2000, duration_ms: int = 1500, seed: int = 0,
    lightings: Sequence[str] = ("fluorescent", "lab"),
) -> list[str]:
    """Write ``n_users`` x ``len(lightings)`` x 11 labels random DVS Gesture samples."""
    rng = np.random.default_rng(seed)
    paths = []
    for u in range(1, n_users + 1):
        for light in lightings:
            for label in range(11):
                ev = random_dvs_events(n_events, duration_ms, rng, t_offset_ms=int(rng.integers(0, 5000)))
                paths.append(write_dvsgesture_sample(root, train, u, light, label, ev))
    return paths


def encode_nmnist(x: np.ndarray, y: np.ndarray, p: np.ndarray, t_us: np.ndarray) -> bytes:
    """Encode events in the N-MNIST 40-bit format (timestamps < 2**23 µs, no overflow records)."""
    x, y, p, t = (np.asarray(a, dtype=np.int64) for a in (x, y, p, t_us))
    if np.any(t >= 2**23) or np.any(t < 0):
        raise ValueError("N-MNIST timestamps must be in [0, 2**23) µs")
    if np.any(y == 240):
        raise ValueError("y == 240 is the overflow marker")
    raw = np.empty((len(x), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_nmnist_sample(root: str, train: bool, digit: int, idx: int, x, y, p, t_us) -> str:
    """Write ``<root>/NMNIST/{Train,Test}/<digit>/<idx>.bin``."""
    folder = os.path.join(root, "NMNIST", "Train" if train else "Test", str(digit))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{idx:05d}.bin")
    with open(path, "wb") as f:
        f.write(encode_nmnist(x, y, p, t_us))
    return path
