"""SHD / SSC DataModules on small HDF5 files in the real format, read by tonic's SHD/SSC classes."""

from __future__ import annotations

import math
import os

import h5py
import numpy as np
import pytest
import torch

from exodus_lightning.data import CorruptFileError, DataNotFoundError, SHDDataModule, SSCDataModule
from exodus_lightning.data import _tonic
from exodus_lightning.data.dataset_writers import write_shd, write_ssc

DT_MS = 5.0
N_CH = 100


def _sample(rng, label: int, n_bins: int, n_spikes: int):
    """Spikes placed in the middle of 5 ms bins (the last one in bin n_bins - 1)."""
    bins = np.sort(np.concatenate([rng.integers(0, n_bins, n_spikes - 1), [n_bins - 1]]))
    times = (bins + 0.5) * DT_MS / 1000.0
    units = rng.integers(0, 700, n_spikes)
    return times.astype(np.float32), units.astype(np.uint16)


def _make_split(rng, n, n_classes, max_bins=30):
    times, units, labels = [], [], []
    for i in range(n):
        t, u = _sample(rng, i % n_classes, n_bins=int(rng.integers(3, max_bins)), n_spikes=int(rng.integers(5, 40)))
        times.append(t)
        units.append(u)
        labels.append(i % n_classes)
    return times, units, labels


def _expected(times, units, time_window_ms=DT_MS, n_ch=N_CH, max_duration_ms=None):
    """Independent binning: bin = floor(t / dt), channel = floor(unit * n_ch / 700)."""
    t_us = np.asarray(times, dtype=np.float64) * 1e6
    keep = np.ones(len(t_us), bool) if max_duration_ms is None else t_us < max_duration_ms * 1e3
    b = np.floor(t_us[keep] / (time_window_ms * 1000)).astype(int)
    c = units[keep].astype(int) * n_ch // 700
    T = b.max() + 1
    out = np.zeros((T, n_ch), np.float32)
    np.add.at(out, (b, c), 1)
    return out


@pytest.fixture()
def shd_root(tmp_path):
    rng = np.random.default_rng(0)
    train = _make_split(rng, 12, 20)
    test = _make_split(rng, 5, 20)
    write_shd(str(tmp_path), "train", *train)
    write_shd(str(tmp_path), "test", *test)
    return str(tmp_path), train, test


