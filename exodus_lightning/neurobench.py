"""NeuroBench metrics for any model of the framework (optional: ``pip install --no-deps neurobench numba
llvmlite snntorch``; NeuroBench v2.3 imports snntorch for its hooks).

NeuroBench (Yik et al. 2025) finds a network's activations among ``nn.ReLU``/``nn.Sigmoid`` and snntorch
neurons and its synapses among ``nn.Linear``/``nn.Conv*``. :class:`NeuroBenchModel` shows it ours:

- every spiking layer (:class:`~exodus_lightning.nn.SpikingLayer`, whatever the algorithm) gets a
  probe module that receives its spikes, so *activation sparsity* counts them;
- layers that fuse the weight with the neuron (sparse SGD's ``SparseLinearLIF`` and
  ``DelayedLeakyReadout``, the event-driven ``EventLinear``/``EventConv2d``) get a connection proxy
  (an ``nn.Linear``/``nn.Conv2d`` holding the layer's effective weight, not a parameter) called with the
  layer's input, so *synaptic operations* (effective ACs for spike inputs, MACs otherwise) and
  *connection sparsity* count their synapses; ``nn.Linear``/``nn.Conv2d`` layers are found as they are;
- the model runs through the task's ``forward`` (one call per batch ``(B, T, *input)``; OTTT steps inside).

Footprint and parameter count are those of the network itself (the proxies hold no parameters).
NeuroBench's *membrane updates* needs snntorch neurons' ``mem`` attribute and counts nothing for ours.

Example (needs neurobench):
    >>> from neurobench.benchmarks import Benchmark                              # doctest: +SKIP
    >>> from neurobench.metrics.static import Footprint, ConnectionSparsity        # doctest: +SKIP
    >>> from neurobench.metrics.workload import ActivationSparsity, SynapticOperations  # doctest: +SKIP
    >>> bench = Benchmark(NeuroBenchModel(task), loader, [drop_lengths], [class_predictions(task)],
    ...                   [[Footprint, ConnectionSparsity], [ActivationSparsity, SynapticOperations]])  # doctest: +SKIP
    >>> bench.run()                                                              # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

try:
    from neurobench.models import NeuroBenchModel as _NeuroBenchModel
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError("exodus_lightning.neurobench needs NeuroBench: pip install --no-deps neurobench numba llvmlite "
                      "snntorch (with torch pinned)") from e

from exodus_lightning.nn.spiking_layer import spikes_per_step, spiking_modules

__all__ = ["NeuroBenchModel", "NeuroBenchMetrics", "SpikeProbe", "drop_lengths", "class_predictions", "neurobench_metrics"]


class SpikeProbe(nn.Module):
    """Receives the spikes ``(B, T, *features)`` of one spiking layer (NeuroBench's activation hook
    records what it returns)."""

    def forward(self, spikes: Tensor) -> Tensor:
        return spikes


def _linear_proxy(weight: Tensor) -> nn.Linear:
    proxy = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=weight.device, dtype=weight.dtype)
    del proxy.weight  # a plain tensor, not a parameter: the footprint counts the network's own weights only
    proxy.weight = weight.detach()
    return proxy


def _conv_proxy(layer: nn.Module, weight: Tensor) -> nn.Conv2d:
    proxy = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=layer.stride,
                      padding=layer.padding, bias=False, device=weight.device, dtype=weight.dtype)
    del proxy.weight
    proxy.weight = weight.detach()
    return proxy


def _fused_weight(layer: nn.Module) -> Optional[Tensor]:
    """The effective weight of a layer that fuses its synapses with something else, else None."""
    from exodus_lightning.algorithms.event_driven import EventConv2d, EventLinear
    from exodus_lightning.algorithms.sparse_sgd import DelayedLeakyReadout, SparseLinearLIF

    if isinstance(layer, (EventLinear, EventConv2d)):
        return layer.weight()
    if isinstance(layer, (SparseLinearLIF, DelayedLeakyReadout)):
        return layer.weight
    return None


class _Instrumented(nn.Module):
    """The network plus its probes and proxies, all reachable as children for NeuroBench's search;
    forward hooks on the network's layers feed them."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.probes = nn.ModuleDict()
        self.proxies = nn.ModuleDict()
        self._handles = []
        for path, layer in spiking_modules(network).items():
            key = path.replace(".", "/") or "network"
            self.probes[key] = SpikeProbe()
            self._handles.append(layer.register_forward_hook(self._probe(self.probes[key])))
        for path, layer in network.named_modules():
            weight = _fused_weight(layer)
            if weight is None:
                continue
            key = path.replace(".", "/")
            self.proxies[key] = _conv_proxy(layer, weight) if weight.ndim == 4 else _linear_proxy(weight)
            self._handles.append(layer.register_forward_pre_hook(self._feed(self.proxies[key], layer)))

    @staticmethod
    def _probe(probe: SpikeProbe) -> Callable:
        def hook(layer: nn.Module, inputs: Any, output: Any) -> None:
            probe(spikes_per_step(layer, output).detach())

        return hook

    @staticmethod
    def _feed(proxy: nn.Module, layer: nn.Module) -> Callable:
        def hook(module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach()
            if isinstance(proxy, nn.Conv2d):  # the event-driven conv takes (B, T, C, H, W)
                proxy.weight = module.weight().detach()
                proxy(x.flatten(0, 1))
            else:
                proxy.weight = _fused_weight(module).detach()
                proxy(x)

        return hook

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)


