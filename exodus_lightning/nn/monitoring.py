"""Firing rates collected by forward hooks, and resetting the state of stateful layers."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from exodus_lightning.nn.neurons import LIF
from exodus_lightning.nn.spiking_layer import spikes_per_step, spiking_modules


class FiringRates:
    """Spike statistics of every spiking layer, gathered by forward hooks while the context is open
    (several forward calls accumulate):

    - ``spike_counts[name]``: spikes per neuron summed over batch and time, ``(*features)``;
    - ``steps[name]``: the number of (sample, time step) pairs seen;
    - ``rates()``: mean spikes per neuron per time step of each layer, ``counts.sum() / (steps * N)``;
    - ``neuron_rates(name)``: the same per neuron.

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import IF, firing_rates
        >>> net = torch.nn.Sequential(torch.nn.Identity(), IF())
        >>> with firing_rates(net) as fr:
        ...     _ = net(torch.full((2, 4, 3), 0.5))       # spikes at t = 1, 3
        >>> fr.rates()
        {'1': 0.5}
    """

    def __init__(self, model: nn.Module, layers: Optional[dict[str, nn.Module]] = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.layers = spiking_modules(model) if layers is None else dict(layers)
        self.spike_counts: dict[str, Tensor] = {}
        self.steps: dict[str, int] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            s = spikes_per_step(module, output).detach()
            counts = s.sum(dim=(0, 1)).to(torch.float64)
            self.spike_counts[name] = self.spike_counts.get(name, 0) + counts
            self.steps[name] = self.steps.get(name, 0) + s.shape[0] * s.shape[1]

        return hook

    def __enter__(self) -> "FiringRates":
        self.spike_counts, self.steps = {}, {}
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def neuron_rates(self, name: str) -> Tensor:
        """Spikes per time step of each neuron of layer ``name`` (``(*features)``, float64)."""
        if name not in self.spike_counts:
            raise KeyError(f"no spikes recorded for layer {name!r}; recorded: {sorted(self.spike_counts)}")
        return self.spike_counts[name] / self.steps[name]

    def layer_rates(self) -> dict[str, Tensor]:
        """Mean spikes per neuron and time step of every layer that ran, as 0-d tensors on the layers'
        device (for logging without a host synchronisation)."""
        return {n: c.sum() / (self.steps[n] * c.numel()) for n, c in self.spike_counts.items()}

    def rates(self) -> dict[str, float]:
        """:meth:`layer_rates` as Python floats."""
        return {n: float(r) for n, r in self.layer_rates().items()}


def firing_rates(model: nn.Module) -> FiringRates:
    """A :class:`FiringRates` context for ``model``: ``with firing_rates(net) as fr: net(x)``,
    then ``fr.rates()``."""
    return FiringRates(model)


def reset_states(model: nn.Module) -> nn.Module:
    """Reset every layer of ``model`` that keeps state between calls (any module with a
    ``reset_state()`` method, e.g. :class:`~exodus_lightning.nn.StatefulLIF`) and drop recorded
    membrane traces; returns ``model``.

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import StatefulLIF, reset_states
        >>> net = torch.nn.Sequential(StatefulLIF(tau_mem=10.0))
        >>> _ = net(torch.rand(2, 3, 4))
        >>> reset_states(net)[0].state is None
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for m in model.modules():
        reset = getattr(m, "reset_state", None)
        if callable(reset):
            reset()
        if isinstance(m, LIF):
            m.v_mem = None
    return model


__all__ = ["FiringRates", "firing_rates", "reset_states"]
