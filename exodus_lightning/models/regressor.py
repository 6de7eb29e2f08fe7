"""``SpikeTrainRegressor``: fit output spike trains to target spike trains (the EXODUS supplementary
Poisson task: 250 Poisson inputs, one output neuron, a target train of 4 spikes)."""

from __future__ import annotations

import contextlib
from typing import Any, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from exodus_lightning.backend import use_backend, validate_backend
from exodus_lightning.losses import SpikeTrainMSE, VanRossumDistance
from exodus_lightning.nonfinite import NonFiniteCheck, validate_policy
from exodus_lightning.spec import instantiate, save_hyperparameters_as_specs


def _adam(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class SpikeTrainRegressor(NonFiniteCheck, pl.LightningModule):
    """Trains ``network: (B, T, inputs) -> (B, T, outputs)`` spikes to match target spike trains.

    Args:
        network: an ``nn.Module`` or an architecture string (see :class:`SpikingClassifier`).
        loss: ``"mse"`` (mean squared difference of the spike trains, as in the EXODUS supplementary)
            or ``"van_rossum"``.
        van_rossum_tau: kernel time constant (steps) of the van Rossum distance that is logged
            (and used as the loss with ``loss="van_rossum"``).
        neuron, readout: templates for an architecture string.
        optimizer: optimizer factory (Adam(lr=1e-3) by default).
        backend: ``"exodus"``, ``"slayer"`` or ``"bptt"`` for layers without their own backend.
        nonfinite: what a NaN or Inf in training does (:mod:`exodus_lightning.nonfinite`): ``"raise"``
            (default) a ``NonFiniteError`` naming the step and the first layer whose input held it;
            ``"skip"`` a warning and no parameter update for that step; ``"off"`` no check.

    Logs ``{stage}/loss``, ``{stage}/van_rossum``, ``{stage}/mse`` and the spike-count error; the
    :class:`~exodus_lightning.callbacks.RasterPlot` callback draws the output raster.
    """

    def __init__(
        self,
        network: Union[nn.Module, str],
        loss: str = "mse",
        van_rossum_tau: float = 10.0,
        neuron: Optional[nn.Module] = None,
        readout: Optional[nn.Module] = None,
        optimizer: Optional[OptimizerCallable] = None,
        backend: Optional[str] = None,
        nonfinite: str = "raise",
    ) -> None:
        super().__init__()
        self.nonfinite = validate_policy(nonfinite)
        if loss not in ("mse", "van_rossum"):
            raise ValueError(f"loss must be 'mse' or 'van_rossum', got {loss!r}")
        if backend is not None:
            validate_backend(backend)
        save_hyperparameters_as_specs(self, drop_undescribable=["network"])  # see SpikingClassifier
        from exodus_lightning.models.classifier import SpikingClassifier

        self.network = SpikingClassifier.build_network(self, instantiate(network), instantiate(neuron),
                                                       instantiate(readout))
        self.mse = SpikeTrainMSE()
        self.van_rossum = VanRossumDistance(van_rossum_tau)
        self.loss_fn = self.mse if loss == "mse" else self.van_rossum
        self.backend = backend
        # None (not a function object) as the default keeps the saved hyperparameters plain data.
        self.optimizer_factory = instantiate(optimizer, factory=True) if optimizer is not None else _adam
        self.last_output: Optional[Tensor] = None
        self.last_target: Optional[Tensor] = None

    def forward(self, x: Tensor) -> Tensor:
        ctx = use_backend(self.backend) if self.backend is not None else contextlib.nullcontext()
        with ctx:
            return self.network(x)

    def _step(self, batch: Any, stage: str) -> Tensor:
        x, target = batch[0], batch[1]
        output = self(x)
        if output.shape != target.shape:
            raise ValueError(f"network output {tuple(output.shape)} and target {tuple(target.shape)} differ")
        loss = self.loss_fn(output, target)
        n = x.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log(f"{stage}/mse", self.mse(output.detach(), target), on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log(f"{stage}/van_rossum", self.van_rossum(output.detach(), target), on_step=False, on_epoch=True,
                 batch_size=n, sync_dist=True)
        count_error = (output.detach().sum(1) - target.sum(1)).abs().float().mean()
        self.log(f"{stage}/spike_count_error", count_error, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.last_output, self.last_target = output.detach(), target.detach()
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(self.parameters())
