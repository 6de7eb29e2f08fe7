"""The packed, batch-level data path yields exactly the batches of the per-sample path (tonic's reader,
tonic's transforms, one sample at a time, padded by ``pad_collate``), bit for bit, for every dataset
format and cache mode: shuffled training batches, validation and test, after a mid-epoch resume, on
each of two DDP ranks, and under a Trainer (compact batches made dense in ``on_after_batch_transfer``)."""

from __future__ import annotations

import os

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import exodus_lightning.resume as resume
from exodus_lightning.data import (
    CIFAR10DVSDataModule,
    CompactBatch,
    DVSGestureDataModule,
    NMNISTDataModule,
    SHDDataModule,
    SSCDataModule,
    pad_collate,
)
from exodus_lightning.data import _tonic
from exodus_lightning.data.dataset_writers import random_dvs_events, write_dvsgesture_sample, write_nmnist_sample, write_shd, write_ssc
from tests.tonic_reference import tonic_frames


# --------------------------------------------------------------------------------- data sets
def _hsd_split(rng, n, n_classes):
    """Spikes on and beside the 10 ms / 7 ms bin edges, plus random ones."""
    times, units, labels = [], [], []
    for i in range(n):
        k = int(rng.integers(5, 400))
        t = np.concatenate([rng.uniform(0, rng.uniform(0.05, 1.5), k), rng.integers(0, 140, 20) * 0.01,
                            rng.integers(0, 200, 10) * 0.007])
        times.append(np.sort(t).astype(np.float32))
        units.append(rng.integers(0, 700, len(t)).astype(np.uint16))
        labels.append(i % n_classes)
    return times, units, labels


def _shd(root, rng):
    write_shd(root, "train", *_hsd_split(rng, 23, 20))
    write_shd(root, "test", *_hsd_split(rng, 9, 20))


def _ssc(root, rng):
    for split, n in (("train", 17), ("valid", 6), ("test", 7)):
        write_ssc(root, split, *_hsd_split(rng, n, 35))


def _dvs(root, rng):
    for train, users in ((True, 3), (False, 1)):
        for u in range(1, users + 1):
            for label in range(11):
                n = int(rng.integers(1, 3000))
                ev = random_dvs_events(n, int(rng.integers(5, 1800)), rng, t_offset_ms=int(rng.integers(0, 10**6)))
                write_dvsgesture_sample(root, train, u, "lab", label, ev)


def _nmnist(root, rng):
    for train, per_digit in ((True, 2), (False, 1)):
        for d in range(10):
            for i in range(per_digit):
                n = int(rng.integers(0, 400))
                write_nmnist_sample(root, train, d, i, rng.integers(0, 34, n), rng.integers(0, 34, n),
                                    rng.integers(0, 2, n), np.sort(rng.integers(0, 320_000, n)))


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _cifar(root, rng, monkeypatch):
    """.aedat4 files cannot be written here (the aedat package only decodes): tonic's reader is replaced
    by one returning known events for each placeholder file; everything after it is the real path."""
    import tonic.datasets.cifar10dvs as c10

    known = {}
    for cls in CIFAR_CLASSES:
        os.makedirs(os.path.join(root, "CIFAR10DVS", cls))
        for j in range(3):
            path = os.path.join(root, "CIFAR10DVS", cls, f"cifar10_{cls}_{j}.aedat4")
            open(path, "wb").close()
            n = int(rng.integers(1, 2000))
            ev = np.zeros(n, dtype=c10.CIFAR10DVS.dtype)
            ev["t"] = np.sort(rng.integers(0, 1_300_000, n)) + 10**6
            ev["x"], ev["y"], ev["p"] = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
            known[path] = ev

    def read_aedat4(path):
        ev = known[str(path)].copy()
        ev.dtype.names = ("timestamp", "x", "y", "polarity")
        return ev

    monkeypatch.setattr(c10, "read_aedat4", read_aedat4)


