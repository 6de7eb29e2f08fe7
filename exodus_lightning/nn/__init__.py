"""Spiking layers and networks (docs/architecture.md §1, §3, §6).

- Neurons around :mod:`exodus_lightning.functional`: :class:`LIF`, :class:`IF`,
  :class:`StatefulLIF`, :class:`LeakyIntegrator`, :class:`RecurrentLIF` — input and output
  ``(B, T, *features)``, stateless by default, backend chosen at call time.
- Time folding: :class:`TimeDistributed`, :class:`SumPool2d`, :class:`SpikingSequential`.
- :func:`build_network` for the architecture strings of the EXODUS paper (Table 2).
- :class:`SpikingLayer`, the protocol every spiking layer of every algorithm implements, found by
  :func:`spiking_modules`.
- :func:`default_init`, :func:`firing_rates`, :func:`reset_states`, :func:`layer_names` (names for
  plots and messages).

Example:
    >>> import torch
    >>> import exodus_lightning as el
    >>> from exodus_lightning.nn import LIF
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), LIF(tau_mem=10.0))
    >>> with el.use_backend("slayer"):       # every layer without its own backend= follows
    ...     out = net(torch.rand(2, 6, 4))
    >>> out.shape
    torch.Size([2, 6, 8])
"""

from exodus_lightning.functional import LIFState
from exodus_lightning.nn.architecture import build_network, parse_input
from exodus_lightning.nn.init import default_init
from exodus_lightning.nn.monitoring import FiringRates, firing_rates, reset_states
from exodus_lightning.nn.names import layer_name, layer_names
from exodus_lightning.nn.neurons import IF, LIF, LeakyIntegrator, RecurrentLIF, StatefulLIF
from exodus_lightning.nn.spiking_layer import SpikingLayer, spiking_modules
from exodus_lightning.nn.time import SpikingSequential, SumPool2d, TimeDistributed

__all__ = [
    "LIF",
    "IF",
    "StatefulLIF",
    "LeakyIntegrator",
    "RecurrentLIF",
    "LIFState",
    "TimeDistributed",
    "SumPool2d",
    "SpikingSequential",
    "build_network",
    "parse_input",
    "default_init",
    "FiringRates",
    "firing_rates",
    "reset_states",
    "spiking_modules",
    "SpikingLayer",
    "layer_names",
    "layer_name",
]
