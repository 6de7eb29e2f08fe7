"""SpikePatterns: an embedded, deterministic temporal classification task (no download).

Each class owns a spatio-temporal template: every channel fires ``spikes_per_channel`` spikes at
class-specific times. A sample of class ``c`` is the template of ``c`` with

* a global onset shift (uniform in ``[-max_shift_steps, max_shift_steps]``),
* Gaussian jitter of every spike time (std ``jitter_steps``),
* each template spike moved to a uniformly random time with probability ``spike_replace_prob``,
* background noise: Poisson spikes (probability ``noise_prob`` per channel and step),
* ``n_distractors`` distractor patterns: short spatio-temporal patterns drawn from a bank shared by
  all classes, inserted at random times.

Because every class puts exactly ``spikes_per_channel`` spikes on every channel (times are
clipped to the window, never dropped) and noise and distractors do not depend on the class, the
per-channel spike counts of a sample carry **no** class information: a timing-blind model (an MLP
on time-summed counts) is at chance level (1 / n_classes), while a model that uses spike timing can
solve the task (tested in ``tests/test_data_synthetic.py``).

Every sample is a function of ``(seed, split, index)``, so every worker and rank produces identical
data. A split is generated once, on first use, into a packed form (a few bytes per spike) from which
whole batches are gathered, like the event datasets' packed caches.
"""

from __future__ import annotations

from typing import Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..resume import ResumableDataLoader
from .binning import BinnedEvents
from .compact import CompactBatch
from .dense_on_device import DenseOnDevice
from .packed import PackedSplit

__all__ = ["SpikePatternsDataset", "SpikePatternsDataModule"]

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


