"""Leaky-integrator custom ops (``exodus::leaky_forward``, ``exodus::leaky_backward``):
``v[t] = alpha v[t-1] + c x[t]`` with ``c = 1 - alpha`` if ``norm_input`` else 1 — the
synaptic current, sinabs' ExpLeak and presynaptic traces.  Unlike the LIF, nothing is left to a
Python callable, so the backward is registered directly on the forward op
(``torch.library.register_autograd``).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from exodus_lightning.ops._common import check_operands, float32_under_autocast, launch_context


@torch.library.custom_op("exodus::leaky_forward", mutates_args=())
def leaky_forward(x: Tensor, alpha: Tensor, v0: Optional[Tensor], norm_input: bool) -> Tensor:
    B, T, N = x.shape
    check_operands(x, (("alpha", alpha),), (("v0", v0),))
    lib, tag, device, stream = launch_context(x)
    out = x.new_empty((B, T, N))
    lib.call(
        "leaky_forward", B=B, T=T, N=N, dtype=tag, device=device, stream=stream, x=x, alpha=alpha,
        alpha_per_neuron=int(alpha.numel() > 1), v0=v0, norm_input=int(norm_input), out=out,
    )
    return out


@leaky_forward.register_fake
def _(x, alpha, v0, norm_input):
    return torch.empty_like(x)


float32_under_autocast("exodus::leaky_forward")


@torch.library.custom_op("exodus::leaky_backward", mutates_args=())
def leaky_backward(
    grad_out: Tensor, alpha: Tensor, v0: Optional[Tensor], out: Optional[Tensor], x: Optional[Tensor],
    norm_input: bool, need_alpha_grad: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns (dL/dx, dL/dv0, dL/dalpha per (batch, neuron) or empty)."""
    B, T, N = grad_out.shape
    check_operands(grad_out, (("alpha", alpha),), (("v0", v0),), (("out", out), ("x", x)))
    lib, tag, device, stream = launch_context(grad_out)
    grad_x = grad_out.new_empty((B, T, N))
    grad_v0 = grad_out.new_empty((B, N))
    grad_alpha = grad_out.new_empty((B, N)) if need_alpha_grad else grad_out.new_empty((0,))
    lib.call(
        "leaky_backward", B=B, T=T, N=N, dtype=tag, device=device, stream=stream, grad_out=grad_out, alpha=alpha,
        alpha_per_neuron=int(alpha.numel() > 1), v0=v0, out=out, x=x,
        norm_input=int(norm_input), grad_x=grad_x, grad_v0=grad_v0,
        grad_alpha=grad_alpha,
    )
    return grad_x, grad_v0, grad_alpha


@leaky_backward.register_fake
def _(grad_out, alpha, v0, out, x, norm_input, need_alpha_grad):
    B, T, N = grad_out.shape
    grad_alpha = grad_out.new_empty((B, N)) if need_alpha_grad else grad_out.new_empty((0,))
    return torch.empty_like(grad_out), grad_out.new_empty((B, N)), grad_alpha


def _setup_context(ctx, inputs, output):
    x, alpha, v0, norm_input = inputs
    need_alpha = ctx.needs_input_grad[1]
    ctx.norm_input = norm_input
    ctx.save_for_backward(
        alpha, v0, output if need_alpha else None, x if (need_alpha and norm_input) else None
    )


def _backward(ctx, grad_out):
    alpha, v0, out, x = ctx.saved_tensors
    need_alpha = ctx.needs_input_grad[1]
    grad_x, grad_v0, grad_alpha = torch.ops.exodus.leaky_backward(
        grad_out, alpha, v0 if need_alpha else None, out, x, ctx.norm_input, need_alpha
    )
    d_alpha = None
    if need_alpha:
        d_alpha = grad_alpha.sum(0).to(alpha.dtype)
        if alpha.numel() == 1:
            d_alpha = d_alpha.sum().reshape(alpha.shape)
    d_v0 = grad_v0 if ctx.needs_input_grad[2] else None
    return grad_x, d_alpha, d_v0, None


torch.library.register_autograd("exodus::leaky_forward", _backward, setup_context=_setup_context)
