"""Pure functions of the spiking neurons (norse-style: state in, state out); every layer in
``exodus_lightning.nn`` calls these.

Neuron model (docs/architecture.md §3, sinabs conventions), per neuron, t = 0 … T-1:

    i[t]      = beta (i[t-1] + x[t])              synapse, if tau_syn is given (else i[t] = x[t])
    v[t]      = alpha v_post[t-1] + c i[t]        alpha = exp(-1/tau_mem), c = 1 - alpha if norm_input else 1
    s[t]      = H(v[t] - theta)                   spike="single"
              | max(0, trunc(v[t] / theta))       spike="multi" (an int k caps it at k)
    r[t]      = v[t] - theta s[t]                 reset="subtract"  |  v[t] 1[s[t] == 0]  reset="zero"
    v_post[t] = max(r[t], v_min)                  if min_v_mem is given (else r[t])

Backends: ``"exodus"`` — exact gradients including the reset (EXODUS, Bauer et al. 2023, §3;
one native O(T) reverse scan per neuron); ``"slayer"`` — the reset ignored in the gradient
(Shrestha & Orchard 2018), for the EXODUS-vs-SLAYER comparison; ``"bptt"`` — a plain PyTorch
time loop through the same equations, differentiated by autograd.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor

from exodus_lightning.backend import validate_backend
from exodus_lightning.nonfinite import check_wanted, record_nonfinite
from exodus_lightning.surrogate import SingleExponential, SurrogateFn, fused_spec

Param = Union[float, Tensor]


class LIFState(NamedTuple):
    """State carried between calls: post-reset membrane ``v`` and synaptic current ``i``
    (None without a synapse), each ``(B, *features)``."""

    v: Tensor
    i: Optional[Tensor]


# ----------------------------------------------------------------------------------- checks


def check_input(x: Tensor, name: str = "x") -> tuple[int, int, tuple[int, ...]]:
    """Validate a ``(B, T, *features)`` float tensor; returns (B, T, feature_shape)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, T, *features), got {type(x).__name__}")
    if x.ndim < 3:
        raise ValueError(
            f"{name} must have shape (B, T, *features) with at least 3 dimensions, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32, float64, float16, bfloat16), got {x.dtype}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has T = 0 time steps (shape {tuple(x.shape)}); at least one is needed")
    if x.shape[0] == 0 or any(d == 0 for d in x.shape[2:]):
        raise ValueError(f"{name} has an empty batch or feature dimension (shape {tuple(x.shape)})")
    return x.shape[0], x.shape[1], tuple(x.shape[2:])


def _same_device(t: Tensor, x: Tensor, name: str) -> None:
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}; move both to the same device")


def _check_devices(x: Tensor, **named: object) -> None:
    # Before any value check: reading a tensor on another device would fail with a vaguer error.
    for name, value in named.items():
        if isinstance(value, Tensor):
            _same_device(value, x, name)


