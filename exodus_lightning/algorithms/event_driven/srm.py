"""The SRM neuron of event-driven backpropagation: the dual-exponential kernel (S16), the backward
kernel, and the validated neuron/gradient options (:class:`SRMConfig`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from exodus_lightning.spec import records_init_args
from exodus_lightning.time_constants import Decay, check_decay, decay_factor, min_tau


def srm_kernel(n: int, tau_mem: float, tau_syn: float, decay: Decay = "exp") -> Tensor:
    """``eps(d)`` of S16 for ``d = 0..n-1`` (float64), ``tau_mem/(tau_mem-tau_syn) (a_m^(d+1) - a_s^(d+1))``."""
    d = torch.arange(1, n + 1, dtype=torch.float64)
    am, as_ = decay_factor(tau_mem, decay), decay_factor(tau_syn, decay)
    return tau_mem / (tau_mem - tau_syn) * (am ** d - as_ ** d)


def gradient_kernel(n: int, tau_grad: float, decay: Decay = "exp") -> Tensor:
    """Backward kernel ``h(d) = a_g^(d+1)`` for ``d = 0..n-1`` (float64); ``exp(-d/tau_grad)`` of
    section 3.3 times the constant ``a_g``, which cancels in ``h / g``."""
    d = torch.arange(1, n + 1, dtype=torch.float64)
    return decay_factor(tau_grad, decay) ** d


@records_init_args
@dataclass(frozen=True)
class SRMConfig:
    """Neuron and gradient options of an event-driven layer (validated on construction)."""

    tau_mem: float = 8.0
    tau_syn: float = 4.0
    tau_grad: float = 3.0
    theta: float = 1.0
    decay: Decay = "exp"
    damping: float = 1.0
    max_dudt_inv: Optional[float] = None

    def __post_init__(self) -> None:
        low = min_tau(check_decay(self.decay))  # 1 - 1/tau must lie in [0, 1)
        for name in ("tau_mem", "tau_syn", "tau_grad", "theta", "damping"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{name} must be a float, got {type(v).__name__}")
            if not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v!r}")
        for name in ("tau_mem", "tau_syn", "tau_grad"):
            if not getattr(self, name) > low:
                raise ValueError(f"{name} must be > {low:g} with decay={self.decay!r}, got {getattr(self, name)!r}")
        if not self.tau_mem > self.tau_syn:
            raise ValueError(f"tau_mem must be > tau_syn (S16), got tau_mem={self.tau_mem!r}, tau_syn={self.tau_syn!r}")
        if not self.theta > 0:
            raise ValueError(f"theta must be > 0, got {self.theta!r}")
        if not 0 < self.damping <= 1:
            raise ValueError(f"damping must lie in (0, 1], got {self.damping!r}")
        if self.max_dudt_inv is not None and not (isinstance(self.max_dudt_inv, (int, float))
                                                  and self.max_dudt_inv > 0):
            raise ValueError(f"max_dudt_inv must be > 0 or None, got {self.max_dudt_inv!r}")

    @property
    def decays(self) -> tuple[float, float, float]:
        return (decay_factor(self.tau_mem, self.decay), decay_factor(self.tau_syn, self.decay),
                decay_factor(self.tau_grad, self.decay))

    @property
    def kappa(self) -> float:
        return self.tau_mem / (self.tau_mem - self.tau_syn)

    def op_args(self) -> tuple[float, float, float, float]:
        am, as_, ag = self.decays
        return am, as_, ag, self.kappa
