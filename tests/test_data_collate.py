"""pad_collate: the batch convention, for lists of samples and for compact batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exodus_lightning.data import Batch, CompactBatch, pad_collate


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


def test_pad_collate_makes_compact_batches_dense():
    compact = CompactBatch(cells=torch.tensor([1, 4, 0]), counts=torch.tensor([2, 1, 5], dtype=torch.uint8),
                           entries=torch.tensor([2, 1]), y=torch.tensor([3, 1]), lengths=torch.tensor([2, 1]),
                           n_steps=2, feature_shape=(3,))
    x, y, lengths = pad_collate(compact)
    assert x.tolist() == [[[0, 2, 0], [0, 1, 0]], [[5, 0, 0], [0, 0, 0]]]
    assert y.tolist() == [3, 1] and lengths.tolist() == [2, 1]