def test_shd_batch_matches_written_events(shd_root):
    root, train, test = shd_root
    dm = SHDDataModule(root, time_window_ms=DT_MS, n_channels=N_CH, max_duration_ms=1000.0, batch_size=5, cache="none")
    assert dm.num_classes == 20 and dm.input_shape == (N_CH,) and dm.n_time_steps == 200
    dm.prepare_data()
    dm.setup("test")
    x, y, lengths = next(iter(dm.test_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.long and lengths.dtype == torch.long
    exp = [_expected(t, u) for t, u in zip(test[0], test[1])]
    assert lengths.tolist() == [e.shape[0] for e in exp]
    assert x.shape == (5, max(e.shape[0] for e in exp), N_CH)
    assert y.tolist() == test[2]
    for b, e in enumerate(exp):
        assert torch.equal(x[b, : len(e)], torch.from_numpy(e))
        assert torch.all(x[b, len(e):] == 0)  # padding


def test_shd_max_duration_and_n_time_bins(shd_root):
    root, train, test = shd_root
    dm = SHDDataModule(root, time_window_ms=DT_MS, n_channels=N_CH, max_duration_ms=50.0, batch_size=5, cache="none")
    x, _, lengths = next(iter(dm.test_dataloader()))
    for b, (t, u) in enumerate(zip(test[0], test[1])):
        e = _expected(t, u, max_duration_ms=50.0)
        assert lengths[b] == len(e) <= dm.n_time_steps == 10
        assert torch.equal(x[b, : len(e)], torch.from_numpy(e))
    # n_time_bins: 10 equal bins over [0, max_duration_ms) -> the same as bins of max_duration_ms / 10
    dm = SHDDataModule(root, n_time_bins=10, n_channels=N_CH, max_duration_ms=100.0, batch_size=5, cache="none")
    x, _, lengths = next(iter(dm.test_dataloader()))
    assert lengths.tolist() == [10] * 5 and dm.n_time_steps == 10
    for b, (t, u) in enumerate(zip(test[0], test[1])):
        e = _expected(t, u, time_window_ms=10.0, max_duration_ms=100.0)
        full = np.zeros((10, N_CH), np.float32)
        full[: len(e)] = e
        assert torch.equal(x[b], torch.from_numpy(full))


def test_shd_val_split_is_stratified_deterministic_and_disjoint(shd_root):
    root, train, _ = shd_root
    dms = [SHDDataModule(root, val_fraction=0.25, cache="none", batch_size=4) for _ in range(2)]
    for dm in dms:
        dm.setup("fit")
    tr, va = dms[0].dataset("train"), dms[0].dataset("val")
    assert len(tr) == 9 and len(va) == 3
    assert sorted(tr.indices + va.indices) == list(range(12))
    assert va.indices == dms[1].dataset("val").indices
    with pytest.raises(ValueError, match="split"):
        dms[0].dataset("validation")


def _count_reads(monkeypatch):
    """Samples read from the HDF5 files (the packed cache reads none once built)."""
    calls = {"read": 0}
    orig = _tonic._HSDMixin.read_events

    def read(self, indices):
        calls["read"] += len(indices)
        return orig(self, indices)

    monkeypatch.setattr(_tonic._HSDMixin, "read_events", read)
    return calls


def _epoch(dm):
    return sum(b.x.shape[0] for b in dm.train_dataloader())


def _packed_files(cache_dir):
    return sorted(f for f in os.listdir(cache_dir) if f.endswith(".packed"))


def test_disk_cache_is_built_once_and_a_parameter_change_makes_a_new_one(shd_root, monkeypatch, tmp_path):
    root, *_ = shd_root
    cache_dir = str(tmp_path / "cache")
    calls = _count_reads(monkeypatch)
    dm = SHDDataModule(root, time_window_ms=DT_MS, n_channels=N_CH, batch_size=4, cache="disk", cache_dir=cache_dir)
    dm.setup("fit")  # no prepare_data: setup builds the packed caches (12 train + 5 test samples)
    assert calls["read"] == 17 and len(_packed_files(cache_dir)) == 2
    first = [dm.dataset("train")[i][0] for i in range(12)]
    assert _epoch(dm) == 12 and _epoch(dm) == 12 and calls["read"] == 17  # epochs read the cache only
    # a fresh DataModule with the same parameters opens the same files (e.g. another rank)
    dm2 = SHDDataModule(root, time_window_ms=DT_MS, n_channels=N_CH, batch_size=4, cache="disk", cache_dir=cache_dir)
    dm2.setup("fit")
    assert all(torch.equal(first[i], dm2.dataset("train")[i][0]) for i in range(12))
    assert calls["read"] == 17
    # changing time_window_ms changes the cache key: rebuilt, never stale
    dm3 = SHDDataModule(root, time_window_ms=10.0, n_channels=N_CH, batch_size=4, cache="disk", cache_dir=cache_dir)
    dm3.setup("fit")
    assert _epoch(dm3) == 12 and calls["read"] == 34
    assert dm3.dataset("train")[0][0].shape[0] == math.ceil(first[0].shape[0] / 2)
    assert len([f for f in _packed_files(cache_dir) if f.startswith("SHD-train")]) == 2


def test_prepare_data_builds_cache_with_workers(shd_root, monkeypatch, tmp_path):
    root, *_ = shd_root
    cache_dir = str(tmp_path / "cache")
    dm = SHDDataModule(root, time_window_ms=DT_MS, batch_size=4, cache="disk", cache_dir=cache_dir, num_workers=2)
    dm.block_size = 3  # several blocks, so the workers share the build
    dm.prepare_data()
    assert [f.split("-")[1] for f in _packed_files(cache_dir)] == ["test", "train"]
    calls = _count_reads(monkeypatch)
    fresh = SHDDataModule(root, time_window_ms=DT_MS, batch_size=4, cache="disk", cache_dir=cache_dir)
    fresh.prepare_data()  # built: nothing to do
    fresh.setup("fit")
    assert _epoch(fresh) == 12 and calls == {"read": 0}
    # the same samples as binned without workers and without a cache
    plain = SHDDataModule(root, time_window_ms=DT_MS, batch_size=4, cache="none")
    for i in range(12):
        assert torch.equal(fresh.dataset("train")[i][0], plain.dataset("train")[i][0])


def test_damaged_cache_file_is_named_and_rebuilt(shd_root, tmp_path, caplog):
    root, *_ = shd_root
    cache_dir = str(tmp_path / "cache")
    dm = SHDDataModule(root, time_window_ms=DT_MS, batch_size=4, cache="disk", cache_dir=cache_dir)
    dm.prepare_data()
    want = [dm.dataset("train")[i][0] for i in range(12)]
    path = os.path.join(cache_dir, next(f for f in _packed_files(cache_dir) if f.startswith("SHD-train")))
    with open(path, "r+b") as f:
        f.seek(-50, os.SEEK_END)
        f.write(b"\xff" * 20)
    with caplog.at_level("WARNING"):
        again = SHDDataModule(root, time_window_ms=DT_MS, batch_size=4, cache="disk", cache_dir=cache_dir)
        again.setup("fit")
    assert f"{path} cannot be used and is rebuilt" in caplog.text and "checksum mismatch" in caplog.text
    assert all(torch.equal(want[i], again.dataset("train")[i][0]) for i in range(12))


def test_memory_cache(shd_root, monkeypatch):
    root, *_ = shd_root
    calls = _count_reads(monkeypatch)
    dm = SHDDataModule(root, batch_size=4, cache="memory")
    dm.setup("fit")
    _epoch(dm)
    _epoch(dm)
    assert calls["read"] == 17
    assert not os.path.exists(os.path.join(root, "exodus_cache"))


def test_ssc_uses_its_valid_split(tmp_path):
    rng = np.random.default_rng(1)
    splits = {s: _make_split(rng, n, 35) for s, n in (("train", 6), ("valid", 4), ("test", 3))}
    for s, v in splits.items():
        write_ssc(str(tmp_path), s, *v)
    dm = SSCDataModule(str(tmp_path), time_window_ms=DT_MS, n_channels=N_CH, batch_size=8, cache="none")
    assert dm.num_classes == 35
    dm.prepare_data()
    dm.setup("fit")
    x, y, lengths = next(iter(dm.val_dataloader()))
    assert y.tolist() == splits["valid"][2]
    assert x.shape[0] == 4 and x.shape[2] == N_CH
    for b, (t, u) in enumerate(zip(*splits["valid"][:2])):
        e = _expected(t, u)
        assert torch.equal(x[b, : len(e)], torch.from_numpy(e))
    os.remove(tmp_path / "SSC" / "ssc_valid.h5")
    with pytest.raises(DataNotFoundError, match="ssc_valid.h5"):
        SSCDataModule(str(tmp_path)).prepare_data()


# ---------------------------------------------------------------- errors
def test_missing_files_error_says_what_goes_where(tmp_path):
    write_shd(str(tmp_path), "train", *_make_split(np.random.default_rng(0), 3, 20))
    with pytest.raises(DataNotFoundError) as e:
        SHDDataModule(str(tmp_path)).prepare_data()
    msg = str(e.value)
    assert f"missing {tmp_path / 'SHD' / 'shd_test.h5'}" in msg
    assert "https://zenkelab.org/datasets/shd_test.h5.zip" in msg
    assert str(tmp_path / "SHD" / "shd_train.h5") in msg and "download=True" in msg


def test_wrong_data_dir_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        SHDDataModule(str(tmp_path / "nope")).prepare_data()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="has no SHD/ subfolder"):
        SHDDataModule(str(tmp_path / "empty")).setup("fit")
    write_shd(str(tmp_path), "train", *_make_split(np.random.default_rng(0), 3, 20))
    with pytest.raises(DataNotFoundError, match="points at the SHD folder itself.*data_dir=" + repr(str(tmp_path))):
        SHDDataModule(str(tmp_path / "SHD")).prepare_data()


def test_truncated_and_empty_files_are_named(tmp_path):
    rng = np.random.default_rng(0)
    p = write_shd(str(tmp_path), "train", *_make_split(rng, 20, 20))
    write_shd(str(tmp_path), "test", *_make_split(rng, 3, 20))
    data = open(p, "rb").read()
    with open(p, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=p):
        SHDDataModule(str(tmp_path), cache="none").setup("fit")
    open(p, "wb").close()
    with pytest.raises(CorruptFileError, match=f"{p} is empty"):
        SHDDataModule(str(tmp_path), cache="none").prepare_data()
    with h5py.File(p, "w") as f:
        f.create_dataset("labels", data=np.zeros(3))
    with pytest.raises(CorruptFileError, match="spikes/times"):
        SHDDataModule(str(tmp_path), cache="none").setup("fit")


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(num_workers=-1), "num_workers"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(cache="ram"), "cache"),
        (dict(cache="device", num_workers=2), "cache='device' .* num_workers=0"),
        (dict(time_window_ms=0.0), "time_window_ms"),
        (dict(time_window_ms=1.0, n_time_bins=10), "time_window_ms .* or n_time_bins"),
        (dict(n_time_bins=0), "n_time_bins"),
        (dict(n_channels=701), "n_channels"),
        (dict(max_duration_ms=-1.0), "max_duration_ms"),
        (dict(data_dir=""), "data_dir"),
    ],
)
def test_bad_arguments(kwargs, arg, tmp_path):
    kwargs = {"data_dir": str(tmp_path), **kwargs}
    with pytest.raises(ValueError, match=arg):
        SHDDataModule(**kwargs)


