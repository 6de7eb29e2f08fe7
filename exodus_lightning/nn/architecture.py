"""Networks from the architecture strings of the EXODUS paper (Bauer et al. 2023, appendix 6.4,
Table 2), e.g. ``"64x64x2-2c3-2p-4c3-2p-8c3-2p-16c3-11l"`` (DVS Gesture) and
``"100-128l-128l-20l"`` (Heidelberg Spiking Digits).

Grammar (tokens separated by ``-``):

- the first token is the input size of one time step: ``F`` (a feature vector) or ``HxWxC``
  (an image with C channels, as the paper writes 64x64x2; the network takes ``(B, T, C, H, W)``);
- ``Nc K``: ``Conv2d`` with N output channels, kernel K, stride 1 and padding K // 2 (the paper
  gives no padding; "same" padding for odd K keeps 64x64 maps at 64x64 until pooled);
- ``Np``: :class:`SumPool2d` with kernel and stride N;
- ``Nl``: ``Linear`` with N outputs (a ``Flatten`` is inserted before the first one after convs).

A spiking layer follows every weight layer (``c`` or ``l``) except the last, which is followed by
``readout`` (None: nothing, the network outputs the last layer's weighted input).  Pooling tokens
come after the spiking layer, so pools sum spikes.
"""

from __future__ import annotations

import copy
import re
from typing import Callable, Optional, Union

from torch import nn

from exodus_lightning.nn.init import default_init
from exodus_lightning.nn.neurons import IF
from exodus_lightning.nn.time import SpikingSequential, SumPool2d

NeuronSpec = Union[nn.Module, Callable[..., nn.Module]]

_CONV = re.compile(r"^(\d+)c(\d+)$")
_POOL = re.compile(r"^(\d+)p$")
_LINEAR = re.compile(r"^(\d+)l$")
_INPUT = re.compile(r"^\d+(x\d+)*$")


def _error(arch: str, i: int, token: str, why: str) -> ValueError:
    return ValueError(f"architecture {arch!r}: token {i} {token!r} {why}")


def _make(spec: NeuronSpec, shape: tuple[int, ...], argument: str) -> nn.Module:
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec)
    layer = spec(shape=shape)
    if not isinstance(layer, nn.Module):
        raise TypeError(f"{argument} factory must return an nn.Module, returned {type(layer).__name__}")
    return layer


def parse_input(arch: str, token: str) -> tuple[int, ...]:
    """``"100"`` -> ``(100,)``; ``"64x64x2"`` (H x W x C) -> ``(2, 64, 64)`` (C, H, W)."""
    if not _INPUT.match(token):
        raise _error(arch, 0, token, "is not an input size: expected F or HxWxC, e.g. '100' or '64x64x2'")
    dims = [int(d) for d in token.split("x")]
    if any(d < 1 for d in dims):
        raise _error(arch, 0, token, "has a zero dimension")
    if len(dims) == 1:
        return (dims[0],)
    if len(dims) == 3:
        h, w, c = dims
        return (c, h, w)
    raise _error(arch, 0, token, f"has {len(dims)} dimensions: expected F or HxWxC")


