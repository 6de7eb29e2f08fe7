"""Scaled weight standardisation of OTTT's normalisation-free networks (suppl. C.1, paper eq. (6);
Brock et al. 2021): ``W_hat_i = gamma g_i (W_i - mean W_i) / sqrt(N var W_i + eps)``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from exodus_lightning.spec import records_init_args


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


def _check_positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


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
