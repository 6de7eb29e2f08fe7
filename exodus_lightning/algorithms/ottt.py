r"""Online training through time (OTTT; Xiao et al., NeurIPS 2022) building blocks.

Per time step ``t`` and spiking layer ``l`` (paper §4.1, suppl. Algorithm 1; ``sg`` = stop-gradient):

.. code-block:: text

    u[t]     = lam * sg(v[t-1]) + I[t]          I[t] = W s^{l-1}[t] + b   (temporal path cut)
    s[t]     = H(u[t] - V_th)                   H(x) = 1 if x >= 0; surrogate: sigmoid' with slope 4
    v[t]     = u[t] - V_th * sg(s[t])           soft reset, detached
    a_hat[t] = lam * a_hat[t-1] + s[t]          presynaptic trace (paper eq. (5), no autograd)

and the weight gradient of the instantaneous loss ``L[t]`` is ``g_u[t] a_hat^{l-1}[t]^T`` (paper
eq. (5)/(7), suppl. B), the input gradient ``W^T g_u[t]``.  Two custom autograd ops do exactly this:

- :class:`OnlineLIFStep` — the single-step LIF of one layer, with the trace update; saves one
  tensor (the surrogate derivative) for backward;
- :func:`trace_linear` / :func:`trace_conv2d` — forward ``W s[t] + b``; backward ``dW = g a_hat^T``,
  ``ds = W^T g``, ``db = sum g``.  They save the trace (not the spikes), so the op runs once per step
  (the official code runs every wrapped op twice, on spikes and on traces).

Between layers a :class:`SpikeTrace` ``(spike, trace)`` pair flows; stateless linear modules
(pooling, flatten, scaling) act on both fields, which is exact because the trace recursion is linear.
:class:`OnlineSequential` runs one time step of such a network; its state (membrane and trace per
layer) is all that survives a step, so training memory is independent of T (paper §4.3).

Normalisation-free pieces (suppl. C.1): :class:`ScaledWSLinear`, :class:`ScaledWSConv2d` (paper
eq. (6): ``W_hat_i = gamma * g_i * (W_i - mean W_i) / sqrt(N var W_i + eps)``, gamma = 2.74 for
Heaviside inputs, learnable gain ``g``) and the VGG-sWS network (:func:`vgg_sws`).

Where the official code (pkuxmq/OTTT-SNN) and the paper differ, the default follows the code and an
option gives the paper: the first weight layer's gradient uses the raw input (code) or its trace
(``input_trace=True``, paper Theorem 2); the readout uses the trace (code, ``readout_trace=True``)
or the spikes (``readout_trace=False``: the exact gradient of the stateless readout).

Example:
    >>> import torch
    >>> from exodus_lightning.algorithms.ottt import build_online_network
    >>> net = build_online_network("20-32l-5l", lam=0.5)
    >>> net.reset_state()
    >>> [net(torch.rand(4, 20)).shape for t in range(3)][-1]      # one call = one time step
    torch.Size([4, 5])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from exodus_lightning.nn.architecture import KINDS, flat_size, parse_architecture, parse_input
from exodus_lightning.nn.spiking_layer import SpikingLayer
from exodus_lightning.spec import records_init_args

__all__ = [
    "GAMMA_HEAVISIDE",
    "heaviside_gamma",
    "SigmoidSurrogate",
    "SpikeTrace",
    "OnlineLIFStep",
    "trace_linear",
    "trace_conv2d",
    "OnlineLIF",
    "OnlineLinear",
    "OnlineConv2d",
    "ScaledWSLinear",
    "ScaledWSConv2d",
    "Scale",
    "SumPool",
    "OnlineSequential",
    "build_online_network",
    "vgg_sws_architecture",
    "vgg_sws",
    "VGG_CFG",
]


def heaviside_gamma(threshold: float = 1.0) -> float:
    r"""``gamma = 1 / sqrt(p (1 - p))`` with ``p = P(N(0,1) > threshold) = erfc(threshold/sqrt 2)/2``:
    the scale that restores unit variance after ``H(x - threshold)`` of a standard normal
    (suppl. C.1; ``threshold = 1`` gives 2.7371, the paper's 2.74)."""
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    p = 0.5 * math.erfc(threshold / math.sqrt(2.0))
    return 1.0 / math.sqrt(p * (1.0 - p))


#: The paper's rounded value of :func:`heaviside_gamma` (``V_th = 1``), as in the official code.
GAMMA_HEAVISIDE = 2.74


def _check_lam(lam: float, name: str = "lam") -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"{name} (the leak lambda = 1 - 1/tau) must be a number in [0, 1], got {lam!r}")
    return float(lam)


def _check_positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------- surrogate


