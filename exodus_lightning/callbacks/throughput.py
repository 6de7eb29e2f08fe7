"""Training throughput in the units SNN frameworks are compared by: samples/s and time steps/s."""

from __future__ import annotations

import collections
import time
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor


def batch_counts(batch: Any) -> tuple[int, Tensor | int]:
    """``(samples, time steps)`` of a batch ``(x, y[, lengths])`` with ``x`` of shape ``(B, T, ...)``:
    the time steps are ``sum(lengths)`` (the real, unpadded steps) when the batch has lengths, else
    ``B * T``. The sum stays a tensor on the batch's device (no host synchronisation per step)."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise ValueError(f"a batch must be (x, y[, lengths]) with x of shape (B, T, ...), got {type(x).__name__}")
    lengths = batch[2] if isinstance(batch, (tuple, list)) and len(batch) > 2 else None
    if isinstance(lengths, Tensor):
        return x.shape[0], lengths.sum()
    return x.shape[0], x.shape[0] * x.shape[1]


class Throughput(pl.Callback):
    """Logs ``throughput/samples_per_s`` and ``throughput/time_steps_per_s`` of training, on the
    progress bar and to every logger, at every training step once ``window`` steps have passed.

    The rate is taken over the last ``window`` training steps, from the end of one step to the end of
    another: loading the data counts (it is part of what an epoch costs), validation does not (the
    window restarts each epoch). Under DDP every rank trains its own shard at the pace of the slowest,
    so the figure is rank 0's rate times the world size.

    Args:
        window: steps per measurement (>= 1).

    Example:
        >>> import torch
        >>> batch_counts((torch.zeros(4, 10, 3), torch.zeros(4), torch.tensor([10, 7, 3, 10])))
        (4, tensor(30))
    """

    def __init__(self, window: int = 20) -> None:
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, got {window!r}")
        self.window = window
        self._ends: collections.deque = collections.deque(maxlen=window + 1)
        self._counts: collections.deque = collections.deque(maxlen=window)
        self.last: Optional[dict[str, Tensor | float]] = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._ends.clear()
        self._counts.clear()
        self._ends.append(time.perf_counter())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._ends.append(time.perf_counter())
        self._counts.append(batch_counts(batch))
        if len(self._counts) < self.window:
            return
        seconds = (self._ends[-1] - self._ends[0]) / trainer.world_size
        samples = sum(n for n, _ in self._counts)
        steps = sum(s for _, s in self._counts)
        steps = steps.to(torch.float64) if isinstance(steps, Tensor) else float(steps)
        self.last = {"throughput/samples_per_s": samples / seconds, "throughput/time_steps_per_s": steps / seconds}
        for key, value in self.last.items():
            pl_module.log(key, value, on_step=True, on_epoch=False, prog_bar=True, batch_size=1, rank_zero_only=True)


__all__ = ["Throughput", "batch_counts"]
