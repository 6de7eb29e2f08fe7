"""The weight layers and the container of an online (one step per call) network: spike and trace
flow side by side as a :class:`~exodus_lightning.algorithms.ottt.ops.SpikeTrace`."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from exodus_lightning.algorithms.ottt.neuron import OnlineLIF
from exodus_lightning.algorithms.ottt.ops import SpikeTrace, trace_conv2d, trace_linear
from exodus_lightning.spec import records_init_args


def _weight_of(layer: nn.Module) -> Tensor:
    fn = getattr(layer, "effective_weight", None)
    return fn() if callable(fn) else layer.weight


@records_init_args
class OnlineLinear(nn.Module):
    """Wraps an ``nn.Linear`` (or :class:`ScaledWSLinear`) for online training: a
    :class:`SpikeTrace` input goes through :func:`trace_linear` (gradient from the trace) when
    ``use_trace``, else through the plain layer on the spikes; a plain tensor input (the network's
    input, the stem) goes through the plain layer (the official code's unwrapped first layer)."""

    def __init__(self, layer: nn.Linear, use_trace: bool = True) -> None:
        super().__init__()
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"layer must be an nn.Linear, got {type(layer).__name__}")
        self.layer = layer
        self.use_trace = bool(use_trace)

    def forward(self, x: Union[Tensor, SpikeTrace]) -> Tensor:
        if isinstance(x, SpikeTrace):
            if self.use_trace:
                return trace_linear(x.spike, x.trace, _weight_of(self.layer), self.layer.bias)
            x = x.spike
        return self.layer(x)

    def extra_repr(self) -> str:
        return f"use_trace={self.use_trace}"


@records_init_args
class OnlineConv2d(nn.Module):
    """:class:`OnlineLinear` for an ``nn.Conv2d`` (or :class:`ScaledWSConv2d`), via :func:`trace_conv2d`."""

    def __init__(self, layer: nn.Conv2d, use_trace: bool = True) -> None:
        super().__init__()
        if not isinstance(layer, nn.Conv2d) or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError("layer must be an nn.Conv2d with numeric zero padding, got "
                             f"{type(layer).__name__}")
        self.layer = layer
        self.use_trace = bool(use_trace)

    def forward(self, x: Union[Tensor, SpikeTrace]) -> Tensor:
        if isinstance(x, SpikeTrace):
            if self.use_trace:
                c = self.layer
                return trace_conv2d(x.spike, x.trace, _weight_of(c), c.bias, c.stride, c.padding, c.dilation, c.groups)
            x = x.spike
        return self.layer(x)

    def extra_repr(self) -> str:
        return f"use_trace={self.use_trace}"


@records_init_args
class OnlineSequential(nn.Sequential):
    """One time step of an online network: ``forward(x[t]) -> o[t]``.  Children are applied in
    order; :class:`OnlineLIF` turns a current into a :class:`SpikeTrace`, :class:`OnlineLinear` /
    :class:`OnlineConv2d` turn it back into a current, and every other (stateless, linear) child is
    applied to the spike and the trace separately.

    Args:
        *modules: the layers.
        input_trace: False (default, as the official code): the first weight layer sees the raw
            input ``x[t]`` and its gradient uses it; True: the input is passed as
            ``SpikeTrace(x[t], x_hat[t])`` with ``x_hat[t] = lam x_hat[t-1] + x[t]`` (paper
            Theorem 2; ``lam`` of the first :class:`OnlineLIF`), so the first layer's gradient uses
            the input trace too.
    """

    def __init__(self, *modules: nn.Module, input_trace: bool = False) -> None:
        super().__init__(*modules)
        if not isinstance(input_trace, bool):
            raise TypeError(f"input_trace must be a bool, got {input_trace!r}")
        neurons = [m for m in self.modules() if isinstance(m, OnlineLIF)]
        if input_trace and not neurons:
            raise ValueError("input_trace=True needs an OnlineLIF in the network (its lam decays the input trace)")
        self.input_trace = input_trace
        self._input_decay = neurons[0].lam if input_trace else 0.0
        self._x_hat: Optional[Tensor] = None

    def reset_state(self) -> None:
        """Start a new sequence: zero membrane and traces of every :class:`OnlineLIF`."""
        self._x_hat = None
        for m in self.modules():
            if isinstance(m, OnlineLIF):
                m.reset_state()

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        h: Union[Tensor, SpikeTrace] = x
        if self.input_trace:
            with torch.no_grad():
                xd = x.detach()
                self._x_hat = xd if self._x_hat is None else self._input_decay * self._x_hat + xd
            h = SpikeTrace(x, self._x_hat)
        for m in self:
            if isinstance(h, SpikeTrace) and not isinstance(m, (OnlineLIF, OnlineLinear, OnlineConv2d)):
                h = SpikeTrace(m(h.spike), m(h.trace))
            else:
                h = m(h)
        return h.spike if isinstance(h, SpikeTrace) else h