@records_init_args
@dataclass(frozen=True)
class SigmoidSurrogate:
    """Derivative of a sigmoid of slope ``alpha`` (OTTT's surrogate, alpha = 4):
    ``f(v) = alpha sig(alpha (v - theta)) (1 - sig(alpha (v - theta)))``."""

    alpha: float = 4.0

    def __post_init__(self) -> None:
        _check_positive(self.alpha, "alpha")

    def __call__(self, v: Tensor, threshold: Union[float, Tensor]) -> Tensor:
        sg = torch.sigmoid(self.alpha * (v - threshold))
        return self.alpha * sg * (1.0 - sg)


# ----------------------------------------------------------------------------------- ops


class SpikeTrace(NamedTuple):
    """What flows between the layers of an online network at one step: the spikes ``s[t]`` (the
    forward value) and the presynaptic trace ``a_hat[t]`` (for the next weight's gradient)."""

    spike: Tensor
    trace: Tensor


class OnlineLIFStep(torch.autograd.Function):
    """One LIF step with the temporal path cut (module docstring): inputs ``(I, v_prev, lam,
    threshold, surrogate)``, outputs ``(s, v_next)``; only ``s`` is differentiable, with
    ``dI = ds * surrogate(u)``.  ``v_prev`` is a constant for autograd (``sg(v[t-1])``)."""

    @staticmethod
    def forward(ctx: Any, current: Tensor, v_prev: Tensor, lam: float, threshold: float,
                surrogate: Callable[[Tensor, float], Tensor]) -> tuple[Tensor, Tensor]:
        u = lam * v_prev + current
        s = (u >= threshold).to(current.dtype)
        v_next = u - threshold * s
        # Save the surrogate derivative only (one tensor per layer and step), not u and s.
        ctx.save_for_backward(surrogate(u, threshold))
        ctx.mark_non_differentiable(v_next)
        return s, v_next

    @staticmethod
    def backward(ctx: Any, grad_s: Tensor, grad_v: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
        (sg,) = ctx.saved_tensors
        return grad_s * sg, None, None, None, None


class _TraceLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, s: Tensor, trace: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(trace, weight)
        ctx.has_bias = bias is not None
        return F.linear(s, weight, bias)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Optional[Tensor], ...]:
        trace, weight = ctx.saved_tensors
        gs = g @ weight if ctx.needs_input_grad[0] else None
        g2, a2 = g.reshape(-1, g.shape[-1]), trace.reshape(-1, trace.shape[-1])
        gw = g2.t() @ a2 if ctx.needs_input_grad[2] else None  # dW = sum_b g_u a_hat^T (eq. (5))
        gb = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return gs, None, gw, gb


def trace_linear(s: Tensor, trace: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    r"""``W s + b`` whose backward is ``dW = g a_hat^T``, ``ds = W^T g``, ``db = sum g`` (paper
    eq. (5), suppl. B step 7): the spike is the value, the trace ``a_hat`` the weight's input."""
    if s.shape != trace.shape:
        raise ValueError(f"s {tuple(s.shape)} and trace {tuple(trace.shape)} must have the same shape")
    return _TraceLinear.apply(s, trace, weight, bias)


class _TraceConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, s: Tensor, trace: Tensor, weight: Tensor, bias: Optional[Tensor],
                stride: tuple, padding: tuple, dilation: tuple, groups: int) -> Tensor:
        ctx.save_for_backward(trace, weight)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return F.conv2d(s, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Optional[Tensor], ...]:
        trace, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        gs = gw = gb = None
        if ctx.needs_input_grad[0]:
            # The input gradient never needs the spikes (the op is linear): only their shape.
            gs = torch.nn.grad.conv2d_input(trace.shape, weight, g, stride, padding, dilation, groups)
        if ctx.needs_input_grad[2]:
            gw = torch.nn.grad.conv2d_weight(trace, weight.shape, g, stride, padding, dilation, groups)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            gb = g.sum((0, 2, 3))
        return gs, None, gw, gb, None, None, None, None


