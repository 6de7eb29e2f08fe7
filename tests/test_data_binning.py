"""EventBinner (vectorised) equals tonic's transform chain bit for bit, window-edge rounding included."""

from __future__ import annotations

import numpy as np
import pytest

from exodus_lightning.data.binning import EventBinner
from tests.tonic_reference import dvs_events, hsd_events, tonic_frames


def _check(events, **params):
    binner = EventBinner(**params)
    got = binner(events)
    want = tonic_frames(events, **params)
    assert got.n_steps == want.shape[0]
    assert np.array_equal(got.dense(binner.feature_shape), want.astype(np.float32))
    assert np.all(np.diff(got.cells) > 0) and np.all(got.counts >= 1)


def _random_hsd(rng, n, duration_s):
    return hsd_events(np.sort(rng.uniform(0, duration_s, n)).astype(np.float32), rng.integers(0, 700, n))


@pytest.mark.parametrize("seed", range(12))
def test_one_d_time_windows(seed):
    rng = np.random.default_rng(seed)
    ev = _random_hsd(rng, int(rng.integers(1, 3000)), rng.uniform(0.01, 1.5))
    for time_window_us in (10_000.0, 3_333.3, 1_000.0, 7_777.77):
        for max_us in (None, 1.4e6, 123_456.7):
            _check(ev, sensor_size=(700, 1, 1), target_size=(100, 1), time_window_us=time_window_us, max_duration_us=max_us)
    _check(ev, sensor_size=(700, 1, 1), time_window_us=10_000.0)  # no downsampling
    _check(ev, sensor_size=(700, 1, 1), target_size=(700, 1), time_window_us=10_000.0)


@pytest.mark.parametrize("seed", range(8))
def test_one_d_fixed_bin_count(seed):
    rng = np.random.default_rng(100 + seed)
    ev = _random_hsd(rng, int(rng.integers(1, 2000)), rng.uniform(0.01, 1.5))
    for n_bins in (1, 7, 250, 1000):
        for max_us in (None, 1e6, 333_333.3):
            _check(ev, sensor_size=(700, 1, 1), target_size=(128, 1), n_time_bins=n_bins, max_duration_us=max_us)


def test_events_on_window_edges_and_large_offsets():
    """Times on exact multiples of dt and far from zero: the float64 window edges of tonic decide."""
    for time_window_us in (10_000.0, 3_000.3, 1e3 / 3, 2_500.0):
        k = np.arange(0, 200)
        for t0 in (0, 123_456_789, 9_007_199_254):  # up to ~2^33 µs: rounding of k * dt + t0
            t = (t0 + np.round(k * time_window_us)).astype(np.int64)
            t = np.sort(np.concatenate([t, t - 1, t + 1]))
            n = len(t)
            ev = dvs_events(np.arange(n) % 128, (np.arange(n) * 7) % 128, np.arange(n) % 2, t)
            for fixed in (None, 37, 200):
                params = dict(sensor_size=(128, 128, 2), target_size=(32, 32), start_at_first_event=True)
                if fixed is None:
                    _check(ev, time_window_us=time_window_us, **params)
                else:
                    _check(ev, n_time_bins=fixed, **params)
                    _check(ev, n_time_bins=fixed, max_duration_us=time_window_us * 150.5, **params)


@pytest.mark.parametrize("seed", range(6))
def test_two_d_downsampling_and_crop(seed):
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(1, 5000))
    t = np.sort(rng.integers(0, 1_800_000, n)) + int(rng.integers(0, 10**7))
    ev = dvs_events(rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t)
    for size in (128, 64, 48, 32, 17):
        _check(ev, sensor_size=(128, 128, 2), target_size=(size, size), time_window_us=5_000.0,
               max_duration_us=1.5e6, start_at_first_event=True)
    _check(ev, sensor_size=(128, 128, 2), target_size=(48, 48), n_time_bins=10, start_at_first_event=True)
    _check(ev, sensor_size=(128, 128, 2), time_window_us=1_000.0, max_duration_us=30_000.0)  # t0 = 0: most cropped