class NeuroBenchModel(_NeuroBenchModel):
    """A model of the framework as NeuroBench sees it (module docstring).

    Args:
        model: one of our LightningModules (``SpikingClassifier``, ``OnlineSpikingClassifier``,
            ``SpikeTrainRegressor``: run through its ``forward``) or a network ``(B, T, *input) -> (B, T,
            outputs)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module (a task or a network), got {type(model).__name__}")
        self.model = model.eval()
        self.instrumented = _Instrumented(getattr(model, "network", model))
        self.add_activation_module(SpikeProbe)

    def __call__(self, batch: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(batch)

    def __net__(self) -> nn.Module:
        return self.instrumented


def drop_lengths(data: tuple) -> tuple[Tensor, Tensor]:
    """NeuroBench preprocessor: our batches ``(x, y, lengths)`` as its ``(x, y)``."""
    return data[0], data[1]


def class_predictions(task: nn.Module) -> Callable[[Tensor], Tensor]:
    """NeuroBench postprocessor: the class a classifier task predicts from its output ``(B, T, C)``
    (its ``predictions``: max or sum over time as its loss has it), for ClassificationAccuracy."""
    predictions = getattr(task, "predictions", None)
    if not callable(predictions):
        raise TypeError(f"task must have predictions(output, lengths) (our classifiers do), got {type(task).__name__}")
    return lambda output: predictions(output, None).argmax(-1)


def neurobench_metrics(task: nn.Module, dataloader: Any, classification: bool = True) -> dict[str, Any]:
    """Run NeuroBench on ``task`` over ``dataloader`` (batches ``(x, y[, lengths])``, dense) with its
    static metrics (footprint, connection sparsity, parameter count) and workload metrics (activation
    sparsity, synaptic operations, and classification accuracy for a classifier)."""
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import ActivationSparsity, ClassificationAccuracy, SynapticOperations

    workload = [ActivationSparsity, SynapticOperations] + ([ClassificationAccuracy] if classification else [])
    post = [class_predictions(task)] if classification else []
    bench = Benchmark(NeuroBenchModel(task), dataloader, [drop_lengths], post,
                      [[Footprint, ConnectionSparsity, ParameterCount], workload])
    return bench.run(quiet=True)


class _DenseBatches:
    """A DataModule's loader whose batches go through its ``on_after_batch_transfer`` (our DataModules
    hand a Trainer compact batches and make them dense there), with the ``dataset`` and ``len`` that
    NeuroBench's Benchmark reads."""

    def __init__(self, loader: Any, datamodule: Any) -> None:
        self.loader, self.datamodule, self.dataset = loader, datamodule, loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        hook = getattr(self.datamodule, "on_after_batch_transfer", None)
        for batch in self.loader:
            yield tuple(hook(batch, 0)) if callable(hook) else tuple(batch)


class NeuroBenchMetrics(pl.Callback):
    """After ``exodus-lightning test`` (``Trainer.test``), runs NeuroBench on the test set
    (:func:`neurobench_metrics`) and logs every figure as ``neurobench/<metric>`` to every logger;
    the figures stay in :attr:`results`.

    Add it on the command line: ``--trainer.callbacks+=exodus_lightning.neurobench.NeuroBenchMetrics``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.results: dict[str, float] = {}

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        if dm is None:
            raise ValueError("NeuroBenchMetrics runs on the DataModule's test set: test with a DataModule")
        classification = hasattr(pl_module, "num_classes")
        raw = neurobench_metrics(pl_module, _DenseBatches(dm.test_dataloader(), dm), classification)
        flat: dict[str, float] = {}
        for name, value in raw.items():
            if isinstance(value, dict):
                flat.update({f"neurobench/{name}/{k}": float(v) for k, v in value.items()})
            else:
                flat[f"neurobench/{name}"] = float(value)
        self.results = flat
        for logger in trainer.loggers:
            logger.log_metrics(flat, step=trainer.global_step)
        if trainer.is_global_zero:
            width = max(len(k) for k in flat)
            print("\n".join(f"{k:<{width}}  {v:.6g}" for k, v in flat.items()))
