"""Builders of online networks from the framework's one architecture grammar, and OTTT's VGG-sWS."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from exodus_lightning.algorithms.ottt.layers import (
    OnlineConv2d,
    OnlineLinear,
    OnlineSequential,
)
from exodus_lightning.algorithms.ottt.neuron import OnlineLIF
from exodus_lightning.algorithms.ottt.weight_standardization import (
    GAMMA_HEAVISIDE,
    ScaledWSConv2d,
    ScaledWSLinear,
    _check_positive,
)
from exodus_lightning.nn.architecture import (
    KINDS,
    flat_size,
    parse_architecture,
    parse_input,
)
from exodus_lightning.nn.time import SumPool2d
from exodus_lightning.time_constants import Decay


def build_online_network(
    architecture: str,
    tau_mem: float = 2.0,
    threshold: float = 1.0,
    surrogate: Optional[Callable[[Tensor, float], Tensor]] = None,
    decay: Decay = "euler",
    sws: bool = False,
    gamma: float = GAMMA_HEAVISIDE,
    bias: bool = True,
    readout_trace: bool = True,
    input_trace: bool = False,
) -> OnlineSequential:
    """Build an :class:`OnlineSequential` from an architecture string in the framework's one grammar
    (:func:`exodus_lightning.nn.architecture.parse_architecture`, one step at a time): ``F`` or ``HxWxC``
    input, then ``NcK``/``NcKpP`` (conv), ``Nl`` (linear), ``Np`` (sum pool) or ``Na`` (average pool, the
    VGG-sWS pooling) with kernel = stride = N, ``g`` (global average pool).
    Every weight layer but the last is followed by an :class:`OnlineLIF`; the last one is the
    stateless readout ``o[t] = W x[t] + b`` (suppl. C.2.2).

    Args:
        architecture: e.g. ``"100-128l-128l-20l"`` or ``"48x48x2-64c3-2a-128c3-g-10l"``.
        tau_mem, threshold, surrogate, decay: of every :class:`OnlineLIF` (its ``lam`` also decays
            the input trace).
        sws: use :class:`ScaledWSConv2d`/:class:`ScaledWSLinear` for the hidden weight layers (the
            first with gamma = 1: its input is not a spike train; the others with ``gamma``); the
            readout stays a plain Linear (as the official VGG), initialised N(0, (0.01 gamma)^2) so
            its effective scale matches the official ``Scale(2.74)`` + N(0, 0.01^2) readout.
        gamma: the sWS scale for spike inputs (suppl. C.1).
        bias: weight layers with a bias.
        readout_trace: the readout's weight gradient uses the trace (official code) instead of the
            spikes (the exact gradient of a stateless readout).
        input_trace: the first layer's gradient uses the input trace (paper Theorem 2) instead of
            the raw input (official code).

    Without ``sws`` weights start at N(0, 2/fan_in) (the framework's ``default_init``); with it,
    convs are Kaiming-normal (fan_out), as the official code.
    """
    if not isinstance(architecture, str) or not architecture.strip():
        raise ValueError(f"architecture must be a non-empty string such as '100-128l-10l', got {architecture!r}")
    _check_positive(threshold, "threshold")
    _check_positive(gamma, "gamma")
    _, tokens = parse_architecture(architecture, KINDS, "build_online_network")
    weighted = [t for t in tokens if t.weighted]
    layers: list[nn.Module] = []
    for tok in tokens:
        first, last = tok is weighted[0], tok is weighted[-1]
        if tok.kind == "conv":
            cls = ScaledWSConv2d if sws else nn.Conv2d
            kw = {"gamma": 1.0 if first else gamma} if sws else {}
            conv = cls(tok.in_shape[0], tok.size, tok.kernel, padding=tok.padding, bias=bias, **kw)
            layers.append(OnlineConv2d(conv, use_trace=readout_trace if last else True))
        elif tok.kind == "sum_pool":
            layers.append(SumPool2d(tok.size))
        elif tok.kind == "avg_pool":
            layers.append(nn.AvgPool2d(tok.size))
        elif tok.kind == "global_pool":
            layers.append(nn.AdaptiveAvgPool2d(1))
        else:
            if len(tok.in_shape) != 1:
                layers.append(nn.Flatten())
            n_in = flat_size(tok.in_shape)
            if sws and not last:
                lin: nn.Linear = ScaledWSLinear(n_in, tok.size, bias=bias, gamma=1.0 if first else gamma)
            else:
                lin = nn.Linear(n_in, tok.size, bias=bias)
            layers.append(OnlineLinear(lin, use_trace=readout_trace if last else True))
        if tok.weighted and not last:
            layers.append(OnlineLIF(tau_mem=tau_mem, threshold=threshold, surrogate=surrogate, decay=decay))
    net = OnlineSequential(*layers, input_trace=bool(input_trace))
    _init(net, sws, gamma)
    return net


def _init(net: OnlineSequential, sws: bool, gamma: float) -> None:
    wrapped = [m.layer for m in net if isinstance(m, (OnlineLinear, OnlineConv2d))]
    with torch.no_grad():
        for i, layer in enumerate(wrapped):
            readout = i == len(wrapped) - 1
            if layer.bias is not None:
                layer.bias.zero_()
            if sws and readout and isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, 0.01 * gamma)
            elif sws:
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            else:
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0.0, math.sqrt(2.0 / fan_in))


#: VGG-sWS of the official code: numbers are 3x3 conv channels, "M" a 2x2 average pool.
VGG_CFG: tuple = (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)


def vgg_sws_architecture(input_size: str, num_classes: int, cfg: Sequence[Union[int, str]] = VGG_CFG) -> str:
    """The architecture string of VGG-sWS (suppl. C.1/C.2, official ``vgg`` model): 3x3 convs with
    the channels of ``cfg``, ``"M"`` = 2x2 average pooling, then global average pooling and a
    linear readout, e.g. ``vgg_sws_architecture("32x32x3", 10)``."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    parse_input(input_size, input_size)
    parts = [input_size]
    for c in cfg:
        if c == "M":
            parts.append("2a")
        elif isinstance(c, int) and not isinstance(c, bool) and c > 0:
            parts.append(f"{c}c3")
        else:
            raise ValueError(f"cfg entries must be positive ints or 'M', got {c!r}")
    return "-".join(parts + ["g", f"{num_classes}l"])


def vgg_sws(input_size: str, num_classes: int, cfg: Sequence[Union[int, str]] = VGG_CFG, **kwargs: Any) -> OnlineSequential:
    """VGG-sWS as an :class:`OnlineSequential` (``sws=True``; other keyword arguments, e.g.
    ``tau_mem``, go to :func:`build_online_network`)."""
    return build_online_network(vgg_sws_architecture(input_size, num_classes, cfg), sws=True, **kwargs)
