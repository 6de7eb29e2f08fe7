"""Surrogate derivatives f'(v) of the spike function, sinabs-compatible.

Each surrogate is a small callable ``f(v, threshold) -> Tensor`` evaluated on the pre-reset
membrane ``v``.  The built-ins that the native backward kernel knows (SingleExponential,
FastSigmoid, Gaussian, Boxcar) also expose ``fused``: an id plus parameters, so the kernel
computes them inline and no ``(B, T, N)`` surrogate tensor is materialised.  Any other callable
with the same signature works too: it is evaluated in PyTorch and passed to the kernel.

Example:
    >>> import torch
    >>> from exodus_lightning.surrogate import SingleExponential
    >>> f = SingleExponential(grad_width=0.5, grad_scale=1.0)
    >>> f(torch.tensor([1.0]), 1.0)  # peak value 1 / (theta * grad_width)
    tensor([2.])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch

from exodus_lightning.spec import records_init_args

Threshold = Union[float, torch.Tensor]
SurrogateFn = Callable[[torch.Tensor, Threshold], torch.Tensor]

# Ids shared with native/include/exodus/surrogate.h
_SINGLE_EXPONENTIAL, _FAST_SIGMOID, _GAUSSIAN, _BOXCAR = 1, 2, 3, 4


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"surrogate argument {name!r} must be a finite number > 0, got {value!r}")


@records_init_args
@dataclass(frozen=True)
class SingleExponential:
    """Shrestha & Orchard (2018): ``f(v) = grad_scale / (theta w) * exp(-|v - theta| / (theta w))``.

    The default surrogate (as in sinabs and the EXODUS paper).
    """

    grad_width: float = 0.5
    grad_scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("grad_width", self.grad_width)

    def __call__(self, v: torch.Tensor, threshold: Threshold) -> torch.Tensor:
        abs_width = threshold * self.grad_width
        return self.grad_scale / abs_width * torch.exp(-torch.abs(v - threshold) / abs_width)

    @property
    def fused(self) -> tuple[int, float, float, float]:
        return (_SINGLE_EXPONENTIAL, float(self.grad_width), float(self.grad_scale), 0.0)


@records_init_args
@dataclass(frozen=True)
class FastSigmoid:
    """SuperSpike / fast sigmoid (Zenke & Ganguli 2018): ``f(v) = grad_scale / (slope |v - theta| + 1)^2``."""

    slope: float = 25.0
    grad_scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("slope", self.slope)

    def __call__(self, v: torch.Tensor, threshold: Threshold) -> torch.Tensor:
        return self.grad_scale / (self.slope * torch.abs(v - threshold) + 1.0) ** 2

    @property
    def fused(self) -> tuple[int, float, float, float]:
        return (_FAST_SIGMOID, float(self.slope), float(self.grad_scale), 0.0)


SuperSpike = FastSigmoid


def _gaussian(x: torch.Tensor, mu: float, sigma: float) -> torch.Tensor:
    return torch.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))


@records_init_args
@dataclass(frozen=True)
class Gaussian:
    """Gaussian density of ``v - theta``: ``f(v) = grad_scale * N(v - theta; mu, sigma)`` (sinabs)."""

    mu: float = 0.0
    sigma: float = 0.5
    grad_scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("sigma", self.sigma)

    def __call__(self, v: torch.Tensor, threshold: Threshold) -> torch.Tensor:
        return _gaussian(v - threshold, self.mu, self.sigma) * self.grad_scale

    @property
    def fused(self) -> tuple[int, float, float, float]:
        return (_GAUSSIAN, float(self.mu), float(self.sigma), float(self.grad_scale))


@records_init_args
@dataclass(frozen=True)
class MultiGaussian:
    """Yin et al. (2021), as in sinabs: ``(1+h) N(0, s) - h N(s, 6s) - h N(-s, 6s)`` of ``v - theta``."""

    mu: float = 0.0
    sigma: float = 0.5
    h: float = 0.15
    s: float = 6.0
    grad_scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("sigma", self.sigma)

    def __call__(self, v: torch.Tensor, threshold: Threshold) -> torch.Tensor:
        d = v - threshold
        return (
            (1 + self.h) * _gaussian(d, self.mu, self.sigma)
            - self.h * _gaussian(d, self.sigma, self.s * self.sigma)
            - self.h * _gaussian(d, -self.sigma, self.s * self.sigma)
        ) * self.grad_scale

    fused = None


@records_init_args
@dataclass(frozen=True)
class PeriodicExponential:
    """Weidel & Sheik (2021): a single exponential repeated at every multiple of the threshold,
    for multi-spike neurons (``spike="multi"``).

    sinabs subtracts ``floor((v - theta/2) / theta)`` (not times theta) when wrapping; that is the
    same for ``theta = 1`` and we use the periodic form ``mod(v - theta/2, theta)`` for any theta.
    """

    grad_width: float = 0.5
    grad_scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("grad_width", self.grad_width)

    def __call__(self, v: torch.Tensor, threshold: Threshold) -> torch.Tensor:
        shifted = v - threshold / 2
        periodic = shifted - torch.div(shifted, threshold, rounding_mode="floor") * threshold
        wrapped = torch.where(v >= threshold, periodic, shifted)
        return self.grad_scale * torch.exp(-torch.abs(wrapped - threshold / 2) / self.grad_width) / threshold

    fused = None


@records_init_args
@dataclass(frozen=True)
class Boxcar:
    """Rectangular window of unit area: ``f(v) = grad_scale / (2 w)`` where ``|v - theta| <= w``, else 0."""

    width: float = 0.5
    grad_scale: float = 1.0

    def __post_init__(self) -> None:
        _positive("width", self.width)

    def __call__(self, v: torch.Tensor, threshold: Threshold) -> torch.Tensor:
        inside = torch.abs(v - threshold) <= self.width
        return inside.to(v.dtype) * (self.grad_scale / (2 * self.width))

    @property
    def fused(self) -> tuple[int, float, float, float]:
        return (_BOXCAR, float(self.width), float(self.grad_scale), 0.0)


@records_init_args
@dataclass(frozen=True)
class Heaviside:
    """sinabs' ``Heaviside(window)``: ``f(v) = 1[v >= theta - window] / theta``."""

    window: float = 1.0

    def __call__(self, v: torch.Tensor, threshold: Threshold) -> torch.Tensor:
        return (v >= (threshold - self.window)).to(v.dtype) / threshold

    fused = None


@records_init_args
@dataclass(frozen=True)
class SigmoidSurrogate:
    """Derivative of a sigmoid of slope ``alpha`` (OTTT's surrogate, Xiao et al. 2022, alpha = 4):
    ``f(v) = alpha sig(alpha (v - theta)) (1 - sig(alpha (v - theta)))``."""

    alpha: float = 4.0

    def __post_init__(self) -> None:
        _positive("alpha", self.alpha)

    def __call__(self, v: torch.Tensor, threshold: Threshold) -> torch.Tensor:
        sg = torch.sigmoid(self.alpha * (v - threshold))
        return self.alpha * sg * (1.0 - sg)

    fused = None


def fused_spec(surrogate: SurrogateFn) -> Optional[tuple[int, float, float, float]]:
    """The kernel id and parameters of a built-in surrogate, or None for any other callable."""
    spec = getattr(surrogate, "fused", None)
    return spec if isinstance(spec, tuple) else None


__all__ = [
    "SingleExponential",
    "FastSigmoid",
    "SuperSpike",
    "Gaussian",
    "MultiGaussian",
    "PeriodicExponential",
    "Boxcar",
    "Heaviside",
    "SigmoidSurrogate",
    "fused_spec",
]
