"""The LIF/IF neuron's parameters as one object (norse's ``LIFParameters`` is the model),
validated once where it is built and passed down to :func:`exodus_lightning.functional.lif` and
the native ops (docs/architecture.md §3).

Validation runs in ``__post_init__``: names, modes and Python numbers are checked on the host;
tensor values (a trained ``tau_mem``, per-neuron thresholds) are checked where they live — at
once on the CPU, and on a GPU by a device-side assertion (``torch._assert_async``) that costs no
host synchronisation (a failing one surfaces as a RuntimeError at the next synchronisation).

Example:
    >>> import torch
    >>> from exodus_lightning.neuron_parameters import LIFParameters
    >>> p = LIFParameters(tau_mem=10.0, threshold=0.5)
    >>> p.max_spikes, p.reset_mode
    (1, 0)
    >>> alpha, theta, beta = p.kernel_tensors((3,), torch.device("cpu"), torch.float64)
    >>> round(alpha.item(), 6), theta.tolist(), beta
    (0.904837, [0.5], None)
    >>> LIFParameters(tau_mem=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: tau_mem must be > 0, got -1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from exodus_lightning.surrogate import SingleExponential, SurrogateFn
from exodus_lightning.time_constants import Decay, check_decay, decay_factor, min_tau

Param = Union[float, Tensor]

RESETS = {"subtract": 0, "zero": 1}
DEFAULT_SURROGATE = SingleExponential()  # one immutable instance: no construction inside torch.compile graphs


def max_spikes_of(spike: Union[str, int]) -> int:
    """Kernel spike mode: 1 single, 0 unbounded multi, k at most k spikes per step."""
    if spike == "single":
        return 1
    if spike == "multi":
        return 0
    if isinstance(spike, int) and not isinstance(spike, bool) and spike >= 1:
        return spike
    raise ValueError(f"spike must be 'single', 'multi' or an int k >= 1 (max-k spikes), got {spike!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require(ok: Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless the boolean tensor ``ok`` is true; on a GPU a
    device-side assertion instead (no host synchronisation); nothing while torch.compile traces
    (a data-dependent branch would break ``fullgraph=True``)."""
    if torch.compiler.is_compiling() or ok.device.type == "meta":  # meta tensors hold no values
        return
    if ok.device.type == "cpu":
        if not bool(ok):
            raise ValueError(message)
    else:
        torch._assert_async(ok, message)


def check_time_constant(value: Param, name: str, allow_inf: bool, low: float = 0.0) -> None:
    """``value`` > ``low`` (>= ``low`` when ``low`` > 0) and not NaN; finite unless ``allow_inf``."""
    need = f"> 0{'' if allow_inf else ' and finite'}" if low == 0.0 else f">= {low:g}{'' if allow_inf else ' and finite'}"
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a float or a floating-point tensor, got dtype {value.dtype}")
        v = value.detach()
        ok = ~torch.isnan(v) & ((v > low) if low == 0.0 else (v >= low))
        if not allow_inf:
            ok = ok & ~torch.isinf(v)
        require(ok.all(), f"{name} must be {need} everywhere")
    elif _is_number(value):
        bad = math.isnan(value) or (value <= low if low == 0.0 else value < low)
        if bad or (not allow_inf and math.isinf(value)):
            raise ValueError(f"{name} must be {need}, got {value!r}")
    else:
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")


def neuron_tensor(value: Param, name: str, features: tuple[int, ...], device: torch.device,
                  dtype: torch.dtype) -> Tensor:
    """A scalar or per-neuron parameter as a ``(1,)`` or ``(N,)`` tensor in ``dtype``.

    Tensors broadcast right-aligned over the feature dims, e.g. ``(C, 1, 1)`` over ``(C, H, W)``;
    autograd flows through (for a trained tau)."""
    if isinstance(value, Tensor):
        if value.device != device:
            raise ValueError(f"{name} is on {value.device} but x is on {device}; move both to the same device")
        t = value.to(dtype)
    else:
        t = torch.tensor(float(value), dtype=dtype, device=device)
    if t.numel() == 1:
        return t.reshape(1)
    try:
        expanded = torch.broadcast_shapes(t.shape, features)
    except RuntimeError:
        expanded = None
    if expanded != tuple(features):
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast over the feature shape {tuple(features)} "
            "(right-aligned, e.g. (C, 1, 1) for per-channel values of a (C, H, W) layer)"
        )
    return t.expand(features).reshape(-1)


