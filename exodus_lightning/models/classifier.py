"""``SpikingClassifier``: a LightningModule for classifying sequences with a spiking network."""

from __future__ import annotations

from typing import Any, Optional, Union

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from exodus_lightning.losses import ActivityRegularizer, loss_by_name
from exodus_lightning.models.activity import SpikeRecorder
from exodus_lightning.models.task import SpikingTask, check_num_classes, network_from
from exodus_lightning.spec import instantiate, save_hyperparameters_as_specs


class SpikingClassifier(SpikingTask):
    """Trains a spiking network ``(B, T, *input) -> (B, T, num_classes)`` with a loss over time
    (EXODUS Table 2: max-over-time CE for a leaky readout, sum-over-time CE for spiking outputs).

    Configured entirely by constructor arguments (LightningCLI / YAML or Python):

    Args:
        network: an ``nn.Module``, or an architecture string in the paper's Table 2 notation
            (``"100-128l-128l-20l"``, ``"64x64x2-2c3-2p-...-11l"``) built by
            :func:`exodus_lightning.nn.build_network` with ``neuron`` and ``readout``.
        num_classes: number of classes (for the metrics; checked against the network output).
        loss: a name from :data:`exodus_lightning.losses.LOSSES` or a loss module
            ``f(output, target, lengths)``.
        neuron: template neuron layer for an architecture string (e.g. ``LIF(tau_mem=20.0)``).
        readout: readout layer for an architecture string (e.g. ``LeakyIntegrator(tau=20.0)``).
        activity_regularizer: sparse-SGD regulariser applied to every spiking layer's output.
        optimizer: optimizer factory (LightningCLI: ``class_path``/``init_args``); None: Adam(lr=1e-3).
        scheduler: optional learning-rate scheduler factory.
        backend: ``"exodus"``, ``"slayer"`` or ``"bptt"`` for every layer without its own ``backend=``
            (None: the global default), for EXODUS-vs-SLAYER comparisons without rebuilding.
        nonfinite: what a NaN or Inf in training does (:mod:`exodus_lightning.nonfinite`): ``"raise"``
            (default) a ``NonFiniteError`` naming the step and the first layer whose input held it;
            ``"skip"`` a warning and no parameter update for that step; ``"off"`` no check.

    Batches are ``(x, y)`` or ``(x, y, lengths)`` with ``x`` of shape ``(B, T, *input)``.

    Checkpoints: the arguments are saved as hyperparameters, modules and factories as specs
    (class path and constructor arguments, :mod:`exodus_lightning.spec`), never as pickled objects:
    ``SpikingClassifier.load_from_checkpoint(path)`` rebuilds the model with PyTorch's default
    ``weights_only=True`` loading and no extra arguments, whether the network was an architecture
    string with neuron templates, a module of the framework's layers and ``torch.nn`` layers, or an
    algorithm's network (``SparseSNN``, ``EventDrivenSNN``).  The same holds for configs given
    through the CLI.  A network module of a class that does not record its arguments (your own
    ``nn.Module``) is not saved: pass ``network=`` again when loading.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from exodus_lightning.models import SpikingClassifier
        >>> net = nn.Linear(4, 3)                     # any (B, T, 4) -> (B, T, 3) module
        >>> model = SpikingClassifier(net, num_classes=3, loss="sum_over_time_cross_entropy")
        >>> model(torch.rand(2, 10, 4)).shape
        torch.Size([2, 10, 3])
    """

    def __init__(
        self,
        network: Union[nn.Module, str],
        num_classes: int,
        loss: Union[str, nn.Module] = "max_over_time_cross_entropy",
        neuron: Optional[nn.Module] = None,
        readout: Optional[nn.Module] = None,
        activity_regularizer: Optional[ActivityRegularizer] = None,
        optimizer: Optional[OptimizerCallable] = None,
        scheduler: Optional[LRSchedulerCallable] = None,
        backend: Optional[str] = None,
        nonfinite: str = "raise",
    ) -> None:
        super().__init__(optimizer=optimizer, scheduler=scheduler, backend=backend, nonfinite=nonfinite)
        self.num_classes = check_num_classes(num_classes)
        # Modules and factories are saved as specs (class path + arguments), so checkpoints load
        # with torch.load(weights_only=True) and load_from_checkpoint(path) rebuilds the network.
        save_hyperparameters_as_specs(self, drop_undescribable=["network"])
        self.network = network_from(instantiate(network), instantiate(neuron), instantiate(readout))
        self.loss_fn = self.build_loss(instantiate(loss))
        self.activity_regularizer = instantiate(activity_regularizer)
        self.spikes = SpikeRecorder(self.network)
        self.build_metrics(num_classes)

    # ------------------------------------------------------------------ construction

    def build_loss(self, loss: Union[str, nn.Module]) -> nn.Module:
        if isinstance(loss, str):
            return loss_by_name(loss)
        if isinstance(loss, nn.Module) or callable(loss):
            return loss
        raise TypeError(f"loss must be a loss name or a module, got {type(loss).__name__}")

    # ------------------------------------------------------------------ forward / steps

    def scores(self, output: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Class scores ``(B, C)`` consistent with the loss: max over time for the max-over-time
        loss, the time sum otherwise."""
        from exodus_lightning.losses import MaxOverTimeCrossEntropy, max_over_time, sum_over_time

        if isinstance(self.loss_fn, MaxOverTimeCrossEntropy):
            return max_over_time(output, lengths)
        return sum_over_time(output, lengths)

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        x, y, lengths = self.unpack(batch)
        with self.spikes.recording():
            output = self(x)
        if output.ndim != 3 or output.shape[-1] != self.num_classes:
            raise ValueError(f"the network output must have shape (B, T, num_classes={self.num_classes}), "
                             f"got {tuple(output.shape)}")
        loss = self.loss_fn(output, y, lengths)
        self.log(f"{stage}/loss_task", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        if self.activity_regularizer is not None and self.spikes.outputs:
            reg = sum(self.activity_regularizer(s) for s in self.spikes.outputs.values())
            self.log(f"{stage}/loss_activity", reg, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
            loss = loss + reg
        metric = getattr(self, f"{stage}_accuracy")
        metric(self.scores(output.detach(), lengths), y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y),
                 sync_dist=True)
        self.log(f"{stage}/accuracy", metric, on_step=False, on_epoch=True, prog_bar=True)
        for name, rate in self.spikes.rates().items():
            self.log(f"{stage}/firing_rate/{name}", rate, on_step=False, on_epoch=True, batch_size=len(y),
                     sync_dist=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predictions(self, output: Tensor, lengths: Optional[Tensor]) -> Tensor:
        """Class scores ``(B, num_classes)`` (:meth:`scores`)."""
        return self.scores(output, lengths)
