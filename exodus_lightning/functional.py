"""Pure functions of the spiking neurons (norse-style: state in, state out); every layer in
``exodus_lightning.nn`` calls these.

Neuron model (docs/architecture.md §3, sinabs conventions), per neuron, t = 0 … T-1:

    i[t]      = beta (i[t-1] + x[t])              synapse, if tau_syn is given (else i[t] = x[t])
    v[t]      = alpha v_post[t-1] + c i[t]        alpha = exp(-1/tau_mem), c = 1 - alpha if norm_input else 1
                                                  (alpha = 1 - 1/tau_mem with decay="euler")
    s[t]      = H(v[t] - theta)                   spike="single"
              | max(0, trunc(v[t] / theta))       spike="multi" (an int k caps it at k)
    r[t]      = v[t] - theta s[t]                 reset="subtract"  |  v[t] 1[s[t] == 0]  reset="zero"
    v_post[t] = max(r[t], v_min)                  if min_v_mem is given (else r[t])

The parameters travel as one :class:`~exodus_lightning.neuron_parameters.LIFParameters`, validated
where it is built.

Backends: ``"exodus"`` — exact gradients including the reset (EXODUS, Bauer et al. 2023, §3;
one native O(T) reverse scan per neuron); ``"slayer"`` — the reset ignored in the gradient
(Shrestha & Orchard 2018), for the EXODUS-vs-SLAYER comparison; ``"bptt"`` — a plain PyTorch
time loop through the same equations, differentiated by autograd.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor

from exodus_lightning.backend import validate_backend
from exodus_lightning.neuron_parameters import LIFParameters, Param, check_time_constant, neuron_tensor, require
from exodus_lightning.nonfinite import check_wanted, record_nonfinite
from exodus_lightning.surrogate import fused_spec
from exodus_lightning.time_constants import decay_factor


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


def _state_tensor(t: Optional[Tensor], name: str, B: int, features: tuple[int, ...], x: Tensor) -> Optional[Tensor]:
    if t is None:
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a tensor of shape (B, *features) = {(B, *features)}, got {type(t).__name__}")
    _same_device(t, x, name)
    if tuple(t.shape) != (B, *features):
        raise ValueError(f"{name} must have shape (B, *features) = {(B, *features)}, got {tuple(t.shape)}")
    return t.reshape(B, -1).to(x.dtype)


def _check_parameters(p: object) -> LIFParameters:
    if not isinstance(p, LIFParameters):
        raise TypeError(
            f"p must be an exodus_lightning.LIFParameters (e.g. LIFParameters(tau_mem=20.0)), got {type(p).__name__}"
        )
    return p


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


def _lif_bptt(x3: Tensor, p: LIFParameters, alpha: Tensor, theta: Tensor, beta: Optional[Tensor],
              v0: Optional[Tensor], i0: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    B, T, N = x3.shape
    v_post = v0 if v0 is not None else x3.new_zeros((B, N))
    i = i0 if i0 is not None else x3.new_zeros((B, N))
    c = 1 - alpha
    v_min = p.min_v_mem
    spikes, vs = [], []
    for t in range(T):
        xt = x3[:, t]
        if beta is not None:
            i = beta * (i + xt)
        else:
            i = xt
        v = alpha * v_post + (c * i if p.norm_input else i)
        s = _SpikeWithSurrogate.apply(v, theta, p.max_spikes, p.surrogate)
        r = v - theta * s if p.reset_mode == 0 else v * (s == 0).to(v.dtype)
        v_post = torch.where(r > v_min, r, r.new_tensor(float(v_min))) if v_min is not None else r
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes, 1), torch.stack(vs, 1), v_post, (i if beta is not None else None)


# ----------------------------------------------------------------------------------- LIF


def lif_with_membrane(
    x: Tensor,
    p: LIFParameters = LIFParameters(),
    backend: str = "exodus",
    v0: Optional[Tensor] = None,
    i0: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, LIFState]:
    """:func:`lif` that also returns the pre-reset membrane trace ``v`` (``(B, T, *features)``,
    differentiable, for plots and regularisers) and the final state: ``(spikes, v, state)``."""
    B, T, features = check_input(x)
    p = _check_parameters(p)
    validate_backend(backend)
    for name, value in p.tensors().items():
        _same_device(value, x, name)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    alpha, theta, beta = p.kernel_tensors(features, x.device, acc)
    v0_ = _state_tensor(v0, "v0", B, features, x)
    i0_ = _state_tensor(i0, "i0", B, features, x)
    if i0_ is not None and beta is None:
        raise ValueError("i0 was given but the neuron has no synapse (tau_syn=None)")
    x3 = x.reshape(B, T, -1)

    check = check_wanted()  # NaN/Inf in x (exodus_lightning.nonfinite): the scan's own flag, or a device test
    if backend == "bptt":
        if check:
            record_nonfinite(x3)
        s, v, v_fin, i_fin = _lif_bptt(
            x3.to(acc), p, alpha, theta, beta,
            None if v0_ is None else v0_.to(acc), None if i0_ is None else i0_.to(acc),
        )
        s, v, v_fin = s.to(x.dtype), v.to(x.dtype), v_fin.to(x.dtype)
        i_fin = None if i_fin is None else i_fin.to(x.dtype)
    else:
        from exodus_lightning.ops.lif import BACKWARD_MODES, LIFFunction, LIFKernelArguments

        spec = fused_spec(p.surrogate)
        kernel = LIFKernelArguments.of(p, theta, beta, BACKWARD_MODES[backend], spec, check)
        s, v, v_fin, i_fin, nonfinite = LIFFunction.apply(x3, alpha, v0_, i0_, kernel)
        if check:
            record_nonfinite(x3, nonfinite)
        if beta is None:
            i_fin = None
    state = LIFState(v_fin.reshape(B, *features), None if i_fin is None else i_fin.reshape(B, *features))
    return s.reshape(x.shape), v.reshape(x.shape), state


def lif(
    x: Tensor,
    p: LIFParameters = LIFParameters(),
    backend: str = "exodus",
    v0: Optional[Tensor] = None,
    i0: Optional[Tensor] = None,
    return_state: bool = False,
) -> Union[Tensor, tuple[Tensor, LIFState]]:
    """Leaky integrate-and-fire neurons over a whole sequence ``x`` of shape ``(B, T, *features)``,
    with the neuron parameters ``p`` (:class:`~exodus_lightning.neuron_parameters.LIFParameters`).

    Equations in :class:`~exodus_lightning.neuron_parameters.LIFParameters` (docs/architecture.md
    §3).  ``tau_mem`` and ``threshold`` are floats or tensors broadcasting right-aligned over the
    feature dims; ``tau_mem=float("inf")`` is the IF neuron.  No gradient flows to ``threshold`` or
    ``tau_syn``; one flows to ``tau_mem`` when it is a tensor that requires grad (the exact alpha
    gradient, including the ``1 - alpha`` input scaling).  ``backend``: ``"exodus"`` exact
    gradients through the reset (EXODUS, Bauer et al. 2023, §3), ``"slayer"`` the reset ignored,
    ``"bptt"`` autograd through a time loop.

    Returns the spikes (same shape and dtype as ``x``), or ``(spikes, LIFState)`` with
    ``return_state=True``; passing that state as ``v0``/``i0`` of the next call continues the
    sequence with the same spikes and gradients as one call.

    Example:
        >>> import torch
        >>> from exodus_lightning import LIFParameters
        >>> from exodus_lightning.functional import lif
        >>> x = torch.tensor([[[0.6], [0.6], [0.6]]])
        >>> lif(x, LIFParameters(tau_mem=float("inf"))).flatten().tolist()  # IF: 0.6, 1.2 -> spike, 0.8
        [0.0, 1.0, 0.0]
    """
    s, _, state = lif_with_membrane(x, p, backend, v0, i0)
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
    check_time_constant(tau, "tau", allow_inf=True)
    if norm_input:
        message = "norm_input=True needs a finite tau: with tau=inf, c = 1 - alpha = 0"
        require(~torch.isinf(torch.as_tensor(tau).detach()).any(), message)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    alpha = decay_factor(neuron_tensor(tau, "tau", features, x.device, acc))
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


__all__ = ["lif", "lif_with_membrane", "leaky_integrator", "LIFState", "LIFParameters", "spike_count"]
