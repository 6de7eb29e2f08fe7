"""Event binning: the events of one recording -> the (time bin, feature) cells they fill, with counts.

The result is what tonic's transform chain ``[Denoise ->] CropTime -> Downsample -> ToFrame(time_window,
start_time, end_time, include_incomplete=True)`` gives, cut or zero-padded to ``n_steps`` frames, but
in sparse form and computed with whole-array numpy operations instead of a frame-by-frame loop.
``tests/test_data_binning.py`` checks it bit for bit against that tonic chain, including the float
rounding of tonic's window edges.

Example:
    >>> import numpy as np
    >>> binner = EventBinner.from_ms(sensor_size=(4, 1, 1), time_window_ms=1.0)
    >>> binner.time_window_us
    1000.0
    >>> b = binner.bin(t=np.array([0, 500, 1500]), x=np.array([1, 1, 3]), p=np.ones(3, int))
    >>> b.cells.tolist(), b.counts.tolist(), b.n_steps    # cell = time bin * 4 + channel
    ([1, 7], [2, 1], 2)

Argument names (every DataModule and dataset of :mod:`exodus_lightning.data`): ``time_window_ms``
(the width of one time bin, which is one time step of the network), ``n_time_bins`` (a fixed
number of bins instead, mutually exclusive with ``time_window_ms``) and ``max_duration_ms`` (the
crop). They are in milliseconds; the binner works in the event timestamps' microseconds, and
:meth:`EventBinner.from_ms` is the one place that validates the public arguments and converts them.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = ["BinnedEvents", "EventBinner", "US_PER_MS", "default_time_window_ms", "RENAMED_ARGUMENTS", "renamed_argument_hint"]

#: microseconds (the unit of tonic's event timestamps) per millisecond (the unit of the public arguments)
US_PER_MS = 1000.0

#: earlier spellings of the time-binning arguments, for the error a config that still uses one gets
#: (they are not accepted: no alias is kept)
RENAMED_ARGUMENTS: dict[str, str] = {
    "dt_ms": "time_window_ms (bin width in ms)",
    "max_duration": "max_duration_ms (in ms; max_duration was in seconds)",
}


def renamed_argument_hint(message: str) -> str:
    """A line for each earlier argument name that ``message`` (a parser error) names, saying its new name;
    ``""`` when it names none.

    Example:
        >>> renamed_argument_hint("Option 'dt_ms' is not accepted")
        "\\n  'dt_ms' was renamed: use time_window_ms (bin width in ms)"
    """
    lines = [f"'{old}' was renamed: use {new}" for old, new in RENAMED_ARGUMENTS.items()
             if re.search(rf"(?<!\w){re.escape(old)}(?!\w)", message)]
    # a nested parser's error already carries the line when the outer parser reports it again
    return "".join(f"\n  {line}" for line in lines if line not in message)


def default_time_window_ms(time_window_ms: float | None, n_time_bins: int | None, default_ms: float) -> float | None:
    """``time_window_ms``, or ``default_ms`` when neither ``time_window_ms`` nor ``n_time_bins`` is given
    (the DataModules that offer both modes default to bins of a fixed width)."""
    return default_ms if time_window_ms is None and n_time_bins is None else time_window_ms


class BinnedEvents(NamedTuple):
    """One binned recording: ``cells`` (int64, sorted, unique) = ``time_bin * n_features + feature``,
    ``counts`` (int64, >= 1) events per cell, ``n_steps`` frames of the recording."""

    cells: np.ndarray
    counts: np.ndarray
    n_steps: int

    def dense(self, feature_shape: tuple[int, ...]) -> np.ndarray:
        """The frames as a dense ``float32`` array ``(n_steps, *feature_shape)``."""
        out = np.zeros(self.n_steps * math.prod(feature_shape), dtype=np.float32)
        out[self.cells] = self.counts
        return out.reshape(self.n_steps, *feature_shape)


_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class EventBinner:
    """Bins a recording's events (times in µs) into frames of a fixed length or a fixed count.

    Steps, as tonic's transforms define them: optional ``Denoise(filter_time=denoise_us)`` ->
    ``CropTime`` to ``[t0, t0 + max_duration_us)`` -> ``Downsample`` of the pixel (or channel)
    coordinates to ``target_size`` (``x' = trunc(x * target / sensor)``) -> ``ToFrame`` with windows
    ``[t0 + k dt, t0 + k dt + dt)`` (``dt = time_window_us``, tonic's ``time_window``) computed in
    float64, as tonic does.

    The fields are in µs, the unit of the event timestamps; DataModules build it from their public
    millisecond arguments with :meth:`from_ms`.

    ``t0`` is 0 (recording onset, e.g. SHD, N-MNIST) or the first event's time
    (``start_at_first_event``, for recordings cut from longer streams such as DVS Gesture).

    * ``time_window_us`` mode: the recording has ``T = floor((t_last - t0) / dt) + 1`` frames
      (variable length, padded in the batch), at most ``ceil(max_duration_us / dt)``.
    * ``n_time_bins`` mode: ``K`` equal frames over ``[t0, t0 + D)`` with ``D = max_duration_us`` if
      given, else ``t_last - t0 + 1`` (per recording); always ``T = K``.

    Features: ``(C,)`` for 1-D sensors (``sensor_size = (C, 1, 1)``), else ``(P, H, W)`` (tonic's frame
    layout), flattened as ``(p * H + y) * W + x``. An empty recording gives one (or ``K``) empty frames.
    """

    sensor_size: tuple[int, int, int]
    target_size: tuple[int, int] | None = None
    time_window_us: float | None = None
    n_time_bins: int | None = None
    max_duration_us: float | None = None
    start_at_first_event: bool = False
    denoise_us: float | None = None

    def __post_init__(self) -> None:
        if (self.time_window_us is None) == (self.n_time_bins is None):
            raise ValueError("EventBinner: give exactly one of time_window_us and n_time_bins")

    @classmethod
    def from_ms(
        cls,
        sensor_size: tuple[int, int, int],
        target_size: tuple[int, int] | None = None,
        *,
        time_window_ms: float | None = None,
        n_time_bins: int | None = None,
        max_duration_ms: float | None = None,
        start_at_first_event: bool = False,
        denoise_ms: float | None = None,
    ) -> EventBinner:
        """The binner of the public (millisecond) arguments of the DataModules, validated, with every
        time converted to µs here (``t_us = t_ms * US_PER_MS``) and nowhere else.

        Args:
            sensor_size: ``(W, H, P)`` of the sensor (``(C, 1, 1)`` for a row of channels).
            target_size: ``(W, H)`` after tonic's ``Downsample`` (None: the sensor's).
            time_window_ms: width of one time bin (one time step) in ms.
            n_time_bins: a fixed number of equal bins instead (exactly one of the two).
            max_duration_ms: events at or after ``t0 + max_duration_ms`` are dropped; None keeps all.
            start_at_first_event: ``t0`` is the first event's time instead of 0.
            denoise_ms: filter time of tonic's ``Denoise``; None: no denoising.

        Raises:
            ValueError: naming the argument: both or neither of ``time_window_ms`` and ``n_time_bins``,
                or a time that is not > 0, or ``n_time_bins`` that is not a positive integer.
        """
        if (time_window_ms is None) == (n_time_bins is None):
            raise ValueError(
                "give exactly one of time_window_ms (bin width in ms) or n_time_bins (number of bins), "
                f"got time_window_ms={time_window_ms!r}, n_time_bins={n_time_bins!r}"
            )
        if n_time_bins is not None and (isinstance(n_time_bins, bool) or not isinstance(n_time_bins, int) or n_time_bins <= 0):
            raise ValueError(f"n_time_bins must be a positive integer, got {n_time_bins!r}")
        for name, ms in (("time_window_ms", time_window_ms), ("max_duration_ms", max_duration_ms), ("denoise_ms", denoise_ms)):
            if ms is not None and not (isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms > 0 and math.isfinite(ms)):
                raise ValueError(f"{name} must be a finite number > 0 (milliseconds) or None, got {ms!r}")

        def us(ms: float | None) -> float | None:
            return None if ms is None else float(ms) * US_PER_MS

        return cls(
            sensor_size=tuple(sensor_size),
            target_size=None if target_size is None else tuple(target_size),
            time_window_us=us(time_window_ms),
            n_time_bins=n_time_bins,
            max_duration_us=us(max_duration_ms),
            start_at_first_event=bool(start_at_first_event),
            denoise_us=us(denoise_ms),
        )

    @property
    def out_sensor(self) -> tuple[int, int, int]:
        """Sensor size ``(W, H, P)`` after downsampling."""
        w, h, p = self.sensor_size
        if self.target_size is not None:
            w, h = self.target_size
        return (int(w), int(h), int(p))

    @property
    def one_d(self) -> bool:
        """Whether the sensor is a row of channels (``(C, 1, 1)``, e.g. SHD's cochlea model)."""
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
        return int(math.ceil(self.max_duration_us / self.time_window_us))

    def params(self) -> dict[str, Any]:
        """All parameters (for cache keys)."""
        return asdict(self)

    def __call__(self, events: np.ndarray) -> BinnedEvents:
        """Bin a tonic structured event array (fields ``t``, ``x``, ``p`` and, for 2-D sensors, ``y``)."""
        y = None if self.one_d else events["y"]
        return self.bin(events["t"], events["x"], y, events["p"])

    def _downsample(self, x: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        if self.target_size is None or tuple(self.target_size) == tuple(self.sensor_size[:2]):
            return x, y
        w, h, _ = self.sensor_size
        tw, th = self.target_size
        # tonic multiplies by the float factor and stores into an integer field (truncation)
        x = (x * (tw / w)).astype(np.int64)
        if y is not None:
            y = (y * (th / h)).astype(np.int64)
        return x, y

    def _frames(self, t: np.ndarray, t0: int) -> tuple[int, float]:
        """``(n_steps, window length)`` of a non-empty, cropped recording."""
        if self.n_time_bins is not None:
            n = int(self.n_time_bins)
            span = self.max_duration_us if self.max_duration_us is not None else int(t.max()) - t0 + 1
            return n, float(span) / n
        dt = float(self.time_window_us)
        return int((int(t.max()) - t0) // dt) + 1, dt

    def bin(self, t: np.ndarray, x: np.ndarray, y: np.ndarray | None = None, p: np.ndarray | None = None) -> BinnedEvents:
        """Bin events given as arrays: times ``t`` (µs), ``x`` (channel or column), ``y`` (row, 2-D
        sensors only) and polarity ``p``.

        Raises:
            ValueError: an event's coordinate or polarity lies outside the sensor, or a single-polarity
                sensor's events carry two polarities.
        """
        t = np.asarray(t).astype(np.int64, copy=False)
        x = np.asarray(x).astype(np.int64, copy=False)
        y = None if y is None else np.asarray(y).astype(np.int64, copy=False)
        p = np.zeros_like(t) if p is None else np.asarray(p).astype(np.int64, copy=False)
        if len(t) and np.any(t[1:] < t[:-1]):
            order = np.argsort(t, kind="stable")
            t, x, p = t[order], x[order], p[order]
            y = None if y is None else y[order]
        if len(t) and self.denoise_us is not None:
            t, x, y, p = _denoise(t, x, y, p, self.denoise_us)
        t0 = int(t.min()) if (self.start_at_first_event and len(t)) else 0
        if len(t):
            t_max = int(t.max()) if self.max_duration_us is None else t0 + int(math.ceil(self.max_duration_us)) - 1
            keep = (t >= t0) & (t <= t_max)
            t, x, p = t[keep], x[keep], p[keep]
            y = None if y is None else y[keep]
        x, y = self._downsample(x, y)
        if len(t) == 0:
            return BinnedEvents(_EMPTY, _EMPTY, int(self.n_time_bins) if self.n_time_bins is not None else 1)
        n, dt = self._frames(t, t0)
        steps, event = _window_membership(t, t0, n, dt)
        unit = self._feature_index(x[event], None if y is None else y[event], p[event], p)
        cells, counts = np.unique(steps * math.prod(self.feature_shape) + unit, return_counts=True)
        return BinnedEvents(cells, counts.astype(np.int64), n)

    def _feature_index(self, x: np.ndarray, y: np.ndarray | None, p: np.ndarray, p_all: np.ndarray) -> np.ndarray:
        w, h, n_pol = self.out_sensor
        _check_range("x", x, w)
        if n_pol == 1:
            # tonic's ToFrame: a single-polarity sensor maps every event to polarity 0
            if len(p_all) and p_all.min() != p_all.max():
                raise ValueError("single-polarity sensor, but the events carry two polarities")
            if self.one_d:
                return x
            p = np.zeros_like(p)
        _check_range("polarity", p, n_pol)
        _check_range("y", y, h)
        return (p * h + y) * w + x


def _check_range(name: str, values: np.ndarray, size: int) -> None:
    if len(values) and (values.min() < 0 or values.max() >= size):
        bad = values[(values < 0) | (values >= size)][0]
        raise ValueError(f"event {name} = {int(bad)} lies outside the sensor (expected 0..{size - 1})")


def _window_membership(t: np.ndarray, t0: int, n: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """``(frame, event index)`` of every event in every frame, for time-sorted ``t``.

    Exactly tonic's ``SliceByTime`` with ``include_incomplete`` cut to ``n`` frames: window ``k`` is
    ``[start[k], start[k] + dt)`` with ``start = np.arange(n_frames) * dt + t0`` in float64, and its
    events are ``t[searchsorted(t, start[k]):searchsorted(t, start[k] + dt)]``. Rounding can make
    neighbouring windows overlap or leave a gap, so an event may fall into 0, 1 or 2 frames.
    """
    duration = (t0 + n * dt) - t0
    n_frames = min(max(int(np.ceil((duration - dt) / dt) + 1), 1), n)
    start = np.arange(n_frames) * dt + t0
    first = np.searchsorted(t, start)
    stop = np.searchsorted(t, start + dt)
    sizes = stop - first
    steps = np.repeat(np.arange(n_frames), sizes)
    if np.array_equal(first[1:], stop[:-1]):  # the windows tile the events: one run of indices
        return steps, np.arange(first[0], stop[-1])
    shift = np.repeat(first - (np.cumsum(sizes) - sizes), sizes)
    return steps, np.arange(len(steps)) + shift


def _denoise(t, x, y, p, filter_us: float):
    """tonic's ``Denoise`` (an event without a neighbour event within ``filter_us`` is dropped)."""
    from tonic.functional import denoise_numpy

    ev = np.empty(len(t), dtype=[("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
    ev["x"], ev["t"], ev["p"] = x, t, p
    ev["y"] = 0 if y is None else y
    ev = denoise_numpy(ev, filter_time=filter_us)
    return ev["t"], ev["x"], (None if y is None else ev["y"]), ev["p"]