FORMATS = {
    "shd": (_shd, lambda root, **kw: SHDDataModule(root, time_window_ms=10.0, n_channels=100, batch_size=5, **kw),
            lambda root, split: _tonic.SHD(root, train=split == "train")),
    "shd-bins": (_shd, lambda root, **kw: SHDDataModule(root, n_time_bins=37, n_channels=700, max_duration_ms=1000.0,
                                                         batch_size=4, val_fraction=0.25, **kw),
                 lambda root, split: _tonic.SHD(root, train=split == "train")),
    "ssc": (_ssc, lambda root, **kw: SSCDataModule(root, time_window_ms=7.0, n_channels=128, batch_size=4, **kw),
            lambda root, split: _tonic.SSC(root, split=split)),
    "dvs32": (_dvs, lambda root, **kw: DVSGestureDataModule(root, time_window_ms=5.0, spatial_size=32, batch_size=6, **kw),
              lambda root, split: _tonic.DVSGesture(root, train=split == "train")),
    "dvs128": (_dvs, lambda root, **kw: DVSGestureDataModule(root, time_window_ms=20.0, max_duration_ms=None,
                                                             spatial_size=128, batch_size=3, **kw),
               lambda root, split: _tonic.DVSGesture(root, train=split == "train")),
    "nmnist": (_nmnist, lambda root, **kw: NMNISTDataModule(root, time_window_ms=3.0, max_duration_ms=250.0, batch_size=7, **kw),
               lambda root, split: _tonic.NMNIST(root, train=split == "train")),
    "cifar": (None, lambda root, **kw: CIFAR10DVSDataModule(root, n_time_bins=10, spatial_size=48, batch_size=6,
                                                            val_fraction=0.1, **kw),
              lambda root, split: _tonic.CIFAR10DVS(root)),
}


@pytest.fixture(params=list(FORMATS))
def fmt(request, tmp_path, monkeypatch):
    write, make_dm, make_source = FORMATS[request.param]
    root = str(tmp_path / "data")
    rng = np.random.default_rng(abs(hash(request.param)) % 2**32)
    if write is None:
        _cifar(root, rng, monkeypatch)
    else:
        write(root, rng)
    return root, make_dm, make_source


class Reference:
    """Per-sample frames through tonic's reader and transforms (independent of the packed path)."""

    def __init__(self, root, dm, make_source):
        self.params = dm._binner().params()
        self.raw = {s: make_source(root, s) for s in dm.raw_splits}
        self._memo = {}

    def sample(self, raw_split, i):
        key = (raw_split, i)
        if key not in self._memo:
            events, label = self.raw[raw_split][i]
            frames = tonic_frames(events, **self.params)
            self._memo[key] = (torch.from_numpy(frames.astype(np.float32)), int(label))
        return self._memo[key]

    def batch(self, dataset, positions):
        """The reference batch of ``dataset`` (an EventSplit or a Subset of one) at ``positions``."""
        raw = dataset.dataset if isinstance(dataset, Subset) else dataset
        idx = [dataset.indices[p] for p in positions] if isinstance(dataset, Subset) else list(positions)
        split = next(s for s, src in self.raw.items() if src is raw.source.source or _same_files(src, raw.source.source))
        return pad_collate([self.sample(split, i) for i in idx])


def _same_files(a, b):
    return type(a) is type(b) and [a.sample_file(i) for i in range(len(a))] == [b.sample_file(i) for i in range(len(b))]


def _assert_same(got, want):
    assert got.x.dtype == torch.float32 and got.x.shape == want.x.shape
    assert torch.equal(got.x, want.x)
    assert torch.equal(got.y, want.y) and torch.equal(got.lengths, want.lengths)


def _positions(loader):
    pos = list(loader.sampler) if loader.sampler is not None else []
    size = loader.batch_size
    return [pos[i:i + size] for i in range(0, len(pos), size)]