def neuron_parameter(value: Param, name: str, features: tuple[int, ...], x: Tensor, dtype: torch.dtype) -> Tensor:
    """A scalar or per-neuron parameter as a ``(1,)`` or ``(N,)`` tensor in ``dtype``.

    Tensors broadcast right-aligned over the feature dims, e.g. ``(C, 1, 1)`` over ``(C, H, W)``;
    autograd flows through (for trained tau)."""
    if isinstance(value, Tensor):
        _same_device(value, x, name)
        t = value.to(dtype)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        t = torch.tensor(float(value), dtype=dtype, device=x.device)
    else:
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
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


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def _check_positive(value: Param, name: str, allow_inf: bool) -> None:
    if isinstance(value, Tensor):
        if _compiling():
            # A data-dependent branch would break torch.compile(fullgraph=True); eager calls check.
            return
        v = value.detach()
        bad = torch.isnan(v) | (v <= 0)
        if not allow_inf:
            bad = bad | torch.isinf(v)
        if bool(bad.any()):
            raise ValueError(f"{name} must be > 0{'' if allow_inf else ' and finite'} everywhere, got {value}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isnan(value) or value <= 0 or (not allow_inf and math.isinf(value)):
            raise ValueError(f"{name} must be > 0{'' if allow_inf else ' and finite'}, got {value!r}")


def decay(tau: Param, name: str, features: tuple[int, ...], x: Tensor, dtype: torch.dtype) -> Tensor:
    """alpha = exp(-1 / tau) as a ``(1,)`` or ``(N,)`` tensor; tau = inf gives alpha = 1 (IF)."""
    _check_positive(tau, name, allow_inf=True)
    t = neuron_parameter(tau, name, features, x, dtype)
    return torch.exp(-1.0 / t)


def _is_if(tau: Param) -> bool:
    if isinstance(tau, Tensor):
        if _compiling():
            return False
        return bool(torch.isinf(tau.detach()).any())
    return math.isinf(tau)


def max_spikes_of(spike: Union[str, int]) -> int:
    """Kernel spike mode: 1 single, 0 unbounded multi, k at most k spikes per step."""
    if spike == "single":
        return 1
    if spike == "multi":
        return 0
    if isinstance(spike, int) and not isinstance(spike, bool) and spike >= 1:
        return spike
    raise ValueError(f"spike must be 'single', 'multi' or an int k >= 1 (max-k spikes), got {spike!r}")


def _state_tensor(t: Optional[Tensor], name: str, B: int, features: tuple[int, ...], x: Tensor) -> Optional[Tensor]:
    if t is None:
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a tensor of shape (B, *features) = {(B, *features)}, got {type(t).__name__}")
    _same_device(t, x, name)
    if tuple(t.shape) != (B, *features):
        raise ValueError(f"{name} must have shape (B, *features) = {(B, *features)}, got {tuple(t.shape)}")
    return t.reshape(B, -1).to(x.dtype)


# ----------------------------------------------------------------------------------- BPTT


def spike_count(v: Tensor, theta: Tensor, max_spikes: int) -> Tensor:
    """s = H(v - theta) (max_spikes = 1), max(0, trunc(v / theta)) (0), capped at k (k > 1)."""
    if max_spikes == 1:
        return (v >= theta).to(v.dtype)
    s = torch.clamp(torch.trunc(v / theta), min=0)
    if max_spikes > 1:
        s = torch.clamp(s, max=float(max_spikes))
    return s


class _SpikeWithSurrogate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, theta, max_spikes, surrogate):
        ctx.save_for_backward(v, theta)
        ctx.surrogate = surrogate
        return spike_count(v, theta, max_spikes)

    @staticmethod
    def backward(ctx, g):
        v, theta = ctx.saved_tensors
        return g * ctx.surrogate(v, theta), None, None, None


def _lif_bptt(x3, alpha, theta, beta, v0, i0, reset_mode, max_spikes, v_min, norm_input, surrogate):
    B, T, N = x3.shape
    v_post = v0 if v0 is not None else x3.new_zeros((B, N))
    i = i0 if i0 is not None else x3.new_zeros((B, N))
    c = 1 - alpha
    spikes, vs = [], []
    for t in range(T):
        xt = x3[:, t]
        if beta is not None:
            i = beta * (i + xt)
        else:
            i = xt
        v = alpha * v_post + (c * i if norm_input else i)
        s = _SpikeWithSurrogate.apply(v, theta, max_spikes, surrogate)
        r = v - theta * s if reset_mode == 0 else v * (s == 0).to(v.dtype)
        v_post = torch.where(r > v_min, r, r.new_tensor(v_min)) if v_min is not None else r
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes, 1), torch.stack(vs, 1), v_post, (i if beta is not None else None)


# ----------------------------------------------------------------------------------- LIF