def test_unsorted_empty_and_cropped_away():
    rng = np.random.default_rng(7)
    ev = _random_hsd(rng, 500, 0.5)
    rng.shuffle(ev)
    _check(ev, sensor_size=(700, 1, 1), time_window_us=10_000.0)
    empty = hsd_events(np.zeros(0), np.zeros(0, int))
    _check(empty, sensor_size=(700, 1, 1), time_window_us=10_000.0)
    _check(empty, sensor_size=(700, 1, 1), n_time_bins=5)
    late = hsd_events(np.array([2.0, 2.5]), np.array([3, 4]))
    _check(late, sensor_size=(700, 1, 1), time_window_us=10_000.0, max_duration_us=1e6)  # everything cropped


def test_denoise_matches_tonic():
    rng = np.random.default_rng(8)
    n = 600
    ev = dvs_events(rng.integers(0, 16, n), rng.integers(0, 16, n), rng.integers(0, 2, n),
                    np.sort(rng.integers(0, 200_000, n)))
    _check(ev, sensor_size=(128, 128, 2), target_size=(32, 32), time_window_us=10_000.0, denoise_us=5_000.0,
           start_at_first_event=True)


def test_out_of_sensor_events_are_rejected():
    binner = EventBinner(sensor_size=(34, 34, 2), time_window_us=1000.0)
    with pytest.raises(ValueError, match="x = 34 lies outside the sensor"):
        binner.bin(t=np.array([0, 5]), x=np.array([1, 34]), y=np.array([0, 0]), p=np.array([0, 1]))
    with pytest.raises(ValueError, match="polarity = 2"):
        binner.bin(t=np.array([0]), x=np.array([1]), y=np.array([0]), p=np.array([2]))
    with pytest.raises(ValueError, match="single-polarity"):
        EventBinner(sensor_size=(700, 1, 1), time_window_us=1000.0).bin(np.array([0, 1]), np.array([0, 1]), p=np.array([0, 1]))
    with pytest.raises(ValueError, match="exactly one of time_window_us and n_time_bins"):
        EventBinner(sensor_size=(700, 1, 1))


def test_from_ms_converts_the_public_arguments_to_microseconds():
    """The DataModules' millisecond arguments reach the binner as µs (the events' unit), nothing else changes."""
    got = EventBinner.from_ms((128, 128, 2), (32, 32), time_window_ms=2.5, max_duration_ms=1400,
                              start_at_first_event=True, denoise_ms=3.0)
    assert got == EventBinner(sensor_size=(128, 128, 2), target_size=(32, 32), time_window_us=2500.0,
                              max_duration_us=1_400_000.0, start_at_first_event=True, denoise_us=3000.0)
    assert EventBinner.from_ms((700, 1, 1), n_time_bins=7) == EventBinner(sensor_size=(700, 1, 1), n_time_bins=7)
    ev = hsd_events(np.array([0.0004, 0.0031, 0.0099], np.float32), np.array([1, 2, 3]))
    assert EventBinner.from_ms((700, 1, 1), time_window_ms=3.0)(ev).cells.tolist() == [1, 702, 2103]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one of time_window_ms .* or n_time_bins"),
        (dict(time_window_ms=1.0, n_time_bins=4), "exactly one of time_window_ms .* or n_time_bins"),
        (dict(time_window_ms=0.0), "time_window_ms must be"),
        (dict(time_window_ms=float("nan")), "time_window_ms must be"),
        (dict(n_time_bins=2.0), "n_time_bins must be a positive integer"),
        (dict(n_time_bins=True), "n_time_bins must be a positive integer"),
        (dict(n_time_bins=4, max_duration_ms=-1.0), "max_duration_ms must be"),
        (dict(time_window_ms=1.0, denoise_ms=0), "denoise_ms must be"),
    ],
)
def test_from_ms_rejects_bad_arguments_by_their_public_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EventBinner.from_ms((700, 1, 1), **kwargs)
