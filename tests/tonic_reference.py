"""Reference binning through tonic's own transforms, one recording at a time: the path the
DataModules took before the packed caches (tonic ``CropTime -> Downsample -> ToFrame``, then cut or
padded to ``n`` frames), kept here as the independent reference for :mod:`exodus_lightning.data.binning`
and for the batches of the DataModules."""

from __future__ import annotations

import math

import numpy as np
from tonic import transforms as tt

HSD_DTYPE = np.dtype([("t", int), ("x", int), ("p", int)])  # tonic.datasets.hsd.HSD.dtype
DVS_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])  # DVSGesture.dtype


def tonic_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    target_size: tuple[int, int] | None = None,
    dt_us: float | None = None,
    n_time_bins: int | None = None,
    max_duration_us: float | None = None,
    start_at_first_event: bool = False,
    denoise_us: float | None = None,
) -> np.ndarray:
    """Frames ``(T, C)`` (1-D sensors) or ``(T, P, H, W)`` as ``int16``, computed by tonic's transforms."""
    one_d = sensor_size[1] == 1 and sensor_size[2] == 1
    w, h, p = sensor_size
    if target_size is not None:
        w, h = target_size
    feature_shape = (w,) if one_d else (p, h, w)
    ev = events
    if len(ev) and not np.all(np.diff(ev["t"].astype(np.int64)) >= 0):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    if len(ev) and denoise_us is not None:
        ev = tt.Denoise(filter_time=denoise_us)(ev)
    t0 = int(ev["t"].min()) if (start_at_first_event and len(ev)) else 0
    if len(ev):
        t_max = None if max_duration_us is None else t0 + int(math.ceil(max_duration_us)) - 1
        ev = tt.CropTime(min=t0, max=t_max if t_max is not None else int(ev["t"].max()))(ev)
    if target_size is not None and tuple(target_size) != tuple(sensor_size[:2]):
        sw, sh, _ = sensor_size
        factor = target_size[0] / sw if one_d else (target_size[0] / sw, target_size[1] / sh)
        ev = tt.Downsample(spatial_factor=factor)(ev)
    if n_time_bins is not None:
        n = int(n_time_bins)
        if len(ev) == 0:
            return np.zeros((n, *feature_shape), dtype=np.int16)
        span = max_duration_us if max_duration_us is not None else int(ev["t"].max()) - t0 + 1
        dt = float(span) / n
    else:
        dt = float(dt_us)
        if len(ev) == 0:
            return np.zeros((1, *feature_shape), dtype=np.int16)
        n = int((int(ev["t"].max()) - t0) // dt) + 1
    frames = tt.ToFrame(
        sensor_size=(w, h, p), time_window=dt, start_time=t0, end_time=t0 + n * dt, include_incomplete=True
    )(ev)
    frames = np.asarray(frames, dtype=np.int16)
    if frames.shape[0] > n:
        frames = frames[:n]
    elif frames.shape[0] < n:
        frames = np.concatenate([frames, np.zeros((n - frames.shape[0], *frames.shape[1:]), dtype=np.int16)])
    return frames.reshape(n, *feature_shape)


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