def build_network(
    architecture: str,
    neuron: Optional[NeuronSpec] = None,
    readout: Optional[NeuronSpec] = None,
    bias: bool = False,
    init: Optional[Callable[[nn.Module], object]] = default_init,
) -> SpikingSequential:
    """Build the network an architecture string of the EXODUS paper describes (module docstring),
    as a :class:`SpikingSequential` mapping ``(B, T, *input)`` to ``(B, T, outputs)``.

    Args:
        architecture: e.g. ``"64x64x2-2c3-2p-4c3-2p-8c3-2p-16c3-11l"`` or ``"100-128l-128l-20l"``.
        neuron: the spiking layer between weight layers.  Either a module used as a *template*
            (deep-copied for every layer, so layers never share parameters, e.g.
            ``LIF(tau_mem=20.0)``), or a *factory* called as ``neuron(shape=features)`` with the
            layer's per-step feature shape (``(C, H, W)`` or ``(N,)``) that returns a module, e.g.
            ``functools.partial(LIF, 20.0, train_tau=True)`` for trained per-neuron tau, or
            ``lambda shape: LIF(20.0, shape=(shape[0], 1, 1), train_tau=True)`` for per-channel tau.
            Default: ``IF()``, as in the paper.
        readout: the layer after the last weight layer (template or factory as ``neuron``), e.g.
            ``LeakyIntegrator(tau=20.0)``; None leaves the last layer's output as it is.
        bias: whether Conv/Linear layers have a bias (default False).
        init: called on the finished network to initialise the weights; default
            :func:`exodus_lightning.nn.default_init` (``N(0, 2/fan_in)``); None keeps PyTorch's.

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import LIF, LeakyIntegrator, build_network
        >>> net = build_network("100-128l-128l-20l", neuron=LIF(tau_mem=20.0), readout=LeakyIntegrator(20.0))
        >>> net(torch.rand(2, 7, 100)).shape
        torch.Size([2, 7, 20])
    """
    if not isinstance(architecture, str):
        raise TypeError(f"architecture must be a string such as '100-128l-20l', got {type(architecture).__name__}")
    for name, spec in (("neuron", neuron), ("readout", readout)):
        if spec is not None and not isinstance(spec, nn.Module) and not callable(spec):
            raise TypeError(f"{name} must be an nn.Module template or a factory callable, got {type(spec).__name__}")
    if init is not None and not callable(init):
        raise TypeError(f"init must be a callable f(module) or None, got {type(init).__name__}")
    neuron = IF() if neuron is None else neuron
    tokens = [t.strip() for t in architecture.strip().split("-")]
    if not tokens[0]:
        raise ValueError(f"architecture must not be empty, got {architecture!r}")
    for i, tok in enumerate(tokens):
        if not tok:
            raise _error(architecture, i, tok, "is empty (two '-' in a row or a trailing '-')")
    shape = parse_input(architecture, tokens[0])

    # First pass: parse and check every token, so that errors name the token before anything is built.
    parsed: list[tuple[str, int, int]] = []
    for i, tok in enumerate(tokens[1:], start=1):
        if m := _CONV.match(tok):
            parsed.append(("c", int(m.group(1)), int(m.group(2))))
        elif m := _POOL.match(tok):
            parsed.append(("p", int(m.group(1)), 0))
        elif m := _LINEAR.match(tok):
            parsed.append(("l", int(m.group(1)), 0))
        else:
            raise _error(
                architecture, i, tok,
                "does not parse: expected 'NcK' (conv, N channels, kernel K), 'Np' (pool) or 'Nl' (linear)",
            )
        if parsed[-1][1] < 1 or (parsed[-1][0] == "c" and parsed[-1][2] < 1):
            raise _error(architecture, i, tok, "has a zero size")
    weight_idx = [j for j, p in enumerate(parsed) if p[0] in "cl"]
    if not weight_idx:
        raise ValueError(f"architecture {architecture!r} has no weight layer ('NcK' or 'Nl')")
    last_weight = weight_idx[-1]

    layers: list[nn.Module] = []
    names: dict[str, str] = {}  # the spiking/readout layers, after the weight-layer token they follow
    for j, (kind, n, k) in enumerate(parsed):
        i, tok = j + 1, tokens[j + 1]
        if kind == "c":
            if len(shape) != 3:
                raise _error(architecture, i, tok, f"is a convolution but its input has shape {shape} (not C x H x W)")
            c, h, w = shape
            pad = k // 2
            h, w = h + 2 * pad - k + 1, w + 2 * pad - k + 1
            layers.append(nn.Conv2d(c, n, k, padding=pad, bias=bias))
            shape = (n, h, w)
        elif kind == "p":
            if len(shape) != 3:
                raise _error(architecture, i, tok, f"is a pooling layer but its input has shape {shape} (not C x H x W)")
            c, h, w = shape
            if n > h or n > w:
                raise _error(architecture, i, tok, f"pools {n}x{n} windows of a {h}x{w} map")
            layers.append(SumPool2d(n))
            shape = (c, (h - n) // n + 1, (w - n) // n + 1)
        else:
            if len(shape) != 1:
                layers.append(nn.Flatten())
                shape = (shape[0] * shape[1] * shape[2],)
            layers.append(nn.Linear(shape[0], n, bias=bias))
            shape = (n,)
        if kind in "cl":
            if j != last_weight:
                layers.append(_make(neuron, shape, "neuron"))
                hidden = sum(1 for w in weight_idx if w <= j)
                names[str(len(layers) - 1)] = f"hidden layer {hidden}: {tok} ({type(layers[-1]).__name__})"
            elif readout is not None:
                layers.append(_make(readout, shape, "readout"))
                names[str(len(layers) - 1)] = f"readout: {tok} ({type(layers[-1]).__name__})"
    net = SpikingSequential(*layers)
    net.architecture = architecture
    net.layer_names = names  # for plots and messages (exodus_lightning.nn.names)
    net.input_shape = parse_input(architecture, tokens[0])
    if init is not None:
        init(net)
    return net


__all__ = ["build_network", "parse_input"]