@pytest.mark.parametrize("cache", ["disk", "memory", "none", "device"])
def test_every_loader_matches_the_per_sample_path(fmt, cache, tmp_path):
    root, make_dm, make_source = fmt
    dm = make_dm(root, cache=cache, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup("fit")
    ref = Reference(root, dm, make_source)
    for split, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        if split == "train":
            loader.sampler.set_epoch(1)
        batches = list(loader)
        positions = _positions(loader)
        assert len(batches) == len(positions) > 0
        for got, pos in zip(batches, positions):
            _assert_same(got, ref.batch(dm.dataset(split), pos))
    # single samples (dataset[i]) too
    ds = dm.dataset("test")
    x, y = ds[len(ds) - 1]
    want = ref.batch(ds, [len(ds) - 1])
    assert torch.equal(x, want.x[0, : int(want.lengths[0])]) and y == int(want.y[0])


def test_mid_epoch_resume_and_ddp_ranks(fmt, tmp_path, monkeypatch):
    root, make_dm, make_source = fmt
    dm = make_dm(root, cache="disk", cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    ref = Reference(root, dm, make_source)
    train = dm.dataset("train")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    full = list(loader)
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    again = make_dm(root, cache="disk", cache_dir=str(tmp_path / "cache"))
    resumed = again.train_dataloader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(full) - 2
    for got, want in zip(rest, full[2:]):
        _assert_same(got, want)
    seen = []
    for rank in range(2):
        monkeypatch.setattr(resume, "_world", lambda r=rank: (2, r))
        shard = make_dm(root, cache="disk", cache_dir=str(tmp_path / "cache")).train_dataloader()
        shard.sampler.set_epoch(3)
        for got, pos in zip(shard, _positions(shard)):
            _assert_same(got, ref.batch(train, pos))
            seen += pos
    assert set(seen) == set(range(len(train)))


class _Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)
        self.batches = {"train": [], "val": []}

    def _record(self, stage, batch):
        assert not isinstance(batch, CompactBatch)
        self.batches[stage].append(tuple(t.clone() for t in batch))
        return self.lin(batch.x.sum().reshape(1, 1)).sum() * 0

    def training_step(self, batch, batch_idx):
        return self._record("train", batch)

    def validation_step(self, batch, batch_idx):
        self._record("val", batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("name", ["shd", "dvs32"])
def test_trainer_gets_dense_batches_equal_to_the_per_sample_path(name, tmp_path):
    write, make_dm, make_source = FORMATS[name]
    root = str(tmp_path / "data")
    write(root, np.random.default_rng(1))
    dm = make_dm(root, cache="disk", cache_dir=str(tmp_path / "cache"))
    model = _Recorder()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert isinstance(next(iter(dm.train_dataloader())), CompactBatch)  # attached to the Trainer: compact
    ref = Reference(root, dm, make_source)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    for got, pos in zip(model.batches["train"], _positions(loader), strict=True):
        _assert_same(type(ref.batch(dm.dataset("train"), pos))(*got), ref.batch(dm.dataset("train"), pos))
    val = dm.dataset("val")
    for got, pos in zip(model.batches["val"], _positions(dm.val_dataloader()), strict=True):
        _assert_same(type(ref.batch(val, pos))(*got), ref.batch(val, pos))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_densify_on_the_gpu_equals_the_host(tmp_path):
    write, make_dm, _ = FORMATS["dvs32"]
    root = str(tmp_path / "data")
    write(root, np.random.default_rng(2))
    host = make_dm(root, cache="disk", cache_dir=str(tmp_path / "cache"))
    host.setup("fit")
    gpu = make_dm(root, cache="disk", cache_dir=str(tmp_path / "cache"))
    gpu.setup("fit")
    gpu._raw = {s: type(d)(d.source, d.packed.to("cuda")) for s, d in gpu._raw.items()}
    gpu._splits.clear()
    gpu._split_raw()
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for idx in ([0, 3, 5], [7], list(range(len(gpu.dataset("test"))))):
            a = host.dataset("test").__getitems__(idx).densify(dtype)
            compact = host.dataset("test").__getitems__(idx)
            b = CompactBatch(*(t.to("cuda", non_blocking=True) if torch.is_tensor(t) else t for t in compact)).densify(dtype)
            assert b.x.device.type == "cuda" and torch.equal(a.x, b.x.cpu())
            assert torch.equal(a.y, b.y.cpu()) and torch.equal(a.lengths, b.lengths.cpu())