@dataclass(frozen=True, eq=False)
class LIFParameters:
    r"""Parameters of the LIF/IF neurons (docs/architecture.md §3), per neuron, t = 0 … T-1:

    .. code-block:: text

        i[t]      = beta (i[t-1] + x[t])           synapse, if tau_syn is given (else i[t] = x[t])
        v[t]      = alpha v_post[t-1] + c i[t]     c = 1 - alpha if norm_input else 1
        s[t]      = H(v[t] - threshold)            spike="single" | max(0, trunc(v/threshold)) "multi" | capped at k
        v_post[t] = max(v[t] - threshold s[t], min_v_mem)   reset="subtract" (or v[t] 1[s[t] = 0], "zero")

    with ``alpha``/``beta`` the per-step decays of ``tau_mem``/``tau_syn``
    (:func:`exodus_lightning.time_constants.decay_factor`: ``exp(-1/tau)``, or ``1 - 1/tau`` with
    ``decay="euler"``).

    Args:
        tau_mem: membrane time constant in time steps (float or tensor; ``inf`` is the IF neuron).
        threshold: firing threshold > 0 (float or tensor).
        reset: ``"subtract"`` or ``"zero"``.
        spike: ``"single"``, ``"multi"`` or an int k (at most k spikes per step).
        tau_syn: synaptic time constant in steps (None: no synapse).
        norm_input: scale the input by ``1 - alpha`` (needs a finite ``tau_mem``).
        min_v_mem: lower clamp of the post-reset membrane (None: no clamp).
        decay: ``"exp"`` or ``"euler"`` (:mod:`exodus_lightning.time_constants`).
        surrogate: surrogate derivative ``f(v, threshold)`` of the spike function; None (default) is
            ``SingleExponential()``.
    """

    tau_mem: Param = 20.0
    threshold: Param = 1.0
    reset: str = "subtract"
    spike: Union[str, int] = "single"
    tau_syn: Optional[Param] = None
    norm_input: bool = False
    min_v_mem: Optional[float] = None
    decay: Decay = "exp"
    surrogate: Optional[SurrogateFn] = None

    def __post_init__(self) -> None:
        if self.surrogate is None:  # the default; a shared instance (torch.compile cannot build one in a graph)
            object.__setattr__(self, "surrogate", DEFAULT_SURROGATE)
        self._validate()

    def _validate(self) -> None:
        if self.reset not in RESETS:
            raise ValueError(f"reset must be 'subtract' or 'zero', got {self.reset!r}")
        max_spikes_of(self.spike)
        check_decay(self.decay)
        if not callable(self.surrogate):
            raise TypeError(f"surrogate must be callable f(v, threshold), got {type(self.surrogate).__name__}")
        if not isinstance(self.norm_input, bool):
            raise TypeError(f"norm_input must be a bool, got {self.norm_input!r}")
        if self.min_v_mem is not None and (not _is_number(self.min_v_mem) or math.isnan(self.min_v_mem)):
            raise ValueError(f"min_v_mem must be a float or None, got {self.min_v_mem!r}")
        low = min_tau(self.decay)
        check_time_constant(self.tau_mem, "tau_mem", allow_inf=True, low=low)
        check_time_constant(self.threshold, "threshold", allow_inf=True)
        if self.tau_syn is not None:
            check_time_constant(self.tau_syn, "tau_syn", allow_inf=False, low=low)
        if self.norm_input:
            message = "norm_input=True needs a finite tau_mem: with tau_mem=inf (IF), c = 1 - alpha = 0"
            if isinstance(self.tau_mem, Tensor):
                require(~torch.isinf(self.tau_mem.detach()).any(), message)
            elif math.isinf(self.tau_mem):
                raise ValueError(message)

    @property
    def max_spikes(self) -> int:
        """The kernel's spike mode (:func:`max_spikes_of`)."""
        return max_spikes_of(self.spike)

    @property
    def reset_mode(self) -> int:
        """The kernel's reset mode: 0 subtract, 1 zero."""
        return RESETS[self.reset]

    def tensors(self) -> dict[str, Tensor]:
        """The parameters given as tensors, by name (to check their device)."""
        named = {"tau_mem": self.tau_mem, "threshold": self.threshold, "tau_syn": self.tau_syn}
        return {k: v for k, v in named.items() if isinstance(v, Tensor)}

    def kernel_tensors(self, features: tuple[int, ...], device: torch.device,
                       dtype: torch.dtype) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(alpha, theta, beta)`` as ``(1,)`` or ``(N,)`` tensors in ``dtype`` for a layer of
        ``features`` on ``device`` (``beta`` None without a synapse); ``alpha`` is differentiable
        in a ``tau_mem`` that requires grad."""
        alpha = decay_factor(neuron_tensor(self.tau_mem, "tau_mem", features, device, dtype), self.decay)
        theta = neuron_tensor(self.threshold, "threshold", features, device, dtype)
        beta = None
        if self.tau_syn is not None:
            beta = decay_factor(neuron_tensor(self.tau_syn, "tau_syn", features, device, dtype), self.decay)
        return alpha, theta, beta


__all__ = ["LIFParameters", "Param", "RESETS", "max_spikes_of", "check_time_constant", "neuron_tensor", "require"]
