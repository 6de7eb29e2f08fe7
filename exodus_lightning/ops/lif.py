"""LIF/IF custom ops (``exodus::lif_forward``, ``exodus::lif_backward``) and the autograd
Function that ties them together (docs/architecture.md §2, §4).

``torch.library.custom_op`` cannot take a Python callable, and a registered autograd formula sees
only the op's inputs; so forward and backward are two ops, and :class:`LIFFunction` calls the
forward op, saves the pre-reset membrane ``v``, and in its backward evaluates the surrogate —
fused in the kernel for the built-ins, or any callable computed in PyTorch — before calling the
backward op.  The ops take ``(B, T, N)`` tensors of any strides (the kernels get contiguous copies,
:meth:`exodus_lightning._native.NativeLibrary.call`); parameters are ``(N,)`` or ``(1,)`` in the
accumulation dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

import torch
from torch import Tensor

from exodus_lightning.ops._common import check_operands, float32_under_autocast, launch_context

if TYPE_CHECKING:
    from exodus_lightning.neuron_parameters import LIFParameters

BACKWARD_MODES = {"exodus": 0, "slayer": 1}


@torch.library.custom_op("exodus::lif_forward", mutates_args=())
def lif_forward(
    x: Tensor,
    alpha: Tensor,
    theta: Tensor,
    beta: Optional[Tensor],
    v0: Optional[Tensor],
    i0: Optional[Tensor],
    reset_mode: int,
    max_spikes: int,
    v_min: Optional[float],
    norm_input: bool,
    return_i_trace: bool,
    check_finite: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Forward scan. Returns (spikes, v pre-reset, v_post[T-1], i[T-1], i trace or empty, non-finite
    flag: int32 ``(1,)``, 1 when x holds a NaN or Inf (``check_finite``), else empty)."""
    B, T, N = x.shape
    check_operands(x, (("alpha", alpha), ("theta", theta), ("beta", beta)), (("v0", v0), ("i0", i0)))
    lib, tag, device, stream = launch_context(x)
    spikes = x.new_empty((B, T, N))
    v = x.new_empty((B, T, N))
    v_final = x.new_empty((B, N))
    i_final = x.new_zeros((B, N))
    i_trace = x.new_empty((B, T, N)) if return_i_trace else x.new_empty((0,))
    nonfinite = x.new_zeros((1,) if check_finite else (0,), dtype=torch.int32)
    lib.call(
        "lif_forward", B=B, T=T, N=N, dtype=tag, device=device, stream=stream,
        x=x, alpha=alpha, theta=theta, beta=beta,
        alpha_per_neuron=int(alpha.numel() > 1), theta_per_neuron=int(theta.numel() > 1),
        beta_per_neuron=int(beta is not None and beta.numel() > 1),
        v0=v0, i0=i0,
        reset_mode=reset_mode, max_spikes=max_spikes, has_clamp=int(v_min is not None),
        v_min=float(v_min) if v_min is not None else 0.0, norm_input=int(norm_input),
        spikes=spikes, v=v, v_final=v_final,
        i_final=i_final if beta is not None else None, i_trace=i_trace,
        nonfinite=nonfinite,
    )
    return spikes, v, v_final, i_final, i_trace, nonfinite


@lif_forward.register_fake
def _(x, alpha, theta, beta, v0, i0, reset_mode, max_spikes, v_min, norm_input, return_i_trace, check_finite=False):
    B, T, N = x.shape
    i_trace = torch.empty_like(x) if return_i_trace else x.new_empty((0,))
    nonfinite = x.new_empty((1,) if check_finite else (0,), dtype=torch.int32)
    return torch.empty_like(x), torch.empty_like(x), x.new_empty((B, N)), x.new_empty((B, N)), i_trace, nonfinite


float32_under_autocast("exodus::lif_forward")