def lif_with_membrane(
    x: Tensor,
    tau_mem: Param,
    threshold: Param = 1.0,
    reset: str = "subtract",
    spike: Union[str, int] = "single",
    tau_syn: Optional[Param] = None,
    norm_input: bool = False,
    min_v_mem: Optional[float] = None,
    surrogate: SurrogateFn = SingleExponential(),
    backend: str = "exodus",
    v0: Optional[Tensor] = None,
    i0: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, LIFState]:
    """:func:`lif` that also returns the pre-reset membrane trace ``v`` (``(B, T, *features)``,
    differentiable, for plots and regularisers) and the final state: ``(spikes, v, state)``."""
    B, T, features = check_input(x)
    validate_backend(backend)
    _check_devices(x, tau_mem=tau_mem, threshold=threshold, tau_syn=tau_syn, v0=v0, i0=i0)
    if reset not in ("subtract", "zero"):
        raise ValueError(f"reset must be 'subtract' or 'zero', got {reset!r}")
    max_spikes = max_spikes_of(spike)
    if not callable(surrogate):
        raise TypeError(f"surrogate must be callable f(v, threshold), got {type(surrogate).__name__}")
    if norm_input and _is_if(tau_mem):
        raise ValueError("norm_input=True needs a finite tau_mem: with the IF neuron (tau_mem=inf) c = 1 - alpha = 0")
    if min_v_mem is not None and (not isinstance(min_v_mem, (int, float)) or math.isnan(min_v_mem)):
        raise ValueError(f"min_v_mem must be a float or None, got {min_v_mem!r}")
    _check_positive(threshold, "threshold", allow_inf=True)

    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    alpha = decay(tau_mem, "tau_mem", features, x, acc)
    theta = neuron_parameter(threshold, "threshold", features, x, acc)
    beta = None
    if tau_syn is not None:
        _check_positive(tau_syn, "tau_syn", allow_inf=False)
        beta = decay(tau_syn, "tau_syn", features, x, acc)
    v0_ = _state_tensor(v0, "v0", B, features, x)
    i0_ = _state_tensor(i0, "i0", B, features, x)
    if i0_ is not None and beta is None:
        raise ValueError("i0 was given but the neuron has no synapse (tau_syn=None)")
    x3 = x.reshape(B, T, -1)
    reset_mode = 0 if reset == "subtract" else 1
    v_min = float(min_v_mem) if min_v_mem is not None else None

    check = check_wanted()  # NaN/Inf in x (exodus_lightning.nonfinite): the scan's own flag, or a device test
    if backend == "bptt":
        if check:
            record_nonfinite(x3)
        xc = x3.to(acc)
        s, v, v_fin, i_fin = _lif_bptt(
            xc, alpha, theta, beta, None if v0_ is None else v0_.to(acc), None if i0_ is None else i0_.to(acc),
            reset_mode, max_spikes, v_min, norm_input, surrogate,
        )
        s, v, v_fin = s.to(x.dtype), v.to(x.dtype), v_fin.to(x.dtype)
        i_fin = None if i_fin is None else i_fin.to(x.dtype)
    else:
        from exodus_lightning.ops.lif import BACKWARD_MODES, LIFFunction

        spec = fused_spec(surrogate)
        sid, p0, p1, p2 = spec if spec is not None else (0, 0.0, 0.0, 0.0)
        s, v, v_fin, i_fin, nonfinite = LIFFunction.apply(
            x3, alpha, theta, beta, v0_, i0_, reset_mode, max_spikes, v_min, bool(norm_input),
            BACKWARD_MODES[backend], sid, p0, p1, p2, surrogate, check,
        )
        if check:
            record_nonfinite(x3, nonfinite)
        if beta is None:
            i_fin = None
    state = LIFState(v_fin.reshape(B, *features), None if i_fin is None else i_fin.reshape(B, *features))
    return s.reshape(x.shape), v.reshape(x.shape), state


