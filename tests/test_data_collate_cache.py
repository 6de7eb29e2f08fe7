"""pad_collate (batch convention) and the atomic sample cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from exodus_lightning.data import Batch, pad_collate
from exodus_lightning.data._cache import SampleCache, atomic_write_bytes


def test_pad_collate_pads_and_reports_lengths():
    a = torch.ones(3, 2)
    b = np.full((5, 2), 2, dtype=np.int16)
    batch = pad_collate([(a, 1), (b, 4)])
    assert isinstance(batch, Batch)
    x, y, lengths = batch
    assert x.shape == (2, 5, 2) and x.dtype == torch.float32
    assert y.dtype == torch.long and y.tolist() == [1, 4]
    assert lengths.dtype == torch.long and lengths.tolist() == [3, 5]
    assert torch.all(x[0, :3] == 1) and torch.all(x[0, 3:] == 0)
    assert torch.all(x[1] == 2)


def test_pad_collate_rejects_mismatched_features_and_empty():
    with pytest.raises(ValueError, match="sample 1"):
        pad_collate([(torch.zeros(2, 3), 0), (torch.zeros(2, 4), 0)])
    with pytest.raises(ValueError, match="empty"):
        pad_collate([])


def test_cache_roundtrip_and_key_changes(tmp_path):
    frames = np.zeros((4, 2, 3, 3), dtype=np.int16)
    frames[1, 0, 2, 1] = 3
    frames[3, 1, 0, 0] = 1
    c = SampleCache(str(tmp_path), "X-train", {"dt": 1.0})
    assert c.get(0) is None
    c.put(0, frames, 7)
    got, label = c.get(0)
    assert label == 7 and got.dtype == np.int16 and np.array_equal(got, frames)
    c2 = SampleCache(str(tmp_path), "X-train", {"dt": 2.0})
    assert c2.key != c.key and c2.get(0) is None
    assert SampleCache(str(tmp_path), "X-train", {"dt": 1.0}).get(0) is not None


def test_cache_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    c = SampleCache(str(tmp_path), "X-train", {"dt": 1.0})
    c.ensure_dir()

    def boom(src, dst):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        c.put(3, np.ones((2, 5), dtype=np.int16), 1)
    monkeypatch.undo()
    assert c.get(3) is None  # no partial entry under the final name
    assert [f for f in os.listdir(c.path) if f.startswith(".tmp-")] == []  # temp file removed


def test_cache_ignores_corrupt_entry(tmp_path):
    c = SampleCache(str(tmp_path), "X-train", {"dt": 1.0})
    c.ensure_dir()
    atomic_write_bytes(os.path.join(c.path, "0000000.npz"), b"garbage")
    assert c.get(0) is None


def test_memory_cache_without_root():
    c = SampleCache(None, "X", {"a": 1})
    assert c.path is None
    c.put(2, np.ones(3, dtype=np.int16), 5)
    assert c.get(2)[1] == 5
