"""The one time-constant convention of the framework (docs/architecture.md §3).

Every time constant is in **time steps**.  A trace with time constant ``tau`` decays per step by

    a = exp(-1 / tau)            decay="exp"    (the exact solution of tau dv/dt = -v over one step;
                                                 every neuron of the framework by default)
    a = 1 - 1 / tau              decay="euler"  (one forward-Euler step of the same equation)

``tau = inf`` gives ``a = 1`` (integrate-and-fire) in both.  The Euler form is the convention of
OTTT's official code (``lambda = 1 - 1/tau``, Xiao et al. 2022: tau = 2 is lambda = 0.5) and of
the event-driven backprop code (Zhu et al. 2024); the two conventions describe the same decay
``a`` with different ``tau``: ``exp(-1/tau_exp) = 1 - 1/tau_euler``, i.e.
``tau_exp = -1 / log(1 - 1/tau_euler)`` (:func:`exp_equivalent_tau`).

Physical times enter only through the data: a DataModule bins events into windows of
``time_window_ms``, and a time constant of ``tau_ms`` milliseconds is ``tau_ms / time_window_ms``
steps (e.g. the sparse-SGD paper's 10 ms at 2 ms bins is ``tau_mem=5.0``).

Example:
    >>> from exodus_lightning.time_constants import decay_factor, exp_equivalent_tau
    >>> decay_factor(2.0, "euler"), round(decay_factor(2.0), 4)
    (0.5, 0.6065)
    >>> round(decay_factor(exp_equivalent_tau(2.0), "exp"), 12)
    0.5
"""

from __future__ import annotations

import math
from typing import Literal, Union

import torch
from torch import Tensor

Decay = Literal["exp", "euler"]
DECAYS: tuple[str, ...] = ("exp", "euler")

Scalar = Union[float, Tensor]


def check_decay(decay: object, name: str = "decay") -> str:
    """``decay`` itself when it is one of :data:`DECAYS`, else a ValueError naming ``name``."""
    if decay not in DECAYS:
        raise ValueError(f"{name} must be 'exp' (a = exp(-1/tau)) or 'euler' (a = 1 - 1/tau), got {decay!r}")
    return str(decay)


def min_tau(decay: str) -> float:
    """The smallest time constant of a decay in [0, 1]: 0 (exclusive) for "exp", 1 for "euler"."""
    return 1.0 if decay == "euler" else 0.0


def decay_factor(tau: Scalar, decay: Decay = "exp") -> Scalar:
    """Per-step decay ``a`` of a trace with time constant ``tau`` steps: ``exp(-1/tau)`` or
    ``1 - 1/tau`` (module docstring); a float for a float, a tensor (differentiable) for a tensor."""
    check_decay(decay)
    if isinstance(tau, Tensor):
        return torch.exp(-1.0 / tau) if decay == "exp" else 1.0 - 1.0 / tau
    return math.exp(-1.0 / tau) if decay == "exp" else 1.0 - 1.0 / tau


def exp_equivalent_tau(tau: Scalar, decay: Decay = "euler") -> Scalar:
    """The ``tau`` of the exponential convention with the same per-step decay as ``tau`` of
    ``decay``: ``-1 / log(a)`` (inf for ``a = 1``, 0 for ``a = 0``)."""
    if check_decay(decay) == "exp":
        return tau
    a = decay_factor(tau, decay)
    if isinstance(a, Tensor):
        return -1.0 / torch.log(a)
    if a >= 1.0:
        return math.inf
    return 0.0 if a <= 0.0 else -1.0 / math.log(a)


__all__ = ["Decay", "DECAYS", "check_decay", "min_tau", "decay_factor", "exp_equivalent_tau"]