def test_hparams_and_cli_signature(tmp_path):
    dm = SHDDataModule(str(tmp_path), n_channels=100)
    assert dm.hparams["n_channels"] == 100 and dm.hparams["data_dir"] == str(tmp_path)
    from jsonargparse import ArgumentParser

    p = ArgumentParser()
    p.add_class_arguments(SHDDataModule, "data")
    cfg = p.parse_args(["--data.data_dir", str(tmp_path), "--data.n_time_bins", "50", "--data.n_channels", "100"])
    init = getattr(p, "instantiate", None)(cfg) if hasattr(p, "instantiate") else p.instantiate_classes(cfg)
    assert isinstance(init.data, SHDDataModule) and init.data.n_time_bins == 50 and init.data.time_window_ms is None


def test_download_true_uses_tonics_downloader(tmp_path, monkeypatch):
    """download=True goes through tonic's Dataset.download (replaced here: no internet)."""
    import tonic.dataset

    urls = []

    def fake_download_and_extract_archive(url, download_root, filename=None, md5=None, **kw):
        urls.append(url)
        split = "train" if "train" in filename else "test"
        write_shd(os.path.dirname(download_root), split, *_make_split(np.random.default_rng(0), 3, 20))

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fake_download_and_extract_archive)
    dm = SHDDataModule(str(tmp_path / "new"), download=True, cache="none", batch_size=3)
    dm.prepare_data()
    assert urls == ["https://zenkelab.org/datasets/shd_train.h5.zip", "https://zenkelab.org/datasets/shd_test.h5.zip"]
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).x.shape[0] == 3
