"""Poisson spike-train fitting task of the EXODUS supplementary (section 6.5).

A 250-channel Poisson input over 200 ms (1 ms steps) and one target spike train with 4 spikes at
random times, both fixed by ``seed``; a network (e.g. 25 hidden LIF -> 1 output LIF) is trained
to emit the target train (MSE loss). The paper does not state the input rate; ``rate_hz``
defaults to 20 Hz.

The step length is called ``time_window_ms``, the name of the event DataModules' bin width: a
generated step is the same thing as a bin, one time step of the network and the physical time that
turns a time constant in ms into steps (``tau_ms / time_window_ms``, docs/architecture.md §3). The
input is the Poisson process binned at that width with at most one spike per bin
(``p = rate_hz * time_window_ms / 1000``).
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .collate import Batch

__all__ = ["make_poisson_fit_task", "PoissonSpikeFitDataModule"]


def make_poisson_fit_task(
    seed: int = 0,
    n_inputs: int = 250,
    n_time_steps: int = 200,
    n_target_spikes: int = 4,
    rate_hz: float = 20.0,
    time_window_ms: float = 1.0,
    min_target_step: int = 10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(inputs (T, n_inputs) float32 0/1, target (T, 1) float32 0/1, target_steps (n,) int64)``.

    Input spikes are Bernoulli with ``p = rate_hz * time_window_ms / 1000`` per step (``time_window_ms``:
    the step length, see the module docstring); the target spike steps are distinct, uniformly drawn
    from ``[min_target_step, T)``, sorted.
    """
    p = rate_hz * time_window_ms / 1000.0
    if not 0.0 < p <= 1.0:
        raise ValueError(f"rate_hz * time_window_ms / 1000 must be in (0, 1], got {p!r}")
    if not 0 < n_target_spikes <= n_time_steps - min_target_step:
        raise ValueError(f"n_target_spikes must be in 1..{n_time_steps - min_target_step}, got {n_target_spikes!r}")
    rng = np.random.default_rng([seed, 2022])
    inputs = (rng.random((n_time_steps, n_inputs)) < p).astype(np.float32)
    steps = np.sort(rng.choice(np.arange(min_target_step, n_time_steps), size=n_target_spikes, replace=False))
    target = np.zeros((n_time_steps, 1), dtype=np.float32)
    target[steps, 0] = 1.0
    return torch.from_numpy(inputs), torch.from_numpy(target), torch.from_numpy(steps.astype(np.int64))


class _Repeat(Dataset):
    """``n`` copies of one ``(x, y)`` pair; a batch of them is built at once (``__getitems__``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
        self.x, self.y, self.n = x, y, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.x, self.y

    def __getitems__(self, indices: list[int]) -> Batch:
        if min(indices) < 0 or max(indices) >= self.n:
            raise IndexError(f"indices {indices} of a dataset of {self.n}")
        b = len(indices)
        lengths = torch.full((b,), self.x.shape[0], dtype=torch.long)
        return Batch(self.x.expand(b, *self.x.shape).clone(), self.y.expand(b, *self.y.shape).clone(), lengths)


class PoissonSpikeFitDataModule(pl.LightningDataModule):
    """The spike-train fitting task as a DataModule: one fixed (input, target) pair per seed.

    Batches ``(x (B, T, n_inputs) float32, y (B, T, 1) float32 target spike train, lengths (B,))``:
    unlike the classification DataModules, ``y`` is a spike train (for an MSE/van Rossum loss).
    Every sample of every loader is the same pair; ``samples_per_epoch`` sets the epoch length.

    Args:
        seed: seed of input and target.
        n_inputs: Poisson input channels (250 in the paper).
        n_time_steps: steps of ``time_window_ms`` (200 x 1 ms in the paper).
        n_target_spikes: spikes of the target train (4 in the paper).
        rate_hz: input firing rate.
        time_window_ms: step length in ms (a generated step is a time bin: the name of the event
            DataModules' bin width, see the module docstring).
        samples_per_epoch: samples per training epoch (copies of the pair).
        batch_size: samples per batch.
    """

    def __init__(
        self,
        seed: int = 0,
        n_inputs: int = 250,
        n_time_steps: int = 200,
        n_target_spikes: int = 4,
        rate_hz: float = 20.0,
        time_window_ms: float = 1.0,
        samples_per_epoch: int = 1,
        batch_size: int = 1,
    ) -> None:
        super().__init__()
        for name, v in dict(n_inputs=n_inputs, n_time_steps=n_time_steps, samples_per_epoch=samples_per_epoch, batch_size=batch_size).items():
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
        if not time_window_ms > 0:
            raise ValueError(f"time_window_ms must be > 0, got {time_window_ms!r}")
        self.save_hyperparameters()
        self.inputs, self.target, self.target_steps = make_poisson_fit_task(
            seed, n_inputs, n_time_steps, n_target_spikes, rate_hz, time_window_ms
        )
        self.input_shape = (n_inputs,)
        self.n_outputs = 1
        self.num_classes = None
        self.n_time_steps = n_time_steps
        self.batch_size = batch_size
        self.samples_per_epoch = samples_per_epoch

    def _loader(self, n: int) -> DataLoader:
        return DataLoader(_Repeat(self.inputs, self.target, n), batch_size=self.batch_size, collate_fn=_as_is)

    def train_dataloader(self) -> DataLoader:
        """``samples_per_epoch`` copies of the pair."""
        return self._loader(self.samples_per_epoch)

    def val_dataloader(self) -> DataLoader:
        """The pair once."""
        return self._loader(1)

    def test_dataloader(self) -> DataLoader:
        """The pair once."""
        return self._loader(1)

    def predict_dataloader(self) -> DataLoader:
        """The pair once (``predict`` returns the output spike train)."""
        return self._loader(1)


def _as_is(batch: Batch) -> Batch:
    return batch
