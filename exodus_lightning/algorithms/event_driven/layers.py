"""The layers of an event-driven network: SRM neurons behind a linear or convolutional weight, and
the adjusted average pooling."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from exodus_lightning.algorithms.event_driven.functions import (
    AdjustedAvgPoolFunction,
    EventLayerFunction,
    weight_norm,
)
from exodus_lightning.algorithms.event_driven.srm import SRMConfig
from exodus_lightning.nn.spiking_layer import SpikingLayer
from exodus_lightning.spec import records_init_args


def check_spikes(x: Tensor, name: str, ndim: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions (B, T, ...), got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have T >= 1 time steps, got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")


class EventWeightLayer(SpikingLayer, nn.Module):
    """Shared part of :class:`EventLinear` and :class:`EventConv2d`: the (optionally normalised)
    weight and the SRM options."""

    def __init__(self, weight_shape: tuple[int, ...], cfg: SRMConfig, use_weight_norm: bool, init_gain: float):
        super().__init__()
        if not isinstance(cfg, SRMConfig):
            raise TypeError(f"cfg must be an SRMConfig, got {type(cfg).__name__}")
        if not init_gain > 0:
            raise ValueError(f"init_gain must be > 0, got {init_gain!r}")
        self.cfg = cfg
        self.use_weight_norm = use_weight_norm
        fan_in = math.prod(weight_shape[1:])
        self.weight0 = nn.Parameter(torch.randn(weight_shape))
        scale = init_gain / math.sqrt(fan_in)
        if use_weight_norm:
            self.gamma = nn.Parameter(torch.full((weight_shape[0],), scale))
            self.beta = nn.Parameter(torch.zeros(weight_shape[0]))
        else:
            with torch.no_grad():
                self.weight0.mul_(scale)

    def weight(self) -> Tensor:
        """The weight the neurons see: S22 when weight normalisation is on, else ``weight0``."""
        if self.use_weight_norm:
            return weight_norm(self.weight0, self.gamma, self.beta)
        return self.weight0

    @torch.no_grad()
    def scale_(self, factor: float) -> None:
        """Multiply the effective weight's scale (used by :meth:`EventDrivenSNN.calibrate`)."""
        if self.use_weight_norm:
            self.gamma.mul_(factor)
            self.beta.mul_(factor)
        else:
            self.weight0.mul_(factor)


@records_init_args
class EventLinear(EventWeightLayer):
    """Fully connected weights + SRM neurons, ``(B, T, in_features) -> (B, T, out_features)`` spikes.

    Args:
        in_features, out_features: sizes.
        cfg: :class:`SRMConfig` (tau_mem, tau_syn, tau_grad, theta, decay, damping, max_dudt_inv).
        weight_norm: use the weight normalisation of S22 (scale ``gamma``, shift ``beta`` per neuron).
        init_gain: initial weight standard deviation times ``sqrt(in_features)``.
    """

    def __init__(self, in_features: int, out_features: int, cfg: Optional[SRMConfig] = None,
                 weight_norm: bool = True, init_gain: float = 1.0):
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        super().__init__((out_features, in_features), cfg or SRMConfig(), weight_norm, init_gain)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        check_spikes(x, "x", 3)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features in its last dimension, got shape "
                             f"{tuple(x.shape)}")
        w = self.weight().to(x.dtype)
        return EventLayerFunction.apply(x.contiguous(), w, self.cfg, None)


@records_init_args
class EventConv2d(EventWeightLayer):
    """2-D convolution + SRM neurons, ``(B, T, C, H, W) -> (B, T, C', H', W')`` spikes."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 cfg: Optional[SRMConfig] = None, weight_norm: bool = True, init_gain: float = 1.0):
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size), ("stride", stride)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an int >= 0, got {padding!r}")
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), cfg or SRMConfig(), weight_norm,
                         init_gain)
        self.in_channels, self.stride, self.padding = in_channels, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        check_spikes(x, "x", 5)
        if x.shape[2] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels (dim 2), got shape {tuple(x.shape)}")
        w = self.weight().to(x.dtype)
        return EventLayerFunction.apply(x.contiguous(), w, self.cfg, (self.stride, self.padding))


@records_init_args
class AdjustedAvgPool2d(nn.Module):
    """Average pooling over ``(B, T, C, H, W)`` with the gradient-sum-preserving backward."""

    def __init__(self, kernel_size: int):
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> Tensor:
        check_spikes(x, "x", 5)
        return AdjustedAvgPoolFunction.apply(x.contiguous(), self.kernel_size)


@records_init_args
class FlattenFeatures(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2)
