"""Callbacks that log what the network does in training: per-layer gradient norms and firing rates."""

from __future__ import annotations

from typing import Optional

import lightning.pytorch as pl
from torch import Tensor

from exodus_lightning.nn.monitoring import FiringRates


class GradientNormMonitor(pl.Callback):
    """Logs ``grad_norm/<parameter>`` (the 2-norm of each weight's gradient) every
    ``every_n_steps`` optimizer steps, before the optimizer uses them (after unscaling and clipping
    hooks run in ``on_before_optimizer_step``)."""

    def __init__(self, every_n_steps: int = 50, weights_only: bool = True) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        self.weights_only = weights_only

    def norms(self, pl_module: pl.LightningModule) -> dict[str, Tensor]:
        out = {}
        for name, p in pl_module.named_parameters():
            if p.grad is None or (self.weights_only and p.ndim < 2):
                continue
            out[f"grad_norm/{name}"] = p.grad.detach().norm(2)
        return out

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        if trainer.global_step % self.every_n_steps != 0:
            return
        norms = self.norms(pl_module)
        if norms:
            pl_module.log_dict(norms, on_step=True, on_epoch=False)


class FiringRateMonitor(pl.Callback):
    """Logs ``firing_rate/<layer>`` for the spiking layers (:class:`~exodus_lightning.nn.SpikingLayer`,
    every algorithm's) of any LightningModule, averaged over the validation epoch's batches (and
    ``train_firing_rate/<layer>`` of the training batches every ``train_every_n_steps`` steps, 0 =
    never). Counts are kept detached (:class:`~exodus_lightning.nn.FiringRates`), so monitoring keeps
    no autograd graph alive."""

    def __init__(self, train_every_n_steps: int = 0) -> None:
        super().__init__()
        if isinstance(train_every_n_steps, bool) or not isinstance(train_every_n_steps, int) or train_every_n_steps < 0:
            raise ValueError(f"train_every_n_steps must be an int >= 0, got {train_every_n_steps!r}")
        self.train_every_n_steps = train_every_n_steps
        self._rates: Optional[FiringRates] = None
        self._sums: dict[str, float] = {}
        self._count = 0

    def _start(self, pl_module: pl.LightningModule) -> None:
        self._rates = FiringRates(pl_module).__enter__()

    def _stop(self) -> dict[str, float]:
        if self._rates is None:
            return {}
        self._rates.__exit__(None, None, None)
        rates, self._rates = self._rates.rates(), None
        return rates

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stop()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._sums, self._count = {}, 0

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        for name, rate in self._stop().items():
            self._sums[name] = self._sums.get(name, 0.0) + rate
        self._count += 1

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._count and not trainer.sanity_checking:
            pl_module.log_dict({f"firing_rate/{k}": v / self._count for k, v in self._sums.items()})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.train_every_n_steps and trainer.global_step % self.train_every_n_steps == 0:
            self._start(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._rates is not None:
            rates = self._stop()
            pl_module.log_dict({f"train_firing_rate/{k}": v for k, v in rates.items()}, on_step=True)


__all__ = ["GradientNormMonitor", "FiringRateMonitor"]
