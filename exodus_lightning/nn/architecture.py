"""Networks from the architecture strings of the EXODUS paper (Bauer et al. 2023, appendix 6.4,
Table 2), e.g. ``"64x64x2-2c3-2p-4c3-2p-8c3-2p-16c3-11l"`` (DVS Gesture) and
``"100-128l-128l-20l"`` (Heidelberg Spiking Digits).

The grammar is the framework's one (:func:`parse_architecture`; the OTTT and event-driven networks use
it too); tokens separated by ``-``, each meaning one thing:

- the first token is the input size of one time step: ``F`` (a feature vector) or ``HxWxC``
  (an image with C channels, as the paper writes 64x64x2; the network takes ``(B, T, C, H, W)``);
- ``NcK``: convolution with N output channels, kernel K, stride 1 and padding K // 2 (the paper
  gives no padding; "same" padding for odd K keeps 64x64 maps at 64x64 until pooled); ``NcKpP``:
  padding P;
- ``Np``: sum pooling with kernel and stride N; ``Na``: average pooling (kernel = stride = N);
  ``g``: global average pooling;
- ``Nl``: fully connected with N outputs (a flatten is inserted before the first one after convs).

A builder says which kinds it has (:func:`build_network`: convolution, sum pooling, fully connected);
another kind is an error naming the token and the builder.

A spiking layer follows every weight layer (``c`` or ``l``) except the last, which is followed by
``readout`` (None: nothing, the network outputs the last layer's weighted input).  Pooling tokens
come after the spiking layer, so pools sum spikes.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Union

from torch import nn

from exodus_lightning.nn.init import default_init
from exodus_lightning.nn.neurons import IF
from exodus_lightning.nn.time import SpikingSequential, SumPool2d

NeuronSpec = Union[nn.Module, Callable[..., nn.Module]]

_TOKENS = {
    "conv": re.compile(r"^(\d+)c(\d+)(?:p(\d+))?$"),
    "sum_pool": re.compile(r"^(\d+)p$"),
    "avg_pool": re.compile(r"^(\d+)a$"),
    "global_pool": re.compile(r"^g$"),
    "linear": re.compile(r"^(\d+)l$"),
}
_SPELLING = {"conv": "'NcK' or 'NcKpP' (convolution)", "sum_pool": "'Np' (sum pooling)",
             "avg_pool": "'Na' (average pooling)", "global_pool": "'g' (global average pooling)",
             "linear": "'Nl' (fully connected)"}
KINDS = tuple(_TOKENS)
_INPUT = re.compile(r"^\d+(x\d+)*$")


@dataclass(frozen=True)
class LayerToken:
    """One layer token of an architecture string, with the per-step shapes around it.

    Attributes:
        kind: ``"conv"``, ``"sum_pool"``, ``"avg_pool"``, ``"global_pool"`` or ``"linear"``.
        size: output channels or features; the window of a pooling (0 for ``g``).
        kernel, padding: of a convolution (0 otherwise).
        text, index: the token as written and its position in the string.
        in_shape, out_shape: ``(F,)`` or ``(C, H, W)`` before and after the layer (a fully connected
            layer after a map flattens it: ``in_shape`` is the map).
    """

    kind: str
    size: int
    kernel: int
    padding: int
    text: str
    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def weighted(self) -> bool:
        """Whether the layer has weights (a convolution or a fully connected layer)."""
        return self.kind in ("conv", "linear")


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


def _out_shape(arch: str, i: int, tok: str, kind: str, n: int, k: int, p: int,
               shape: tuple[int, ...]) -> tuple[int, ...]:
    if kind == "linear":
        return (n,)
    if len(shape) != 3:
        what = "a convolution" if kind == "conv" else "a pooling layer"
        raise _error(arch, i, tok, f"is {what} but its input has shape {shape} (not C x H x W)")
    c, h, w = shape
    if kind == "conv":
        h, w = h + 2 * p - k + 1, w + 2 * p - k + 1
        if h < 1 or w < 1:
            raise _error(arch, i, tok, f"shrinks the {shape[1]}x{shape[2]} map to {h}x{w}")
        return (n, h, w)
    if kind == "global_pool":
        return (c, 1, 1)
    if n > h or n > w:
        raise _error(arch, i, tok, f"pools {n}x{n} windows of a {h}x{w} map")
    return (c, h // n, w // n)


def parse_architecture(architecture: str, kinds: Iterable[str] = KINDS,
                       builder: str = "this builder") -> tuple[tuple[int, ...], list[LayerToken]]:
    """The input shape and the layer tokens of ``architecture`` (module docstring), every token parsed
    and every shape checked before anything is built; a token of a kind outside ``kinds`` is an error
    naming ``builder``.

    Example:
        >>> shape, tokens = parse_architecture("8x8x2-4c3-2p-10l")
        >>> shape, [(t.kind, t.out_shape) for t in tokens]
        ((2, 8, 8), [('conv', (4, 8, 8)), ('sum_pool', (4, 4, 4)), ('linear', (10,))])
    """
    if not isinstance(architecture, str):
        raise TypeError(f"architecture must be a string such as '100-128l-20l', got {type(architecture).__name__}")
    kinds = tuple(kinds)
    tokens = [t.strip() for t in architecture.strip().split("-")]
    if not tokens[0]:
        raise ValueError(f"architecture must not be empty, got {architecture!r}")
    for i, tok in enumerate(tokens):
        if not tok:
            raise _error(architecture, i, tok, "is empty (two '-' in a row or a trailing '-')")
    shape = input_shape = parse_input(architecture, tokens[0])
    out: list[LayerToken] = []
    for i, tok in enumerate(tokens[1:], start=1):
        kind = next((k for k, rx in _TOKENS.items() if rx.match(tok)), None)
        if kind is None or kind not in kinds:
            expected = ", ".join(_SPELLING[k] for k in kinds)
            why = "does not parse" if kind is None else f"is {_SPELLING[kind]}, which {builder} does not build"
            raise _error(architecture, i, tok, f"{why}: expected {expected}")
        nums = [int(g) if g is not None else None for g in _TOKENS[kind].match(tok).groups()]
        n = nums[0] if nums else 0
        k = nums[1] if kind == "conv" else 0
        p = (nums[2] if nums[2] is not None else k // 2) if kind == "conv" else 0
        if (nums and n < 1) or (kind == "conv" and k < 1):
            raise _error(architecture, i, tok, "has a zero size")
        new_shape = _out_shape(architecture, i, tok, kind, n, k, p, shape)
        out.append(LayerToken(kind, n, k, p, tok, i, shape, new_shape))
        shape = new_shape
    if not any(t.weighted for t in out):
        raise ValueError(f"architecture {architecture!r} has no weight layer ('NcK' or 'Nl')")
    return input_shape, out


def flat_size(shape: tuple[int, ...]) -> int:
    """Features of one step of ``shape`` once flattened."""
    return math.prod(shape)


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
    for name, spec in (("neuron", neuron), ("readout", readout)):
        if spec is not None and not isinstance(spec, nn.Module) and not callable(spec):
            raise TypeError(f"{name} must be an nn.Module template or a factory callable, got {type(spec).__name__}")
    if init is not None and not callable(init):
        raise TypeError(f"init must be a callable f(module) or None, got {type(init).__name__}")
    neuron = IF() if neuron is None else neuron
    input_shape, tokens = parse_architecture(architecture, ("conv", "sum_pool", "linear"), "build_network")
    weighted = [t for t in tokens if t.weighted]

    layers: list[nn.Module] = []
    names: dict[str, str] = {}  # the spiking/readout layers, after the weight-layer token they follow
    for tok in tokens:
        if tok.kind == "conv":
            layers.append(nn.Conv2d(tok.in_shape[0], tok.size, tok.kernel, padding=tok.padding, bias=bias))
        elif tok.kind == "sum_pool":
            layers.append(SumPool2d(tok.size))
        else:
            if len(tok.in_shape) != 1:
                layers.append(nn.Flatten())
            layers.append(nn.Linear(flat_size(tok.in_shape), tok.size, bias=bias))
        if tok.weighted:
            if tok is not weighted[-1]:
                layers.append(_make(neuron, tok.out_shape, "neuron"))
                hidden = weighted.index(tok) + 1
                names[str(len(layers) - 1)] = f"hidden layer {hidden}: {tok.text} ({type(layers[-1]).__name__})"
            elif readout is not None:
                layers.append(_make(readout, tok.out_shape, "readout"))
                names[str(len(layers) - 1)] = f"readout: {tok.text} ({type(layers[-1]).__name__})"
    net = SpikingSequential(*layers)
    net.architecture = architecture
    net.layer_names = names  # for plots and messages (exodus_lightning.nn.names)
    net.input_shape = input_shape
    if init is not None:
        init(net)
    return net


__all__ = ["build_network", "parse_architecture", "parse_input", "LayerToken", "KINDS", "flat_size"]
