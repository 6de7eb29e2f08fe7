"""DVS Gesture, N-MNIST and CIFAR10-DVS DataModules on small files in the real formats.

DVS Gesture (``.npy`` tree) and N-MNIST (40-bit ``.bin``) files are written here and read by
tonic's own DVSGesture / NMNIST classes. CIFAR10-DVS ``.aedat4`` files cannot be written here
(tonic reads them through the ``aedat`` package, which only decodes), so that test replaces
tonic's file reader ``tonic.datasets.cifar10dvs.read_aedat4`` with a function returning known
events for each (empty) ``.aedat4`` path; everything after the reader is the real code path.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from exodus_lightning.data import (
    CIFAR10DVSDataModule,
    CorruptFileError,
    DataNotFoundError,
    DVSGestureDataModule,
    NMNISTDataModule,
)
from exodus_lightning.data.dataset_writers import random_dvs_events, write_dvsgesture_sample, write_nmnist_sample


def _frames(x, y, p, t_us, t0, time_window_us, T, size, sensor=128, max_us=None):
    """Independent reference: frame k holds events with floor((t - t0) / time_window_us) == k, pixel floor(x*size/sensor)."""
    x, y, p, t = (np.asarray(a, dtype=np.int64) for a in (x, y, p, t_us))
    keep = t >= t0 if max_us is None else (t >= t0) & (t < t0 + max_us)
    k = np.floor((t[keep] - t0) / time_window_us).astype(int)
    out = np.zeros((T, 2, size, size), np.float32)
    np.add.at(out, (k, p[keep], y[keep] * size // sensor, x[keep] * size // sensor), 1)
    return out


# ------------------------------------------------------------------------------- DVS Gesture
@pytest.fixture()
def dvs_root(tmp_path):
    rng = np.random.default_rng(0)
    train = {}
    # written out of order on purpose; the DataModule sorts by path
    for user, light, label in [(2, "lab", 10), (1, "fluorescent", 3), (1, "fluorescent", 0), (3, "led", 5)]:
        ev = random_dvs_events(int(rng.integers(50, 300)), int(rng.integers(10, 80)), rng, t_offset_ms=int(rng.integers(0, 9000)))
        train[write_dvsgesture_sample(str(tmp_path), True, user, light, label, ev)] = (label, ev)
    ev = random_dvs_events(100, 30, rng, t_offset_ms=123)
    test = {write_dvsgesture_sample(str(tmp_path), False, 24, "natural", 7, ev): (7, ev)}
    return str(tmp_path), train, test


def test_dvsgesture_batch_matches_written_events(dvs_root):
    root, train, _ = dvs_root
    dm = DVSGestureDataModule(root, time_window_ms=5.0, max_duration_ms=50.0, spatial_size=64, batch_size=4, cache="none")
    assert dm.num_classes == 11 and dm.input_shape == (2, 64, 64) and dm.n_time_steps == 10
    dm.prepare_data()
    dm.setup("fit")
    x, y, lengths = next(iter(_ordered(dm)))
    paths = sorted(train)
    assert y.tolist() == [train[p][0] for p in paths] == [0, 3, 10, 5]
    assert x.dtype == torch.float32 and x.shape[:1] == (4,) and x.shape[2:] == (2, 64, 64)
    for b, path in enumerate(paths):
        ev = train[path][1]
        t_us = ev[:, 3] * 1000
        t0 = t_us.min()
        T = int((t_us[t_us < t0 + 50_000].max() - t0) // 5000) + 1
        e = _frames(ev[:, 0], ev[:, 1], ev[:, 2], t_us, t0, 5000, T, 64, max_us=50_000)
        assert lengths[b] == T
        assert torch.equal(x[b, :T], torch.from_numpy(e))
        assert torch.all(x[b, T:] == 0)


def _ordered(dm):
    from torch.utils.data import DataLoader

    from exodus_lightning.data import pad_collate

    return DataLoader(dm.dataset("train"), batch_size=dm.batch_size, shuffle=False, collate_fn=pad_collate)


def test_dvsgesture_denoise_and_cache(dvs_root, tmp_path):
    root, *_ = dvs_root
    a = DVSGestureDataModule(root, denoise_ms=10.0, cache="disk", cache_dir=str(tmp_path / "c"))
    b = DVSGestureDataModule(root, cache="disk", cache_dir=str(tmp_path / "c"))
    a.prepare_data()
    b.prepare_data()
    packed = [f for f in os.listdir(tmp_path / "c") if f.endswith(".packed")]
    assert len(packed) == 4  # {denoise, no denoise} x {train, test}
    xa, xb = a.dataset("train")[0][0], b.dataset("train")[0][0]
    assert xa.sum() < xb.sum()  # denoising drops isolated events


def test_dvsgesture_errors(dvs_root, tmp_path):
    root, train, _ = dvs_root
    with pytest.raises(DataNotFoundError) as e:
        DVSGestureDataModule(str(tmp_path / "elsewhere")).prepare_data()
    assert "does not exist" in str(e.value) and "ibmGestureTrain.tar.gz" in str(e.value)
    empty = tmp_path / "x"
    (empty / "DVSGesture" / "ibmGestureTrain").mkdir(parents=True)
    with pytest.raises(DataNotFoundError) as e:
        DVSGestureDataModule(str(empty)).prepare_data()
    msg = str(e.value)
    assert str(empty / "DVSGesture" / "ibmGestureTrain") in msg and "ibmGestureTest" in msg and "figshare" in msg
    bad = sorted(train)[1]
    with open(bad, "r+b") as f:
        f.truncate(os.path.getsize(bad) - 17)
    dm = DVSGestureDataModule(root, cache="none")
    dm.setup("fit")
    with pytest.raises(CorruptFileError, match=bad):
        dm.dataset("train")[1]
    with pytest.raises(ValueError, match="spatial_size"):
        DVSGestureDataModule(root, spatial_size=0)
    with pytest.raises(ValueError, match="time_window_ms"):
        DVSGestureDataModule(root, time_window_ms=-5.0)
    with pytest.raises(ValueError, match="denoise_ms"):
        DVSGestureDataModule(root, denoise_ms=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        DVSGestureDataModule(root, batch_size=-2)


# ------------------------------------------------------------------------------- N-MNIST
@pytest.fixture()
def nmnist_root(tmp_path):
    rng = np.random.default_rng(3)
    out = {}
    for train, digits in ((True, [0, 1, 2, 7]), (False, [4, 9])):
        for i, d in enumerate(digits):
            n = int(rng.integers(20, 200))
            x, y, p = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
            t = np.sort(rng.integers(0, 40_000, n))
            out[write_nmnist_sample(str(tmp_path), train, d, i, x, y, p, t)] = (d, x, y, p, t)
    return str(tmp_path), out


def test_nmnist_batch_matches_written_events(nmnist_root):
    root, files = nmnist_root
    dm = NMNISTDataModule(root, time_window_ms=2.0, max_duration_ms=30.0, batch_size=4, cache="none")
    assert dm.num_classes == 10 and dm.input_shape == (2, 34, 34) and dm.n_time_steps == 15
    dm.prepare_data()
    x, y, lengths = next(iter(dm.test_dataloader()))
    test_paths = sorted(p for p in files if f"{os.sep}Test{os.sep}" in p)
    assert y.tolist() == [files[p][0] for p in test_paths] == [4, 9]
    for b, path in enumerate(test_paths):
        d, xx, yy, pp, tt = files[path]
        T = int(tt[tt < 30_000].max() // 2000) + 1
        e = np.zeros((T, 2, 34, 34), np.float32)
        keep = tt < 30_000
        np.add.at(e, (tt[keep] // 2000, pp[keep], yy[keep], xx[keep]), 1)
        assert lengths[b] == T
        assert torch.equal(x[b, :T], torch.from_numpy(e)) and torch.all(x[b, T:] == 0)
    dm = NMNISTDataModule(root, n_time_bins=4, max_duration_ms=40.0, batch_size=4, cache="none")
    x, _, lengths = next(iter(dm.test_dataloader()))
    assert lengths.tolist() == [4, 4] and x.shape == (2, 4, 2, 34, 34)
    assert int(x.sum()) == sum(len(files[p][4]) for p in test_paths)


def test_nmnist_errors(nmnist_root, tmp_path):
    root, files = nmnist_root
    bad = sorted(files)[0]
    with open(bad, "ab") as f:
        f.write(b"\x01\x02")
    dm = NMNISTDataModule(root, cache="none")
    dm.setup("test")
    assert f"{os.sep}Test{os.sep}" in bad  # 'Test' sorts before 'Train'
    with pytest.raises(CorruptFileError, match=f"{bad} has .* not a multiple of 5"):
        dm.dataset("test")[0]
    (tmp_path / "n" / "NMNIST" / "Train").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="train.zip.*mendeley"):
        NMNISTDataModule(str(tmp_path / "n")).prepare_data()
    with pytest.raises(ValueError, match="time_window_ms .* or n_time_bins"):
        NMNISTDataModule(root, time_window_ms=1.0, n_time_bins=3)


# ------------------------------------------------------------------------------- CIFAR10-DVS
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_cifar10dvs_with_replaced_reader(tmp_path, monkeypatch):
    import tonic.datasets.cifar10dvs as c10

    rng = np.random.default_rng(5)
    known = {}
    for label, cls in enumerate(CLASSES):
        os.makedirs(tmp_path / "CIFAR10DVS" / cls)
        for j in range(2):
            path = str(tmp_path / "CIFAR10DVS" / cls / f"cifar10_{cls}_{j}.aedat4")
            open(path, "wb").close()  # placeholder: the reader below is replaced
            n = int(rng.integers(30, 150))
            ev = np.zeros(n, dtype=c10.CIFAR10DVS.dtype)
            ev["t"] = np.sort(rng.integers(0, 200_000, n)) + 10**6
            ev["x"], ev["y"], ev["p"] = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
            known[path] = (label, ev)

    def fake_read_aedat4(path):
        ev = known[str(path)][1].copy()
        ev.dtype.names = ("timestamp", "x", "y", "polarity")  # as the aedat package names them
        return ev

    monkeypatch.setattr(c10, "read_aedat4", fake_read_aedat4)
    dm = CIFAR10DVSDataModule(str(tmp_path), test_fraction=0.2, batch_size=8, cache="none")
    assert dm.num_classes == 10 and dm.input_shape == (2, 48, 48) and dm.n_time_steps == 10
    dm.prepare_data()
    dm.setup("fit")
    train, test = dm.dataset("train"), dm.dataset("test")
    assert len(train) == 16 and len(test) == 4 and not set(train.indices) & set(test.indices)
    x, y, lengths = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 10, 2, 48, 48) and lengths.tolist() == [10] * 4
    src = test.dataset.source
    for b, i in enumerate(test.indices):
        label, ev = known[src.sample_file(i)]
        assert y[b] == label
        t = ev["t"].astype(np.int64)
        t0, span = t.min(), t.max() - t.min() + 1
        e = _frames(ev["x"], ev["y"], ev["p"], t, t0, span / 10, 10, 48)
        assert torch.equal(x[b], torch.from_numpy(e))
    with pytest.raises(ValueError, match="test_fraction"):
        CIFAR10DVSDataModule(str(tmp_path), test_fraction=0.0)
    os.remove(next(p for p in known if "truck" in p))
    os.remove(next(p for p in known if "truck" in p and os.path.exists(p)))
    with pytest.raises(DataNotFoundError, match="truck.*CIFAR10DVS.zip"):
        CIFAR10DVSDataModule(str(tmp_path)).prepare_data()