@torch.library.custom_op("exodus::lif_backward", mutates_args=())
def lif_backward(
    grad_spikes: Optional[Tensor],
    grad_v: Optional[Tensor],
    grad_v_final: Optional[Tensor],
    grad_i_final: Optional[Tensor],
    v: Tensor,
    surrogate: Optional[Tensor],
    surrogate_id: int,
    surrogate_p0: float,
    surrogate_p1: float,
    surrogate_p2: float,
    alpha: Tensor,
    theta: Tensor,
    beta: Optional[Tensor],
    v0: Optional[Tensor],
    i_trace: Optional[Tensor],
    reset_mode: int,
    max_spikes: int,
    v_min: Optional[float],
    norm_input: bool,
    backward_mode: int,
    need_alpha_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Reverse scan. Returns (dL/dx, dL/dv0, dL/di0, dL/dalpha per (batch, neuron) or empty)."""
    B, T, N = v.shape
    check_operands(v, (("alpha", alpha), ("theta", theta), ("beta", beta)),
                   (("grad_v_final", grad_v_final), ("grad_i_final", grad_i_final), ("v0", v0)),
                   (("grad_spikes", grad_spikes), ("grad_v", grad_v), ("surrogate", surrogate), ("i_trace", i_trace)))
    lib, tag, device, stream = launch_context(v)
    grad_x = v.new_empty((B, T, N))
    grad_v0 = v.new_empty((B, N))
    grad_i0 = v.new_zeros((B, N))
    grad_alpha = v.new_empty((B, N)) if need_alpha_grad else v.new_empty((0,))
    lib.call(
        "lif_backward", B=B, T=T, N=N, dtype=tag, device=device, stream=stream,
        grad_spikes=grad_spikes, grad_v=grad_v, grad_v_final=grad_v_final,
        grad_i_final=grad_i_final, v=v, surrogate=surrogate,
        surrogate_id=surrogate_id, surrogate_p0=surrogate_p0, surrogate_p1=surrogate_p1,
        surrogate_p2=surrogate_p2, alpha=alpha, theta=theta, beta=beta,
        alpha_per_neuron=int(alpha.numel() > 1), theta_per_neuron=int(theta.numel() > 1),
        beta_per_neuron=int(beta is not None and beta.numel() > 1),
        v0=v0, i_trace=i_trace,
        reset_mode=reset_mode, max_spikes=max_spikes, has_clamp=int(v_min is not None),
        v_min=float(v_min) if v_min is not None else 0.0, norm_input=int(norm_input),
        backward_mode=backward_mode,
        grad_x=grad_x, grad_v0=grad_v0,
        grad_i0=grad_i0 if beta is not None else None, grad_alpha=grad_alpha,
    )
    return grad_x, grad_v0, grad_i0, grad_alpha


@lif_backward.register_fake
def _(grad_spikes, grad_v, grad_v_final, grad_i_final, v, surrogate, surrogate_id, surrogate_p0, surrogate_p1,
      surrogate_p2, alpha, theta, beta, v0, i_trace, reset_mode, max_spikes, v_min, norm_input, backward_mode,
      need_alpha_grad):
    B, T, N = v.shape
    grad_alpha = v.new_empty((B, N)) if need_alpha_grad else v.new_empty((0,))
    return torch.empty_like(v), v.new_empty((B, N)), v.new_empty((B, N)), grad_alpha


class LIFKernelArguments(NamedTuple):
    """What the two ops take besides the tensors autograd differentiates (``x``, ``alpha``,
    ``v0``, ``i0``): built once per call from a validated
    :class:`~exodus_lightning.neuron_parameters.LIFParameters`."""

    theta: Tensor
    beta: Optional[Tensor]
    reset_mode: int
    max_spikes: int
    v_min: Optional[float]
    norm_input: bool
    backward_mode: int
    surrogate_spec: tuple[int, float, float, float]  # (id, p0, p1, p2); id 0: evaluate ``surrogate`` in PyTorch
    surrogate: Callable[[Tensor, Tensor], Tensor]
    check_finite: bool

    @classmethod
    def of(cls, p: "LIFParameters", theta: Tensor, beta: Optional[Tensor], backward_mode: int,
           fused: Optional[tuple[int, float, float, float]], check_finite: bool) -> "LIFKernelArguments":
        """The arguments for neuron parameters ``p`` (``theta``/``beta`` from ``p.kernel_tensors``),
        a backward mode (:data:`BACKWARD_MODES`) and the fused surrogate spec (None: not fused)."""
        v_min = None if p.min_v_mem is None else float(p.min_v_mem)
        return cls(theta, beta, p.reset_mode, p.max_spikes, v_min, p.norm_input, backward_mode,
                   fused if fused is not None else (0, 0.0, 0.0, 0.0), p.surrogate, bool(check_finite))


class LIFFunction(torch.autograd.Function):
    """Autograd glue: forward op, surrogate evaluation, backward op (EXODUS or SLAYER)."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, v0: Optional[Tensor], i0: Optional[Tensor],
                k: LIFKernelArguments):
        need_alpha = ctx.needs_input_grad[1]
        has_syn = k.beta is not None
        # The alpha gradient needs i[t] where norm_input makes c = 1 - alpha depend on alpha.
        need_i_trace = need_alpha and k.norm_input and has_syn
        spikes, v, v_final, i_final, i_trace, nonfinite = torch.ops.exodus.lif_forward(
            x, alpha, k.theta, k.beta, v0, i0, k.reset_mode, k.max_spikes, k.v_min, k.norm_input, need_i_trace,
            k.check_finite,
        )
        ctx.mark_non_differentiable(nonfinite)
        if need_alpha and k.norm_input and not has_syn:
            i_trace = x  # i = x without a synapse: save the input instead of a copy
        elif not need_i_trace:
            i_trace = None
        ctx.save_for_backward(v, alpha, k.theta, k.beta, v0 if need_alpha else None, i_trace)
        ctx.kernel = k
        ctx.set_materialize_grads(False)
        return spikes, v, v_final, i_final, nonfinite

    @staticmethod
    def backward(ctx, g_spikes, g_v, g_v_final, g_i_final, g_nonfinite=None):
        v, alpha, theta, beta, v0, i_trace = ctx.saved_tensors
        k: LIFKernelArguments = ctx.kernel
        surrogate_id, p0, p1, p2 = k.surrogate_spec
        surrogate = None
        if surrogate_id == 0:
            # theta is (N,) or (1,): broadcasts over (B, T, N) right-aligned.
            surrogate = k.surrogate(v, theta.to(v.dtype)).to(v.dtype)
        need_alpha = ctx.needs_input_grad[1]
        grad_x, grad_v0, grad_i0, grad_alpha = torch.ops.exodus.lif_backward(
            g_spikes, g_v, g_v_final, g_i_final, v, surrogate, surrogate_id, p0, p1, p2,
            alpha, theta, beta, v0, i_trace, k.reset_mode, k.max_spikes, k.v_min, k.norm_input, k.backward_mode,
            need_alpha,
        )
        d_alpha = None
        if need_alpha:
            d_alpha = grad_alpha.sum(0).to(alpha.dtype)
            if alpha.numel() == 1:
                d_alpha = d_alpha.sum().reshape(alpha.shape)
        d_v0 = grad_v0 if ctx.needs_input_grad[2] else None
        d_i0 = grad_i0 if ctx.needs_input_grad[3] else None
        return grad_x, d_alpha, d_v0, d_i0, None
