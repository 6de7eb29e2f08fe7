"""Layer names as the user knows them, for plots and messages: a network built from an architecture
string names its layers after the string's tokens (``"hidden layer 2: 128l (LIF)"`` rather than the
module path ``network.2``); any other module is named by its path inside the user's network.

A network names its own layers by a ``layer_names`` attribute, a dict from child-module path to
name (:func:`~exodus_lightning.nn.build_network` sets it); :func:`layer_names` collects these
through a whole model, e.g. a LightningModule whose network sits under ``network``.
"""

from __future__ import annotations

from torch import nn


def layer_names(model: nn.Module) -> dict[str, str]:
    """Module path in ``model`` -> the layer's name as the user knows it, for every module that a
    network inside ``model`` names (see the module docstring).

    Example:
        >>> from exodus_lightning.nn import LIF, LeakyIntegrator, build_network
        >>> net = build_network("100-128l-128l-20l", neuron=LIF(20.0), readout=LeakyIntegrator(20.0))
        >>> layer_names(net)
        {'1': 'hidden layer 1: 128l (LIF)', '3': 'hidden layer 2: 128l (LIF)', '5': 'readout: 20l (LeakyIntegrator)'}
    """
    out: dict[str, str] = {}
    for path, module in model.named_modules():
        names = getattr(module, "layer_names", None)
        if isinstance(names, dict):
            out.update({f"{path}.{child}" if path else child: name for child, name in names.items()})
    return out


def layer_name(model: nn.Module, path: str) -> str:
    """The name of the module at ``path`` in ``model``: its name from :func:`layer_names`, else its
    path without the LightningModule's ``network.`` prefix and its class, e.g. ``"layers.0
    (SparseLinearLIF)"``."""
    named = layer_names(model)
    if path in named:
        return named[path]
    module = model.get_submodule(path) if path else model
    short = path.removeprefix("network.") if path != "network" else path
    return f"{short} ({type(module).__name__})" if short else type(module).__name__


__all__ = ["layer_names", "layer_name"]