def trace_conv2d(s: Tensor, trace: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """Convolution version of :func:`trace_linear`: forward ``conv(s, W) + b``, weight gradient from
    the trace (``conv2d_weight(a_hat, g)``), input gradient ``conv2d_input(W, g)``."""
    if s.shape != trace.shape:
        raise ValueError(f"s {tuple(s.shape)} and trace {tuple(trace.shape)} must have the same shape")
    pair = nn.modules.utils._pair
    return _TraceConv2d.apply(s, trace, weight, bias, pair(stride), pair(padding), pair(dilation), groups)


# ----------------------------------------------------------------------------------- modules


@records_init_args
class OnlineLIF(SpikingLayer, nn.Module):
    r"""Single-step LIF neurons for OTTT (module docstring equations): ``forward(I[t])`` returns
    ``SpikeTrace(gamma s[t], gamma a_hat[t])`` and keeps ``v`` and ``a_hat`` as plain attributes
    (never in the ``state_dict``).  Call :meth:`reset_state` before every new sequence
    (:class:`OnlineSequential` does).

    Args:
        lam: leak ``lambda = 1 - 1/tau`` in [0, 1], used directly for the membrane and the trace
            (the official code's tau = 2 gives 0.5; lam = 1 is the IF neuron).
        threshold: ``V_th`` > 0.
        surrogate: ``f(v, threshold)``; None: :class:`SigmoidSurrogate` (alpha = 4).
        scale: factor applied to the spikes and the trace after the neuron (the official code's
            ``Scale(2.74)`` after every neuron; 1 by default, sWS layers fold gamma in instead).

    A :class:`~exodus_lightning.nn.SpikingLayer` of one time step per call: the monitors and
    recorders see its spikes ``s[t]`` (without ``scale``).
    """

    steps_per_call = 1

    def __init__(self, lam: float = 0.5, threshold: float = 1.0,
                 surrogate: Optional[Callable[[Tensor, float], Tensor]] = None, scale: float = 1.0) -> None:
        super().__init__()
        self.lam = _check_lam(lam)
        self.threshold = _check_positive(threshold, "threshold")
        self.scale = _check_positive(scale, "scale")
        surrogate = SigmoidSurrogate() if surrogate is None else surrogate
        if not callable(surrogate):
            raise ValueError(f"surrogate must be callable f(v, threshold), got {type(surrogate).__name__}")
        self.surrogate = surrogate
        self.v: Optional[Tensor] = None
        self.trace: Optional[Tensor] = None

    def reset_state(self) -> None:
        """Forget ``v`` and ``a_hat`` (both restart at 0 at the next step)."""
        self.v, self.trace = None, None

    def forward(self, current: Tensor) -> SpikeTrace:
        if isinstance(current, SpikeTrace):
            raise ValueError("OnlineLIF takes an input current, got a SpikeTrace: put a weight layer before it")
        v = self.v
        if v is None or v.shape != current.shape:
            if v is not None:
                raise ValueError(f"input of shape {tuple(current.shape)} but the state has shape {tuple(v.shape)}; "
                                 "call reset_state() before a new sequence")
            v = torch.zeros_like(current)
        s, v_next = OnlineLIFStep.apply(current, v.detach(), self.lam, self.threshold, self.surrogate)
        with torch.no_grad():
            # The trace never needs a graph: it only enters the next weight's gradient (eq. (5)).
            trace = s.detach() if self.trace is None else self.lam * self.trace + s.detach()
        self.v, self.trace = v_next.detach(), trace
        if self.scale != 1.0:
            return SpikeTrace(self.scale * s, self.scale * trace)
        return SpikeTrace(s, trace)

    def spikes(self, output: SpikeTrace) -> Tensor:
        """``s[t]`` of this step's output (the spikes before ``scale``)."""
        return output.spike / self.scale if self.scale != 1.0 else output.spike

    def extra_repr(self) -> str:
        extra = f", scale={self.scale:g}" if self.scale != 1.0 else ""
        return f"lam={self.lam:g}, threshold={self.threshold:g}{extra}"


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


def _standardise(weight: Tensor, gain: Tensor, gamma: float, eps: float) -> Tensor:
    # Rows = output units; the statistics run over the fan-in (eq. (6)); unbiased var as in the
    # official code (torch default), eps inside the sqrt keeps all-equal rows finite.
    w = weight.reshape(weight.shape[0], -1)
    fan_in = w.shape[1]
    mean = w.mean(1, keepdim=True)
    var = w.var(1, keepdim=True) if fan_in > 1 else torch.zeros_like(mean)
    w_hat = (w - mean) * torch.rsqrt(fan_in * var + eps)
    return (gamma * gain.reshape(-1, 1) * w_hat).reshape(weight.shape)


@records_init_args
class ScaledWSLinear(nn.Linear):
    r"""Linear layer with scaled weight standardisation (OTTT suppl. C.1, eq. (6); Brock et al. 2021):
    ``W_hat_i = gamma g_i (W_i - mean(W_i)) / sqrt(N var(W_i) + eps)`` with ``N`` the fan-in and a
    learnable per-output gain ``g`` (init 1).  ``gamma = 2.74`` (:data:`GAMMA_HEAVISIDE`) restores
    unit variance for Heaviside inputs; use ``gamma=1`` for real-valued inputs (the stem)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gamma: float = GAMMA_HEAVISIDE,
                 eps: float = 1e-4, device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self.gamma = _check_positive(gamma, "gamma")
        self.eps = _check_positive(eps, "eps")
        self.gain = nn.Parameter(torch.ones(out_features, device=device, dtype=dtype))

    def effective_weight(self) -> Tensor:
        """The standardised weight ``W_hat`` (differentiable in ``weight`` and ``gain``)."""
        return _standardise(self.weight, self.gain, self.gamma, self.eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gamma={self.gamma:g}"


@records_init_args
class ScaledWSConv2d(nn.Conv2d):
    """``nn.Conv2d`` with scaled weight standardisation; see :class:`ScaledWSLinear` (fan-in
    ``N = C_in/groups * k_h * k_w``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, gamma: float = GAMMA_HEAVISIDE,
                 eps: float = 1e-4, device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         device=device, dtype=dtype)
        self.gamma = _check_positive(gamma, "gamma")
        self.eps = _check_positive(eps, "eps")
        self.gain = nn.Parameter(torch.ones(out_channels, device=device, dtype=dtype))

    def effective_weight(self) -> Tensor:
        return _standardise(self.weight, self.gain, self.gamma, self.eps)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gamma={self.gamma:g}"


@records_init_args
class Scale(nn.Module):
    """Multiplies by a constant (the official code's ``Scale(2.74)``)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: Tensor) -> Tensor:
        return self.factor * x


@records_init_args
class SumPool(nn.Module):
    """Sum pooling with kernel = stride = ``k`` (``k*k * avg_pool2d``), the EXODUS networks' ``Np``."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = int(k)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.k) * (self.k * self.k)


@records_init_args
class OnlineSequential(nn.Sequential):
    """One time step of an online network: ``forward(x[t]) -> o[t]``.  Children are applied in
    order; :class:`OnlineLIF` turns a current into a :class:`SpikeTrace`, :class:`OnlineLinear` /
    :class:`OnlineConv2d` turn it back into a current, and every other (stateless, linear) child is
    applied to the spike and the trace separately.

    Args:
        *modules: the layers.
        input_trace: None (default, as the official code): the first weight layer sees the raw
            input ``x[t]`` and its gradient uses it; a lambda in [0, 1]: the input is passed as
            ``SpikeTrace(x[t], x_hat[t])`` with ``x_hat[t] = lambda x_hat[t-1] + x[t]`` (paper
            Theorem 2), so the first layer's gradient uses the input trace too.
    """

    def __init__(self, *modules: nn.Module, input_trace: Optional[float] = None) -> None:
        super().__init__(*modules)
        self.input_trace = None if input_trace is None else _check_lam(input_trace, "input_trace")
        self._x_hat: Optional[Tensor] = None

    def reset_state(self) -> None:
        """Start a new sequence: zero membrane and traces of every :class:`OnlineLIF`."""
        self._x_hat = None
        for m in self.modules():
            if isinstance(m, OnlineLIF):
                m.reset_state()

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        h: Union[Tensor, SpikeTrace] = x
        if self.input_trace is not None:
            with torch.no_grad():
                xd = x.detach()
                self._x_hat = xd if self._x_hat is None else self.input_trace * self._x_hat + xd
            h = SpikeTrace(x, self._x_hat)
        for m in self:
            if isinstance(h, SpikeTrace) and not isinstance(m, (OnlineLIF, OnlineLinear, OnlineConv2d)):
                h = SpikeTrace(m(h.spike), m(h.trace))
            else:
                h = m(h)
        return h.spike if isinstance(h, SpikeTrace) else h


# ----------------------------------------------------------------------------------- builders

def build_online_network(
    architecture: str,
    lam: float = 0.5,
    threshold: float = 1.0,
    surrogate: Optional[Callable[[Tensor, float], Tensor]] = None,
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
        lam: leak lambda of every neuron (and of the input trace).
        threshold, surrogate: of every :class:`OnlineLIF`.
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
    lam = _check_lam(lam)
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
            layers.append(SumPool(tok.size))
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
            layers.append(OnlineLIF(lam, threshold, surrogate))
    net = OnlineSequential(*layers, input_trace=lam if input_trace else None)
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


def vgg_sws(input_size: str, num_classes: int, cfg: Sequence[Union[int, str]] = VGG_CFG, lam: float = 0.5,
            **kwargs: Any) -> OnlineSequential:
    """VGG-sWS as an :class:`OnlineSequential` (``sws=True``; other keyword arguments go to
    :func:`build_online_network`)."""
    return build_online_network(vgg_sws_architecture(input_size, num_classes, cfg), lam=lam, sws=True, **kwargs)