def lif(
    x: Tensor,
    tau_mem: Param,
    threshold: Param = 1.0,
    reset: str = "subtract",
    spike: Union[str, int] = "single",
    tau_syn: Optional[Param] = None,
    norm_input: bool = False,
    min_v_mem: Optional[float] = None,
    surrogate: SurrogateFn = SingleExponential(),
    backend: str = "exodus",
    v0: Optional[Tensor] = None,
    i0: Optional[Tensor] = None,
    return_state: bool = False,
) -> Union[Tensor, tuple[Tensor, LIFState]]:
    """Leaky integrate-and-fire neurons over a whole sequence ``x`` of shape ``(B, T, *features)``.

    Equations in the module docstring (docs/architecture.md §3).  ``tau_mem`` and ``threshold`` are floats
    or tensors broadcasting right-aligned over the feature dims; ``tau_mem=float("inf")`` is the IF
    neuron.  ``norm_input`` defaults to False (sinabs' LIF defaults to True).  ``spike`` is
    "single", "multi" or an int k (at most k spikes per step).  ``min_v_mem`` clamps the
    post-reset membrane from below (the gradient mask is strict, ``1[r > v_min]``).  No gradient
    flows to ``threshold`` or ``tau_syn``; one flows to ``tau_mem`` when it is a tensor that
    requires grad (the exact alpha gradient, including the ``1 - alpha`` input scaling).

    Returns the spikes (same shape and dtype as ``x``), or ``(spikes, LIFState)`` with
    ``return_state=True``; passing that state as ``v0``/``i0`` of the next call continues the
    sequence with the same spikes and gradients as one call.

    Example:
        >>> import torch
        >>> from exodus_lightning.functional import lif
        >>> x = torch.tensor([[[0.6], [0.6], [0.6]]])
        >>> lif(x, tau_mem=float("inf")).flatten().tolist()  # IF: 0.6, 1.2 -> spike, 0.8
        [0.0, 1.0, 0.0]
    """
    s, _, state = lif_with_membrane(
        x, tau_mem, threshold, reset, spike, tau_syn, norm_input, min_v_mem, surrogate, backend, v0, i0
    )
    return (s, state) if return_state else s


# ----------------------------------------------------------------------------------- leaky


def leaky_integrator(
    x: Tensor,
    tau: Param,
    v0: Optional[Tensor] = None,
    return_state: bool = False,
    norm_input: bool = False,
    backend: str = "exodus",
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    """Non-spiking leaky integrator (sinabs' ExpLeak, synaptic currents, traces):
    ``v[t] = alpha v[t-1] + c x[t]``, ``alpha = exp(-1/tau)``, ``c = 1 - alpha`` if ``norm_input``
    else 1.  Returns ``v`` of shape ``(B, T, *features)``, or ``(v, v[:, -1])`` with
    ``return_state=True``.  ``backend="bptt"`` runs a PyTorch loop; the others the native scan.

    Example:
        >>> import torch
        >>> from exodus_lightning.functional import leaky_integrator
        >>> leaky_integrator(torch.ones(1, 3, 1), tau=float("inf")).flatten().tolist()
        [1.0, 2.0, 3.0]
    """
    B, T, features = check_input(x)
    validate_backend(backend)
    _check_devices(x, tau=tau, v0=v0)
    if norm_input and _is_if(tau):
        raise ValueError("norm_input=True needs a finite tau: with tau=inf, c = 1 - alpha = 0")
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    alpha = decay(tau, "tau", features, x, acc)
    v0_ = _state_tensor(v0, "v0", B, features, x)
    x3 = x.reshape(B, T, -1)
    record_nonfinite(x3)  # a device test, only while a layer is watched (exodus_lightning.nonfinite)
    if backend == "bptt":
        xa = x3.to(acc)
        v = v0_.to(acc) if v0_ is not None else xa.new_zeros((B, xa.shape[2]))
        c = 1 - alpha
        outs = []
        for t in range(T):
            v = alpha * v + (c * xa[:, t] if norm_input else xa[:, t])
            outs.append(v)
        out = torch.stack(outs, 1).to(x.dtype)
    else:
        import exodus_lightning.ops  # noqa: F401  (registers the ops)

        out = torch.ops.exodus.leaky_forward(x3, alpha, v0_, bool(norm_input))
    out = out.reshape(x.shape)
    return (out, out[:, -1]) if return_state else out


__all__ = ["lif", "lif_with_membrane", "leaky_integrator", "LIFState", "spike_count"]
