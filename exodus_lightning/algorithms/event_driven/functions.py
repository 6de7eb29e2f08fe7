"""Autograd functions of event-driven backpropagation: the SRM weight layer with spike-time
gradients (S20, S21), the adjusted average pooling and the weight normalisation (S22)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from exodus_lightning.algorithms.event_driven.srm import SRMConfig
from exodus_lightning.ops.event import srm_backward, srm_forward


class EventLayerFunction(torch.autograd.Function):
    """Weight layer (linear, or conv2d when ``geometry = (stride, padding)``) followed by SRM neurons,
    with the event-driven backward: ``dW`` from ``e_w`` (S21) and ``ds_in`` from ``e_in`` (S20),
    masked to input spikes and multiplied by ``damping``."""

    @staticmethod
    def forward(ctx, s_in: Tensor, weight: Tensor, cfg: SRMConfig, geometry: Optional[tuple[int, int]]):
        B, T = s_in.shape[:2]
        if geometry is None:
            current = s_in @ weight.t()
        else:
            stride, padding = geometry
            current = F.conv2d(s_in.flatten(0, 1), weight, stride=stride, padding=padding)
            current = current.reshape(B, T, *current.shape[1:])
        out_shape = current.shape
        am, as_, ag, kappa = cfg.op_args()
        spikes, du, dug, _ = srm_forward(current.reshape(B, T, -1), am, as_, ag, kappa, float(cfg.theta), False)
        ctx.save_for_backward(s_in, weight, spikes, du, dug)
        ctx.cfg, ctx.geometry = cfg, geometry
        return spikes.reshape(out_shape)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor):
        s_in, weight, spikes, du, dug = ctx.saved_tensors
        cfg, geometry = ctx.cfg, ctx.geometry
        am, as_, ag, kappa = cfg.op_args()
        B, T = s_in.shape[:2]
        clip = float(cfg.max_dudt_inv) if cfg.max_dudt_inv is not None else 0.0
        e_w, e_in = srm_backward(grad_spikes.reshape(spikes.shape), spikes, du, dug, am, as_, ag, kappa, clip)
        grad_in = grad_w = None
        if geometry is None:
            n_out, n_in = weight.shape
            if ctx.needs_input_grad[1]:
                grad_w = e_w.reshape(-1, n_out).t() @ s_in.reshape(-1, n_in)        # S21
            if ctx.needs_input_grad[0]:
                grad_in = e_in @ weight                                              # S20
        else:
            stride, padding = geometry
            x = s_in.flatten(0, 1)
            out_hw = grad_spikes.shape[-3:]
            if ctx.needs_input_grad[1]:
                grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, e_w.reshape(B * T, *out_hw),
                                                     stride=stride, padding=padding)
            if ctx.needs_input_grad[0]:
                grad_in = torch.nn.grad.conv2d_input(x.shape, weight, e_in.reshape(B * T, *out_hw),
                                                     stride=stride, padding=padding).reshape(s_in.shape)
        if grad_in is not None:
            # Gradients exist only at input spike events (S20 sums over spikes).
            grad_in = grad_in * (s_in != 0).to(grad_in.dtype)
            if cfg.damping != 1.0:
                grad_in = grad_in * cfg.damping
        return grad_in, grad_w, None, None


class AdjustedAvgPoolFunction(torch.autograd.Function):
    """Average pooling of spikes whose backward shares each window's gradient among the window's
    spiking inputs only (the official "adjusted_avg" pooling), so the gradient sum is preserved
    (plain average pooling would scale it by n_spiking / k^2)."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: int):
        B, T = x.shape[:2]
        y = F.avg_pool2d(x.flatten(0, 1), kernel)
        ctx.save_for_backward(x)
        ctx.kernel = kernel
        return y.reshape(B, T, *y.shape[1:])

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        k = ctx.kernel
        mask = (x != 0).to(grad.dtype)
        flat = mask.flatten(0, 1)
        count = F.avg_pool2d(flat, k) * (k * k)
        share = torch.where(count > 0, grad.flatten(0, 1) / count.clamp_min(1), torch.zeros_like(count))
        up = share.repeat_interleave(k, -2).repeat_interleave(k, -1)
        H, W = x.shape[-2:]
        up = F.pad(up, (0, W - up.shape[-1], 0, H - up.shape[-2]))  # rows/cols the pooling dropped
        return up.reshape(x.shape) * mask, None


class WeightNormFunction(torch.autograd.Function):
    """S22 per output channel with the hand-written backward S23–S28 (tested against autograd)."""

    @staticmethod
    def forward(ctx, w0: Tensor, gamma: Tensor, beta: Tensor, eps: float):
        x = w0.reshape(w0.shape[0], -1)
        mu = x.mean(1, keepdim=True)
        var = x.var(1, unbiased=False, keepdim=True)
        inv = torch.rsqrt(var + eps)
        xhat = (x - mu) * inv                                               # S22
        y = gamma[:, None] * xhat + beta[:, None]
        ctx.save_for_backward(x, mu, var, inv, xhat, gamma)
        ctx.eps, ctx.shape = eps, w0.shape
        return y.reshape(w0.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, mu, var, inv, xhat, gamma = ctx.saved_tensors
        m = x.shape[1]
        dy = grad.reshape(x.shape)
        dxhat = dy * gamma[:, None]                                                           # S23
        dvar = (dxhat * (x - mu)).sum(1, keepdim=True) * -0.5 * (var + ctx.eps) ** -1.5      # S25
        # S24; the standard chain rule also has dvar * sum(-2 (x - mu)) / m, which is exactly 0.
        dmu = (dxhat * -inv).sum(1, keepdim=True)
        dx = dxhat * inv + dmu / m + dvar * 2 * (x - mu) / m                                  # S26
        dgamma = (dy * xhat).sum(1)                                                           # S27
        dbeta = dy.sum(1)                                                                     # S28
        return dx.reshape(ctx.shape), dgamma, dbeta, None


def weight_norm(w0: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """S22: ``gamma_k (W0_k - E[W0_k]) / sqrt(Var[W0_k] + eps) + beta_k`` per output channel k."""
    if gamma.shape != (w0.shape[0],) or beta.shape != (w0.shape[0],):
        raise ValueError(f"gamma and beta must have shape ({w0.shape[0]},), got {tuple(gamma.shape)} and "
                         f"{tuple(beta.shape)}")
    return WeightNormFunction.apply(w0, gamma, beta, eps)
