"""``SpikeTrainRegressor``: fit output spike trains to target spike trains (the EXODUS supplementary
Poisson task: 250 Poisson inputs, one output neuron, a target train of 4 spikes)."""

from __future__ import annotations

from typing import Any, Optional, Union

from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from exodus_lightning.losses import SpikeTrainMSE, VanRossumDistance
from exodus_lightning.models.task import SpikingTask, network_from
from exodus_lightning.spec import instantiate, save_hyperparameters_as_specs


class SpikeTrainRegressor(SpikingTask):
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
        super().__init__(optimizer=optimizer, backend=backend, nonfinite=nonfinite)
        if loss not in ("mse", "van_rossum"):
            raise ValueError(f"loss must be 'mse' or 'van_rossum', got {loss!r}")
        save_hyperparameters_as_specs(self, drop_undescribable=["network"])  # see SpikingClassifier
        self.network = network_from(instantiate(network), instantiate(neuron), instantiate(readout))
        self.mse = SpikeTrainMSE()
        self.van_rossum = VanRossumDistance(van_rossum_tau)
        self.loss_fn = self.mse if loss == "mse" else self.van_rossum
        self.last_output: Optional[Tensor] = None
        self.last_target: Optional[Tensor] = None

    def _step(self, batch: Any, stage: str) -> Tensor:
        x, target, _ = self.unpack(batch)
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
