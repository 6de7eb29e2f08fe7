"""Events in tonic's field types, for the reference binning through tonic's own transforms
(``exodus_lightning.bench.per_sample_data.tonic_frames``: the per-sample path the DataModules took
before the packed caches, independent of :mod:`exodus_lightning.data.binning`)."""

from __future__ import annotations

import numpy as np

from exodus_lightning.bench.per_sample_data import tonic_frames  # noqa: F401 - the reference, re-exported

HSD_DTYPE = np.dtype([("t", int), ("x", int), ("p", int)])  # tonic.datasets.hsd.HSD.dtype
DVS_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])  # DVSGesture.dtype


def hsd_events(t_s: np.ndarray, units: np.ndarray) -> np.ndarray:
    """SHD/SSC spikes as tonic's HSD reader returns them (µs, truncated; polarity 1)."""
    ev = np.empty(len(t_s), dtype=HSD_DTYPE)
    ev["t"] = np.asarray(t_s, dtype=np.float32).astype(np.float64) * 1e6
    ev["x"] = units
    ev["p"] = 1
    return ev


def dvs_events(x, y, p, t_us) -> np.ndarray:
    """DVS events with tonic's DVS Gesture field types."""
    ev = np.empty(len(t_us), dtype=DVS_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, p, t_us
    return ev
