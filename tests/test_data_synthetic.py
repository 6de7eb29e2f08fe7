"""Embedded datasets: SpikePatterns (timing-only classification) and Poisson spike-train fitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exodus_lightning.data import PoissonSpikeFitDataModule, SpikePatternsDataModule, SpikePatternsDataset


@pytest.fixture()
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention on a shared machine
    yield
    torch.set_num_threads(n)


def _stack(ds):
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs), torch.tensor(ys)


def _generated_one_by_one(ds, index):
    """The generator as it was before the packed path: one sample, dense, straight from its RNG."""
    T, C = ds.n_time_steps, ds.n_channels
    rng = np.random.default_rng([ds.seed, {"train": 0, "val": 1, "test": 2}[ds.split], index])
    x = np.zeros((T, C), dtype=np.float32)
    shift = rng.integers(-ds.max_shift, ds.max_shift + 1)
    times = ds.templates[index % ds.n_classes] + shift + rng.normal(0.0, ds.jitter, size=(C, ds.k))
    moved = rng.random((C, ds.k)) < ds.replace_prob
    times[moved] = rng.uniform(0, T, size=int(moved.sum()))
    t_idx = np.clip(np.floor(times), 0, T - 1).astype(np.int64)
    np.add.at(x, (t_idx.ravel(), np.broadcast_to(np.arange(C)[:, None], (C, ds.k)).ravel()), 1.0)
    n_noise = rng.poisson(ds.noise_prob * T * C)
    if n_noise:
        np.add.at(x, (rng.integers(0, T, n_noise), rng.integers(0, C, n_noise)), 1.0)
    for _ in range(ds.n_distractors):
        dt, dch = ds.distractors[int(rng.integers(len(ds.distractors)))]
        onset = int(rng.integers(0, T - ds.d_len + 1))
        np.add.at(x, (onset + dt, dch), 1.0)
    return torch.from_numpy(x)


def test_spike_patterns_batches_equal_the_one_by_one_generator():
    dm = SpikePatternsDataModule(n_train=50, n_val=10, n_test=10, batch_size=16, noise_prob=0.05, spikes_per_channel=2)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    order = list(loader.sampler)
    ds = dm.dataset("train")
    for b, batch in enumerate(loader):
        idx = order[16 * b: 16 * b + 16]
        want = torch.stack([_generated_one_by_one(ds, i) for i in idx])
        assert torch.equal(batch.x, want) and batch.y.tolist() == [i % 20 for i in idx]
        assert batch.lengths.tolist() == [150] * len(idx)
    assert any(float(_generated_one_by_one(ds, i).max()) > 1 for i in range(50))  # repeated cells counted


def test_spike_patterns_shapes_and_determinism():
    dm = SpikePatternsDataModule(n_train=40, n_val=20, n_test=20, batch_size=8)
    assert dm.num_classes == 20 and dm.input_shape == (100,) and dm.n_time_steps == 150
    x, y, lengths = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 150, 100) and x.dtype == torch.float32
    assert y.dtype == torch.long and lengths.tolist() == [150] * 8
    a = SpikePatternsDataModule(seed=3).dataset("train")
    b = SpikePatternsDataModule(seed=3).dataset("train")
    c = SpikePatternsDataModule(seed=4).dataset("train")
    assert torch.equal(a[5][0], b[5][0]) and not torch.equal(a[5][0], c[5][0])
    assert not torch.equal(a[5][0], SpikePatternsDataModule(seed=3).dataset("val")[5][0])
    # every class puts exactly one template spike on every channel, so with noise and
    # distractors switched off the per-channel counts are identical for all samples
    quiet = SpikePatternsDataset(60, noise_prob=0.0, n_distractors=0)
    X, Y = _stack(quiet)
    assert torch.all(X.sum(1) == 1) and len(set(Y.tolist())) == 20


def _fit_eval(ftr, ytr, fva, yva, hidden, steps=150):
    torch.manual_seed(0)
    d = ftr.shape[1]
    m = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 20)) if hidden else torch.nn.Linear(d, 20)
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    opt = torch.optim.Adam(m.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m((ftr - mu) / sd), ytr).backward()
        opt.step()
    with torch.no_grad():
        return (m((fva - mu) / sd).argmax(1) == yva).float().mean().item()


def test_counts_carry_no_class_information_but_timing_does(one_thread):
    """Timing-blind baseline (time-summed counts -> MLP) stays at chance (<= 30 %), while a
    timing-aware linear model on counts in 5 time bins of 30 steps clearly solves the task.
    (A spiking network is not trained here; that belongs to the model tests.)"""
    dm = SpikePatternsDataModule(n_train=800, n_val=400)
    Xtr, ytr = _stack(dm.dataset("train"))
    Xva, yva = _stack(dm.dataset("val"))
    blind = _fit_eval(Xtr.sum(1), ytr, Xva.sum(1), yva, hidden=64)
    binned = lambda X: X.reshape(X.shape[0], 5, 30, X.shape[2]).sum(2).flatten(1)  # noqa: E731
    timing = _fit_eval(binned(Xtr), ytr, binned(Xva), yva, hidden=0)
    assert blind <= 0.30, blind
    assert timing >= 0.80, timing


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(n_train=0), "n_train"),
        (dict(n_classes=1), "n_classes"),
        (dict(noise_prob=1.5), "noise_prob"),
        (dict(n_time_steps=20), "n_time_steps"),
        (dict(num_workers=-1), "num_workers"),
    ],
)
def test_spike_patterns_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        SpikePatternsDataModule(**kwargs)


def test_spike_patterns_unknown_split():
    with pytest.raises(ValueError, match="split"):
        SpikePatternsDataModule().dataset("dev")
    with pytest.raises(ValueError, match="split"):
        SpikePatternsDataset(4, split="dev")


def test_poisson_fit_task():
    dm = PoissonSpikeFitDataModule(seed=1, samples_per_epoch=3, batch_size=3)
    assert dm.input_shape == (250,) and dm.n_time_steps == 200 and dm.n_outputs == 1
    x, y, lengths = next(iter(dm.train_dataloader()))
    assert x.shape == (3, 200, 250) and y.shape == (3, 200, 1) and lengths.tolist() == [200] * 3
    assert set(x.unique().tolist()) <= {0.0, 1.0} and torch.equal(x[0], x[2])
    assert y[0].sum() == 4 and torch.equal(torch.nonzero(y[0, :, 0]).flatten(), dm.target_steps)
    rate = x[0].mean().item() * 1000  # Hz at 1 ms steps
    assert 15 < rate < 25
    same = PoissonSpikeFitDataModule(seed=1)
    other = PoissonSpikeFitDataModule(seed=2)
    assert torch.equal(same.inputs, dm.inputs) and torch.equal(same.target, dm.target)
    assert not torch.equal(other.inputs, dm.inputs)
    with pytest.raises(ValueError, match="n_target_spikes"):
        PoissonSpikeFitDataModule(n_target_spikes=0)
    with pytest.raises(ValueError, match="batch_size"):
        PoissonSpikeFitDataModule(batch_size=0)
