"""``SpikingTask``: what every LightningModule of the framework shares.

The classifier, the online (OTTT) classifier and the spike-train regressor differ in their network,
loss and steps; the rest lives here once: the ``nonfinite`` policy
(:class:`~exodus_lightning.nonfinite.NonFiniteCheck`), the gradient ``backend`` scope, the optimizer
and scheduler factories (LightningCLI's ``class_path``/``init_args`` or Python callables), batch
unpacking (``(x, y)`` or ``(x, y, lengths)``), the per-stage accuracy metrics, and prediction.

A task's ``__init__`` calls ``super().__init__(optimizer=..., scheduler=..., backend=...,
nonfinite=...)`` first and then :func:`~exodus_lightning.spec.save_hyperparameters_as_specs` (which
reads the arguments of the ``__init__`` that calls it).
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Optional, Union

import lightning.pytorch as pl
import torch
import torchmetrics
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from exodus_lightning.backend import use_backend, validate_backend
from exodus_lightning.nonfinite import NonFiniteCheck, validate_policy
from exodus_lightning.spec import instantiate

__all__ = ["SpikingTask", "check_num_classes", "network_from"]


def _adam(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


def check_num_classes(num_classes: Any) -> int:
    """``num_classes`` if it is an int >= 2, else a ``ValueError`` naming it."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes


def network_from(network: Union[nn.Module, str], neuron: Optional[nn.Module] = None,
                 readout: Optional[nn.Module] = None) -> nn.Module:
    """``network`` itself when it is a module, else the network of the architecture string (EXODUS
    Table 2 notation, :func:`exodus_lightning.nn.build_network`) with the ``neuron`` and ``readout``
    templates."""
    if isinstance(network, nn.Module):
        return network
    if isinstance(network, str):
        from exodus_lightning.nn import build_network

        templates = {k: v for k, v in (("neuron", neuron), ("readout", readout)) if v is not None}
        return build_network(network, **templates)
    raise TypeError(f"network must be an nn.Module or an architecture string, got {type(network).__name__}")


class SpikingTask(NonFiniteCheck, pl.LightningModule):
    """Base of the framework's LightningModules (module docstring).

    Args:
        optimizer: optimizer factory (LightningCLI: ``class_path``/``init_args``); None: Adam(lr=1e-3).
        scheduler: optional learning-rate scheduler factory; a ``ReduceLROnPlateau`` watches ``val/loss``.
        backend: ``"exodus"``, ``"slayer"`` or ``"bptt"`` for every layer without its own ``backend=``
            (None: the global default, :mod:`exodus_lightning.backend`).
        nonfinite: what a NaN or Inf in training does (:mod:`exodus_lightning.nonfinite`): ``"raise"``,
            ``"skip"`` or ``"off"``.

    A subclass sets ``self.network`` and defines the steps; :meth:`predictions` turns the network
    output into what ``predict`` returns.
    """

    network: nn.Module

    def __init__(
        self,
        optimizer: Optional[OptimizerCallable] = None,
        scheduler: Optional[LRSchedulerCallable] = None,
        backend: Optional[str] = None,
        nonfinite: str = "raise",
    ) -> None:
        super().__init__()
        self.nonfinite = validate_policy(nonfinite)
        self.backend = validate_backend(backend) if backend is not None else None
        # None (not a function object) as the default keeps the saved hyperparameters plain data.
        self.optimizer_factory = instantiate(optimizer, factory=True) if optimizer is not None else _adam
        self.scheduler_factory = instantiate(scheduler, factory=True)

    # ------------------------------------------------------------------ construction

    def build_metrics(self, num_classes: int) -> None:
        """Accuracy of each stage, one metric object per stage (states never mix between training and
        validation): ``train_accuracy``, ``val_accuracy``, ``test_accuracy``."""
        def accuracy() -> torchmetrics.Metric:
            return torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)

        self.train_accuracy, self.val_accuracy, self.test_accuracy = accuracy(), accuracy(), accuracy()

    # ------------------------------------------------------------------ forward / prediction

    def backend_scope(self) -> ContextManager:
        """The task's gradient backend for the layers without their own (a no-op without one)."""
        return use_backend(self.backend) if self.backend is not None else contextlib.nullcontext()

    def forward(self, x: Tensor) -> Tensor:
        with self.backend_scope():
            return self.network(x)

    @staticmethod
    def unpack(batch: Any) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(x, y, lengths)`` of a batch ``(x, y)`` or ``(x, y, lengths)`` (``lengths`` None for the first)."""
        if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
            return batch[0], batch[1], batch[2] if len(batch) == 3 else None
        raise ValueError("a batch must be (x, y) or (x, y, lengths) with x of shape (B, T, ...)")

    def predictions(self, output: Tensor, lengths: Optional[Tensor]) -> Tensor:
        """What ``predict`` returns for the network output (default: the output itself)."""
        return output

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        x, _, lengths = self.unpack(batch) if isinstance(batch, (tuple, list)) else (batch, None, None)
        return self.predictions(self(x), lengths)

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
