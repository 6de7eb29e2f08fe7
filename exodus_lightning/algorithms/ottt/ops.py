"""OTTT's autograd ops (paper §4.1, eq. (5), suppl. B): the single-step LIF with the temporal path
cut, and the weight ops whose gradient comes from the presynaptic trace."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F


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