class SpikePatternsDataset(Dataset):
    """``n_samples`` samples ``(x float32 (T, C), label int)``; see the module docstring.

    Args:
        n_samples: number of samples.
        split: ``"train"``, ``"val"`` or ``"test"`` (different samples, same class templates).
        seed: seed of the templates and of the samples.
        n_channels: input channels ``C``.
        n_classes: number of classes (labels are ``index % n_classes``, balanced).
        n_time_steps: sequence length ``T``.
        spikes_per_channel: template spikes per channel (the same for every class).
        jitter_steps: std of the per-spike Gaussian jitter (steps).
        max_shift_steps: largest global onset shift (steps).
        spike_replace_prob: probability to move a template spike to a random time.
        noise_prob: background spike probability per channel and step.
        n_distractors: distractor patterns per sample.
        distractor_bank: size of the class-independent distractor bank.
    """

    def __init__(
        self,
        n_samples: int,
        split: str = "train",
        seed: int = 0,
        n_channels: int = 100,
        n_classes: int = 20,
        n_time_steps: int = 150,
        spikes_per_channel: int = 1,
        jitter_steps: float = 3.0,
        max_shift_steps: int = 15,
        spike_replace_prob: float = 0.3,
        noise_prob: float = 0.01,
        n_distractors: int = 3,
        distractor_bank: int = 10,
    ) -> None:
        if split not in _SPLIT_IDS:
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        _check_positive_ints(
            n_samples=n_samples, n_channels=n_channels, n_classes=n_classes, n_time_steps=n_time_steps,
            spikes_per_channel=spikes_per_channel, distractor_bank=distractor_bank,
        )
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes!r}")
        if jitter_steps < 0:
            raise ValueError(f"jitter_steps must be >= 0, got {jitter_steps!r}")
        if not isinstance(max_shift_steps, int) or max_shift_steps < 0:
            raise ValueError(f"max_shift_steps must be an integer >= 0, got {max_shift_steps!r}")
        if not 0.0 <= spike_replace_prob <= 1.0:
            raise ValueError(f"spike_replace_prob must be in [0, 1], got {spike_replace_prob!r}")
        if not 0.0 <= noise_prob < 1.0:
            raise ValueError(f"noise_prob must be in [0, 1), got {noise_prob!r}")
        if not isinstance(n_distractors, int) or n_distractors < 0:
            raise ValueError(f"n_distractors must be an integer >= 0, got {n_distractors!r}")
        margin = max_shift_steps + 2.0 * jitter_steps
        if n_time_steps - 2 * margin < 4:
            raise ValueError(
                f"n_time_steps={n_time_steps} is too short for max_shift_steps={max_shift_steps} and jitter_steps={jitter_steps}"
            )
        self.n_samples = n_samples
        self.split = split
        self.seed = seed
        self.n_channels = n_channels
        self.n_classes = n_classes
        self.n_time_steps = n_time_steps
        self.k = spikes_per_channel
        self.jitter = float(jitter_steps)
        self.max_shift = max_shift_steps
        self.replace_prob = float(spike_replace_prob)
        self.noise_prob = float(noise_prob)
        self.n_distractors = n_distractors
        rng = np.random.default_rng([seed, 12345])
        # class templates (n_classes, C, k): times in [margin, T - margin)
        self.templates = rng.uniform(margin, n_time_steps - margin, size=(n_classes, n_channels, spikes_per_channel))
        # distractor bank: each one spike on 20% of the channels within a 30-step window
        d_len = min(30, n_time_steps)
        n_ch = max(1, n_channels // 5)
        self.d_len = d_len
        self.distractors = [
            (rng.integers(0, d_len, size=n_ch), rng.choice(n_channels, size=n_ch, replace=False))
            for _ in range(distractor_bank)
        ]
        self._packed: PackedSplit | None = None

    def __len__(self) -> int:
        return self.n_samples

    def label(self, index: int) -> int:
        """Label of sample ``index``."""
        return int(index % self.n_classes)

    def spikes(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The spikes of sample ``index`` as ``(time step, channel)`` arrays (a step may repeat)."""
        if not 0 <= index < self.n_samples:
            raise IndexError(index)
        T, C = self.n_time_steps, self.n_channels
        label = self.label(index)
        rng = np.random.default_rng([self.seed, _SPLIT_IDS[self.split], int(index)])
        shift = rng.integers(-self.max_shift, self.max_shift + 1)
        times = self.templates[label] + shift + rng.normal(0.0, self.jitter, size=(C, self.k))
        moved = rng.random((C, self.k)) < self.replace_prob
        times[moved] = rng.uniform(0, T, size=int(moved.sum()))
        steps = [np.clip(np.floor(times), 0, T - 1).astype(np.int64).ravel()]
        channels = [np.broadcast_to(np.arange(C)[:, None], (C, self.k)).ravel()]
        n_noise = rng.poisson(self.noise_prob * T * C)
        if n_noise:
            steps.append(rng.integers(0, T, n_noise))
            channels.append(rng.integers(0, C, n_noise))
        for _ in range(self.n_distractors):
            dt, dch = self.distractors[int(rng.integers(len(self.distractors)))]
            onset = int(rng.integers(0, T - self.d_len + 1))
            steps.append(onset + dt)
            channels.append(dch)
        return np.concatenate(steps), np.concatenate(channels)

    @property
    def packed(self) -> PackedSplit:
        """All samples, generated on first use and packed (cell = step * n_channels + channel)."""
        if self._packed is None:
            binned = []
            for i in range(self.n_samples):
                steps, channels = self.spikes(i)
                cells, counts = np.unique(steps * self.n_channels + channels, return_counts=True)
                binned.append(BinnedEvents(cells, counts, self.n_time_steps))
            labels = [self.label(i) for i in range(self.n_samples)]
            self._packed = PackedSplit.from_binned(binned, labels, (self.n_channels,))
        return self._packed

    def __getitems__(self, indices: Sequence[int]) -> CompactBatch:
        return self.packed.gather(indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.n_samples:
            raise IndexError(index)
        x, y, _ = self.__getitems__([index]).densify()
        return x[0], int(y[0])


def _check_positive_ints(**kw: int) -> None:
    for name, v in kw.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


class SpikePatternsDataModule(DenseOnDevice, pl.LightningDataModule):
    """DataModule of the embedded SpikePatterns task (SHD-like defaults: 100 channels, 20 classes).

    Batches ``(x (B, T, C) float32, y (B,) int64, lengths (B,) int64)``; all samples have length
    ``n_time_steps``. See :class:`SpikePatternsDataset` for the generator arguments.

    Args:
        n_train: training samples.
        n_val: validation samples.
        n_test: test samples.
        seed: seed of templates and samples (the whole dataset is a function of it).
        n_channels: input channels.
        n_classes: classes.
        n_time_steps: sequence length (steps of 1 ms).
        spikes_per_channel: template spikes per channel.
        jitter_steps: per-spike jitter std (steps).
        max_shift_steps: largest global onset shift (steps).
        spike_replace_prob: probability to move a template spike to a random time.
        noise_prob: background spike probability per channel and step.
        n_distractors: class-independent distractor patterns per sample.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        n_train: int = 2000,
        n_val: int = 500,
        n_test: int = 500,
        seed: int = 0,
        n_channels: int = 100,
        n_classes: int = 20,
        n_time_steps: int = 150,
        spikes_per_channel: int = 1,
        jitter_steps: float = 3.0,
        max_shift_steps: int = 15,
        spike_replace_prob: float = 0.3,
        noise_prob: float = 0.01,
        n_distractors: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        _check_positive_ints(n_train=n_train, n_val=n_val, n_test=n_test, batch_size=batch_size)
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.num_classes = n_classes
        self.input_shape = (n_channels,)
        self.n_time_steps = n_time_steps
        self._gen = dict(
            seed=seed, n_channels=n_channels, n_classes=n_classes, n_time_steps=n_time_steps,
            spikes_per_channel=spikes_per_channel, jitter_steps=jitter_steps, max_shift_steps=max_shift_steps,
            spike_replace_prob=spike_replace_prob, noise_prob=noise_prob, n_distractors=n_distractors,
        )
        self._sizes = {"train": n_train, "val": n_val, "test": n_test}
        # validate the generator arguments now (constructing a dataset is cheap)
        SpikePatternsDataset(1, "train", **self._gen)
        self._datasets: dict[str, SpikePatternsDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        """Create the three (lazily generated) datasets."""
        if not self._datasets:
            self._datasets = {s: SpikePatternsDataset(n, s, **self._gen) for s, n in self._sizes.items()}

    def dataset(self, split: str) -> SpikePatternsDataset:
        """The dataset of ``split`` (``'train'``, ``'val'`` or ``'test'``)."""
        if split not in self._sizes:
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        self.setup()
        return self._datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        dataset.packed  # generated here, before worker processes start, so they share it
        kwargs = dict(batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self.batch_collate(),
                      persistent_workers=self.num_workers > 0)
        if shuffle:
            # Training order is a function of (seed, epoch) and its position is checkpointed
            # (exact resume, exodus_lightning.resume).
            return ResumableDataLoader(dataset, shuffle=True, seed=self.hparams.seed, **kwargs)
        return DataLoader(dataset, shuffle=False, **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches."""
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        """Test batches."""
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        """The test batches (``predict`` returns class scores for them)."""
        return self._loader("test", False)
