"""The data path before the packed caches, kept as the baseline of ``exodus-lightning bench data`` and
as the independent reference of the data tests.

One sample at a time: tonic's dataset class reads it, tonic's transforms bin it (``[Denoise ->]
CropTime -> Downsample -> ToFrame``, cut or padded to ``n`` frames), optionally through a cache of one
``.npz`` file per sample (flat indices and values of the non-zero frame entries, the format the
DataModules used), and ``pad_collate`` pads and stacks the dense samples.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["tonic_frames", "PerSampleDataset"]


def tonic_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    target_size: tuple[int, int] | None = None,
    time_window_us: float | None = None,
    n_time_bins: int | None = None,
    max_duration_us: float | None = None,
    start_at_first_event: bool = False,
    denoise_us: float | None = None,
) -> np.ndarray:
    """Frames ``(T, C)`` (1-D sensors) or ``(T, P, H, W)`` as ``int16``, computed by tonic's transforms
    (the parameters are those of :class:`~exodus_lightning.data.binning.EventBinner`)."""
    from tonic import transforms as tt

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
        dt = float(time_window_us)
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


class PerSampleDataset(Dataset):
    """``ds[i] = (frames float32 (T, *features), label)``, one sample at a time.

    Args:
        source: a tonic dataset (``source[i] = (structured events, label)``).
        binner_params: :meth:`EventBinner.params() <exodus_lightning.data.binning.EventBinner.params>`.
        cache_dir: folder for one ``.npz`` per sample (read back when present), or None.
    """

    def __init__(self, source: Any, binner_params: dict[str, Any], cache_dir: str | None = None) -> None:
        self.source = source
        self.params = binner_params
        self.cache_dir = cache_dir
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)

    def __len__(self) -> int:
        return len(self.source)

    def _entry(self, index: int) -> str:
        return os.path.join(self.cache_dir, f"{index:07d}.npz")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.cache_dir and os.path.exists(self._entry(index)):
            with np.load(self._entry(index)) as z:
                shape = tuple(int(s) for s in z["shape"])
                frames = np.zeros(int(np.prod(shape)), dtype=z["val"].dtype)
                frames[z["idx"]] = z["val"]
                frames = frames.reshape(shape)
                label = int(z["label"])
        else:
            events, label = self.source[index]
            frames = tonic_frames(events, **self.params)
            label = int(label)
            if self.cache_dir:
                flat = frames.reshape(-1)
                idx = np.flatnonzero(flat).astype(np.int32 if flat.size < 2**31 else np.int64)
                buf = io.BytesIO()
                np.savez(buf, shape=np.asarray(frames.shape, dtype=np.int64), idx=idx, val=flat[idx],
                         label=np.int64(label))
                with open(self._entry(index), "wb") as f:
                    f.write(buf.getvalue())
        return torch.from_numpy(np.asarray(frames, dtype=np.float32)), label
