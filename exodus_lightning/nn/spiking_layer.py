"""The spiking-layer protocol: what every spiking layer of every algorithm tells the shared tools.

Monitoring (:class:`~exodus_lightning.nn.FiringRates`, ``FiringRateMonitor``), recording
(:class:`~exodus_lightning.models.SpikeRecorder`, ``RasterPlot``, the activity regularisers) and
state handling (:func:`~exodus_lightning.nn.reset_states`) find the spiking layers of a model by this
class, whatever the algorithm: the EXODUS/SLAYER layers (:class:`~exodus_lightning.nn.LIF` and its
subclasses), the OTTT neuron (``OnlineLIF``, one time step per call), the sparse-SGD layer
(``SparseLinearLIF``) and the event-driven layers (``EventLinear``, ``EventConv2d``).

A layer states three things:

- :attr:`SpikingLayer.steps_per_call`: ``None`` when a call takes a whole sequence and returns spikes
  ``(B, T, *features)``, ``1`` when it takes one time step and returns ``(B, *features)``;
- :meth:`SpikingLayer.spikes`: the spike tensor inside what its ``forward`` returns (a tensor, or a
  tuple/named tuple whose first field holds the spikes);
- :meth:`SpikingLayer.reset_state`: forget whatever it carries from one call to the next.

Example:
    >>> import torch
    >>> from exodus_lightning.nn import LIF, SpikingLayer, spiking_modules
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), LIF(tau_mem=10.0))
    >>> isinstance(net[1], SpikingLayer), list(spiking_modules(net))
    (True, ['1'])
"""

from __future__ import annotations

from typing import Any, Optional

from torch import Tensor, nn

__all__ = ["SpikingLayer", "spiking_modules", "spikes_per_step"]


class SpikingLayer:
    """Mixin for an ``nn.Module`` whose output is spikes (module docstring)."""

    #: None: a call takes ``(B, T, *input)`` and returns ``(B, T, *features)``; 1: one time step,
    #: ``(B, *input) -> (B, *features)``
    steps_per_call: Optional[int] = None

    def spikes(self, output: Any) -> Tensor:
        """The spikes in ``output``, what this layer's ``forward`` returned."""
        return output[0] if isinstance(output, tuple) else output

    def reset_state(self) -> None:
        """Forget the state carried between calls (nothing by default)."""


def spiking_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The spiking layers (:class:`SpikingLayer`) of ``model`` by module path (the model itself is
    named ``""``)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SpikingLayer)}


def spikes_per_step(layer: SpikingLayer, output: Any) -> Tensor:
    """The spikes of one call of ``layer`` with a time axis: ``(B, T, *features)``, ``T = 1`` for a
    layer that runs one step per call."""
    s = layer.spikes(output)
    return s.unsqueeze(1) if layer.steps_per_call == 1 else s
