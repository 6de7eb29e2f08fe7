"""Recording what the spiking layers of a network emit, with their autograd graph (for activity
regularisers) and for rasters: forward hooks on every :class:`~exodus_lightning.nn.SpikingLayer`,
active only inside :meth:`SpikeRecorder.recording`.  A layer that runs one time step per call (OTTT)
is recorded step by step and its steps stacked, so every layer's record is ``(B, T, *features)``.
(:func:`exodus_lightning.nn.firing_rates` keeps detached counts only.)"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from exodus_lightning.nn.spiking_layer import spikes_per_step, spiking_modules


def spiking_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Named spiking layers of ``model`` (module paths; the model itself is ``"network"``)."""
    return {name or "network": m for name, m in spiking_modules(model).items()}


class SpikeRecorder:
    """Collects the spike tensors ``(B, T, *features)`` of every spiking layer of ``model`` during
    a forward pass inside ``with recorder.recording():``.

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import LIF
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), LIF(tau_mem=10.0))
        >>> rec = SpikeRecorder(net)
        >>> with rec.recording():
        ...     _ = net(torch.ones(1, 5, 3) * 3)
        >>> list(rec.outputs)
        ['1']
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._steps: dict[str, list[Tensor]] = {}
        self._active = False
        self._handles = []
        for name, layer in spiking_layers(model).items():
            self._handles.append(layer.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            if self._active:
                steps = self._steps.setdefault(name, [])
                if module.steps_per_call is None:
                    steps.clear()  # a sequence layer's last call is the record
                steps.append(spikes_per_step(module, output))

        return hook

    def start(self) -> None:
        """Start recording (clears what the previous pass recorded)."""
        self._steps = {}
        self._active = True

    def stop(self) -> None:
        self._active = False

    @property
    def outputs(self) -> dict[str, Tensor]:
        """The spikes ``(B, T, *features)`` of each layer that ran since :meth:`start`, with their graph."""
        return {name: s[0] if len(s) == 1 else torch.cat(s, 1) for name, s in self._steps.items()}

    @property
    def active(self) -> bool:
        return self._active

    @contextlib.contextmanager
    def recording(self) -> Iterator["SpikeRecorder"]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def rates(self) -> dict[str, Tensor]:
        """Mean spikes per neuron and time step of each recorded layer (detached)."""
        return {name: s.detach().float().mean() for name, s in self.outputs.items()}

    def counts(self) -> dict[str, Tensor]:
        """Total spikes per layer of the last recorded pass (detached)."""
        return {name: s.detach().sum() for name, s in self.outputs.items()}

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


__all__ = ["SpikeRecorder", "spiking_layers"]
