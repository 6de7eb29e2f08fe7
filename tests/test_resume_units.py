"""Pieces of the exact resume: the sampler's order, the loader's position, the RNG states."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from exodus_lightning.resume import ResumableDataLoader, ResumableSampler, rng_state, set_rng_state


def test_sampler_order_is_a_function_of_seed_and_epoch():
    a = ResumableSampler(range(50), seed=7)
    b = ResumableSampler(range(50), seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    assert sorted(a) == list(range(50))


def test_sampler_shards_are_disjoint_and_cover():
    shards = [list(ResumableSampler(range(40), seed=1, num_replicas=4, rank=r)) for r in range(4)]
    flat = sum(shards, [])
    assert sorted(flat) == list(range(40))
    assert all(len(s) == 10 for s in shards)


def test_sampler_start_applies_once():
    s = ResumableSampler(range(20), seed=2)
    full = list(s)
    s.set_start(5)
    assert list(s) == full[5:]
    assert list(s) == full
    with pytest.raises(ValueError, match="start must be >= 0"):
        s.set_start(-1)


def test_loader_resumes_mid_epoch_without_loading_skipped_batches():
    data = TensorDataset(torch.arange(30))
    loader = ResumableDataLoader(data, batch_size=4, seed=5)
    loader.sampler.set_epoch(2)
    full = [b[0].tolist() for b in loader]
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches_consumed": 3, "seed": 5, "world_size": 1}

    fresh = ResumableDataLoader(data, batch_size=4, seed=5)
    fresh.load_state_dict(state)
    rest = [b[0].tolist() for b in fresh]
    assert rest == full[3:]
    # the following epoch starts at the beginning again
    assert [b[0].tolist() for b in fresh] == full


def test_loader_position_from_the_trainer_counter():
    loader = ResumableDataLoader(TensorDataset(torch.arange(12)), batch_size=2)
    it = iter(loader)
    next(it), next(it), next(it)  # one batch fetched ahead of training
    loader.attach_progress(lambda: 2)
    assert loader.state_dict()["batches_consumed"] == 2


def test_loader_rejects_other_world_size_and_samplers():
    loader = ResumableDataLoader(TensorDataset(torch.arange(12)), batch_size=2)
    with pytest.raises(ValueError, match="saved with world size 2, this run has 1"):
        loader.load_state_dict({"epoch": 0, "batches_consumed": 1, "seed": 0, "world_size": 2})
    with pytest.raises(ValueError, match="do not pass sampler"):
        ResumableDataLoader(TensorDataset(torch.arange(12)), sampler=[0, 1])


def test_worker_seeds_do_not_touch_the_global_generator():
    loader = ResumableDataLoader(TensorDataset(torch.arange(12)), batch_size=2, num_workers=0)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    list(loader)
    assert torch.equal(torch.get_rng_state(), before)


def test_rng_state_round_trip():
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
