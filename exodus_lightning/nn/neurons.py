"""Spiking and leaky neuron layers: thin modules around :mod:`exodus_lightning.functional`
(norse-style: the function does the work, the module holds the parameters).

Every layer takes ``(B, T, *features)`` and returns the same shape.  Layers are stateless by
default: each call starts from ``v = 0`` (docs/architecture.md §6).  For streaming, pass the state of
the previous chunk as ``forward(x, state)`` and build the layer with ``return_state=True`` (or use
:class:`StatefulLIF`, which keeps it between calls).  State is held in plain attributes, never in
buffers, so it never enters the ``state_dict`` and checkpoints reload at any batch size.

The gradient backend (``"exodus"``, ``"slayer"``, ``"bptt"``) is looked up at call time: a layer
built with ``backend=None`` follows :func:`exodus_lightning.set_backend` /
:func:`exodus_lightning.use_backend`; an explicit ``backend=`` wins over the global default.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from exodus_lightning import functional as F
from exodus_lightning.backend import resolve_backend, validate_backend
from exodus_lightning.functional import LIFState
from exodus_lightning.neuron_parameters import LIFParameters, check_time_constant
from exodus_lightning.nn.spiking_layer import SpikingLayer
from exodus_lightning.spec import records_init_args
from exodus_lightning.surrogate import SingleExponential, SurrogateFn
from exodus_lightning.time_constants import Decay

Param = Union[float, Tensor]
Shape = Optional[Sequence[int]]


# ----------------------------------------------------------------------------------- helpers


def _check_shape(shape: Shape) -> Optional[tuple[int, ...]]:
    if shape is None:
        return None
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be None or a sequence of positive ints, got {shape!r}") from None
    if not out or any(s < 1 for s in out):
        raise ValueError(f"shape must be a non-empty sequence of positive ints, got {shape!r}")
    return out


def _param_tensor(value: Param, name: str, shape: Optional[tuple[int, ...]]) -> Tensor:
    """``value`` (validated by :class:`LIFParameters` or ``check_time_constant``) as a float
    tensor, expanded to ``shape`` when one is given (a copy: parameters of different layers never
    alias)."""
    t = value.detach().clone() if isinstance(value, Tensor) else torch.tensor(float(value))
    if shape is not None:
        try:
            if torch.broadcast_shapes(t.shape, shape) != shape:
                raise RuntimeError
        except RuntimeError:
            raise ValueError(f"{name} of shape {tuple(t.shape)} does not broadcast to shape={shape}") from None
        t = t.expand(shape).clone()
    return t


def _check_features(x: Tensor, shape: Optional[tuple[int, ...]], layer: str) -> None:
    F.check_input(x)
    if shape is None:
        return
    features = tuple(x.shape[2:])
    ok = len(shape) <= len(features)
    if ok:
        try:
            ok = torch.broadcast_shapes(shape, features) == features
        except RuntimeError:
            ok = False
    if not ok:
        raise ValueError(
            f"x has feature shape {features} (x of shape {tuple(x.shape)} = (B, T, *features)) but this "
            f"{layer} was built with shape={shape}, which must equal the features or broadcast over "
            "them right-aligned (e.g. (C, 1, 1) for (C, H, W))"
        )


def _as_state(state: object) -> tuple[Optional[Tensor], Optional[Tensor]]:
    if state is None:
        return None, None
    if isinstance(state, Tensor):
        return state, None
    if isinstance(state, tuple) and len(state) == 2:
        return state[0], state[1]
    raise TypeError(
        f"state must be None, a LIFState(v, i) as returned with return_state=True, or a tensor v, "
        f"got {type(state).__name__}"
    )


# ----------------------------------------------------------------------------------- LIF


@records_init_args
class LIF(SpikingLayer, nn.Module):
    r"""Leaky integrate-and-fire neurons (docs/architecture.md §3, sinabs conventions), per neuron:

    .. code-block:: text

        i[t]      = beta (i[t-1] + x[t])          synapse, only with tau_syn (else i[t] = x[t])
        v[t]      = alpha v_post[t-1] + c i[t]    alpha = exp(-1/tau_mem), c = 1-alpha if norm_input else 1
        s[t]      = H(v[t] - threshold)           (spike="multi": max(0, trunc(v/threshold)))
        v_post[t] = v[t] - threshold s[t]         reset="subtract"  (reset="zero": v[t] 1[s[t] = 0])

    Gradients: ``"exodus"`` exact through the reset (EXODUS, Bauer et al. 2023, §3), ``"slayer"``
    reset ignored, ``"bptt"`` autograd through a time loop.

    Args:
        tau_mem: membrane time constant in time steps (float or tensor; ``inf`` is the IF neuron).
        threshold: firing threshold > 0 (float or tensor).
        reset: ``"subtract"`` (sinabs' MembraneSubtract) or ``"zero"``.
        spike: ``"single"``, ``"multi"`` or an int k (at most k spikes per step).
        tau_syn: synaptic time constant (None: no synapse).
        norm_input: scale the input by ``1 - alpha``.  **Defaults to False, unlike sinabs' LIF
            (True)**, following the functional API.
        min_v_mem: lower clamp of the post-reset membrane (None: no clamp).
        surrogate: surrogate derivative ``f(v, threshold)``; None (default) is ``SingleExponential()``.
        decay: ``"exp"`` (``alpha = exp(-1/tau)``) or ``"euler"`` (``alpha = 1 - 1/tau``, the
            convention of OTTT's and the event-driven method's code; :mod:`exodus_lightning.time_constants`).
        train_tau: make ``tau_mem`` an ``nn.Parameter``.  The parameter *is* tau (no
            reparameterisation); its gradient is the exact alpha gradient times
            ``d alpha / d tau = alpha / tau**2``.  An optimiser step that makes tau <= 0 raises a
            ValueError at the next call.
        shape: per-neuron parameters: ``tau_mem`` and ``threshold`` are expanded to this shape,
            which broadcasts right-aligned over the features, e.g. ``(C, 1, 1)`` gives
            per-channel values in a ``(C, H, W)`` conv layer.
        backend: ``"exodus"``, ``"slayer"``, ``"bptt"`` or None (the global default at call time).
        record: keep the pre-reset membrane trace of the last call in ``self.v_mem``
            (``(B, T, *features)``, differentiable, for plots and regularisers).
        return_state: ``forward`` returns ``(spikes, LIFState)`` instead of the spikes.

    ``tau_mem``, ``threshold`` and ``tau_syn`` are buffers (or a parameter for a trained tau), so they
    move with ``.to()``/``.double()`` and are saved in checkpoints; the neuron state never is.  Like
    any PyTorch parameter they start in float32: call ``.double()`` for float64 runs (a float32
    threshold of 0.3 is 0.30000001).

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import LIF
        >>> layer = LIF(tau_mem=float("inf"), return_state=True)   # IF: 0.6, 1.2 -> spike, 0.8
        >>> s, state = layer(torch.full((1, 3, 1), 0.6))
        >>> s.flatten().tolist(), round(state.v.item(), 4)
        ([0.0, 1.0, 0.0], 0.8)
    """

    tau_mem: Tensor
    threshold: Tensor

    def __init__(
        self,
        tau_mem: Param = 20.0,
        threshold: Param = 1.0,
        reset: str = "subtract",
        spike: Union[str, int] = "single",
        tau_syn: Optional[Param] = None,
        norm_input: bool = False,
        min_v_mem: Optional[float] = None,
        surrogate: Optional[SurrogateFn] = None,
        decay: Decay = "exp",
        train_tau: bool = False,
        shape: Shape = None,
        backend: Optional[str] = None,
        record: bool = False,
        return_state: bool = False,
    ) -> None:
        super().__init__()
        # None stands for the default SingleExponential(): a default instance in the signature
        # cannot be written as a class_path in LightningCLI/jsonargparse configs.
        p = LIFParameters(
            tau_mem=tau_mem, threshold=threshold, reset=reset, spike=spike, tau_syn=tau_syn,
            norm_input=norm_input, min_v_mem=min_v_mem, decay=decay, surrogate=SingleExponential() if surrogate is None else surrogate,
        )  # validates every argument, once
        if backend is not None:
            validate_backend(backend)
        self.shape = _check_shape(shape)
        tau = _param_tensor(p.tau_mem, "tau_mem", self.shape)
        if train_tau and bool(torch.isinf(tau).any()):
            raise ValueError("train_tau=True needs a finite tau_mem (the IF neuron has no tau to train)")
        if train_tau:
            self.tau_mem = nn.Parameter(tau)
        else:
            self.register_buffer("tau_mem", tau)
        self.register_buffer("threshold", _param_tensor(p.threshold, "threshold", self.shape))
        if p.tau_syn is not None:
            self.register_buffer("tau_syn", _param_tensor(p.tau_syn, "tau_syn", self.shape))
        else:
            self.tau_syn = None
        self.reset = p.reset
        self.spike = p.spike
        self.norm_input = p.norm_input
        self.min_v_mem = None if p.min_v_mem is None else float(p.min_v_mem)
        self.decay = p.decay
        self.surrogate = p.surrogate
        self.train_tau = bool(train_tau)
        self.backend = backend
        self.record = bool(record)
        self.return_state = bool(return_state)
        self.v_mem: Optional[Tensor] = None

    def neuron_parameters(self) -> LIFParameters:
        """The layer's :class:`LIFParameters` with its current ``tau_mem``/``threshold``/``tau_syn``
        tensors (a trained tau is checked again here: an optimiser step may have made it <= 0)."""
        return LIFParameters(
            tau_mem=self.tau_mem, threshold=self.threshold, reset=self.reset, spike=self.spike,
            tau_syn=self.tau_syn, norm_input=self.norm_input, min_v_mem=self.min_v_mem, decay=self.decay,
            surrogate=self.surrogate,
        )

    def _run(self, x: Tensor, v0: Optional[Tensor], i0: Optional[Tensor]) -> tuple[Tensor, LIFState]:
        _check_features(x, self.shape, type(self).__name__)
        s, v, state = F.lif_with_membrane(x, self.neuron_parameters(), resolve_backend(self.backend), v0, i0)
        # Plain attribute, not a buffer: a recorded trace must never reach the state_dict.
        self.v_mem = v if self.record else None
        return s, state

    def forward(self, x: Tensor, state: Optional[LIFState] = None) -> Union[Tensor, tuple[Tensor, LIFState]]:
        """``x``: ``(B, T, *features)``; ``state``: the ``LIFState`` a previous call returned (or
        None to start from zero).  Returns the spikes, or ``(spikes, final LIFState)`` when the layer
        was built with ``return_state=True``."""
        v0, i0 = _as_state(state)
        s, new_state = self._run(x, v0, i0)
        return (s, new_state) if self.return_state else s

    def extra_repr(self) -> str:
        tau = self.tau_mem
        tau_s = f"{tau.item():g}" if tau.numel() == 1 else f"shape={tuple(tau.shape)}"
        parts = [f"tau_mem={tau_s}", f"reset={self.reset!r}", f"spike={self.spike!r}"]
        if self.tau_syn is not None:
            parts.append("synapse")
        if self.norm_input:
            parts.append("norm_input=True")
        if self.decay != "exp":
            parts.append(f"decay={self.decay!r}")
        if self.backend is not None:
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)


@records_init_args
class IF(LIF):
    r"""Integrate-and-fire neurons: :class:`LIF` with ``alpha = 1`` (``tau_mem = inf``), so
    ``v[t] = v_post[t-1] + i[t]`` (the neurons of the EXODUS paper's DVS and SHD networks, Table 2).

    Takes the keyword arguments of :class:`LIF` except ``tau_mem`` (``norm_input=True`` and
    ``train_tau=True`` are errors: the IF neuron has no leak to normalise or train).

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import IF
        >>> IF(threshold=1.0)(torch.full((1, 4, 1), 0.5)).flatten().tolist()
        [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(self, **kwargs: object) -> None:
        if "tau_mem" in kwargs:
            raise TypeError("IF takes no tau_mem (the IF neuron is LIF with tau_mem = inf)")
        super().__init__(tau_mem=math.inf, **kwargs)


@records_init_args
class StatefulLIF(LIF):
    """:class:`LIF` (same keyword arguments, plus ``detach``) that keeps its final state between calls, for streaming inference and
    truncated training on long sequences: the next call continues from where the last one ended.

    The state lives in the plain attribute ``self.state`` (never in the ``state_dict``).  Call
    :meth:`reset_state` (or :func:`exodus_lightning.nn.reset_states` on the whole model) before a
    new sequence; a batch of another size without a reset is an error.  With ``detach=True`` the
    carried state is cut from the graph (truncated BPTT: call ``backward`` after every chunk);
    with ``detach=False`` gradients flow across chunks exactly as through one call.

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import StatefulLIF
        >>> layer = StatefulLIF(tau_mem=float("inf"))
        >>> x = torch.full((1, 2, 1), 0.6)
        >>> layer(x).flatten().tolist(), layer(x).flatten().tolist()   # 0.6 1.2|0.8 1.4
        ([0.0, 1.0], [0.0, 1.0])
    """

    def __init__(self, detach: bool = True, **kwargs: object) -> None:
        """``detach``: cut the carried state from the graph; the other keyword arguments are :class:`LIF`'s."""
        super().__init__(**kwargs)
        self.detach = bool(detach)
        self.state: Optional[LIFState] = None

    def reset_state(self) -> None:
        """Forget the carried state: the next call starts from zero."""
        self.state = None

    def forward(self, x: Tensor, state: Optional[LIFState] = None) -> Union[Tensor, tuple[Tensor, LIFState]]:
        """Like :meth:`LIF.forward`; without an explicit ``state`` the carried one is used."""
        if state is None and self.state is not None:
            if isinstance(x, Tensor) and x.ndim >= 3 and self.state.v.shape[0] != x.shape[0]:
                raise ValueError(
                    f"x has batch size {x.shape[0]} but the carried state has batch size "
                    f"{self.state.v.shape[0]}; call reset_state() (or reset_states(model)) before a new sequence"
                )
            state = self.state
        v0, i0 = _as_state(state)
        s, new_state = self._run(x, v0, i0)
        if self.detach:
            new_state = LIFState(new_state.v.detach(), None if new_state.i is None else new_state.i.detach())
        self.state = new_state
        return (s, new_state) if self.return_state else s


# ----------------------------------------------------------------------------------- leaky


@records_init_args
class LeakyIntegrator(nn.Module):
    r"""Non-spiking leaky integrator (sinabs' ExpLeak), the usual readout of a spiking classifier:
    ``v[t] = alpha v[t-1] + c x[t]``, ``alpha = exp(-1/tau)``, ``c = 1 - alpha`` if ``norm_input``
    else 1.  Returns the membrane ``v`` of shape ``(B, T, *features)``.

    Args:
        tau: time constant in steps (float or tensor; ``inf`` is a pure integrator).
        norm_input: scale the input by ``1 - alpha`` (default False).
        train_tau: make ``tau`` an ``nn.Parameter`` (tau itself, no reparameterisation).
        shape: per-neuron / per-channel tau (broadcast right-aligned, as for :class:`LIF`).
        backend: ``"bptt"`` runs a PyTorch loop; ``"exodus"``/``"slayer"`` the native scan (exact
            either way: there is no reset).  None follows the global default.
        return_state: ``forward`` returns ``(v, v[:, -1])``; pass the second as ``state`` to continue.

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import LeakyIntegrator
        >>> LeakyIntegrator(tau=float("inf"))(torch.ones(1, 3, 1)).flatten().tolist()
        [1.0, 2.0, 3.0]
    """

    tau: Tensor

    def __init__(
        self,
        tau: Param = 20.0,
        norm_input: bool = False,
        train_tau: bool = False,
        shape: Shape = None,
        backend: Optional[str] = None,
        return_state: bool = False,
    ) -> None:
        super().__init__()
        if backend is not None:
            validate_backend(backend)
        self.shape = _check_shape(shape)
        check_time_constant(tau, "tau", allow_inf=True)
        t = _param_tensor(tau, "tau", self.shape)
        if norm_input and bool(torch.isinf(t).any()):
            raise ValueError("norm_input=True needs a finite tau: with tau=inf, c = 1 - alpha = 0")
        if train_tau and bool(torch.isinf(t).any()):
            raise ValueError("train_tau=True needs a finite tau")
        if train_tau:
            self.tau = nn.Parameter(t)
        else:
            self.register_buffer("tau", t)
        self.norm_input = bool(norm_input)
        self.train_tau = bool(train_tau)
        self.backend = backend
        self.return_state = bool(return_state)

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """``x``: ``(B, T, *features)``; ``state``: ``v`` of the step before (``(B, *features)``)."""
        _check_features(x, self.shape, "LeakyIntegrator")
        if state is not None and not isinstance(state, Tensor):
            raise TypeError(f"state must be a tensor v of shape (B, *features) or None, got {type(state).__name__}")
        out, last = F.leaky_integrator(
            x, self.tau, v0=state, return_state=True, norm_input=self.norm_input,
            backend=resolve_backend(self.backend),
        )
        return (out, last) if self.return_state else out

    def extra_repr(self) -> str:
        tau = self.tau
        return f"tau={tau.item():g}" if tau.numel() == 1 else f"tau shape={tuple(tau.shape)}"


# ----------------------------------------------------------------------------------- recurrent


@records_init_args
class RecurrentLIF(LIF):
    r""":class:`LIF` neurons with all-to-all recurrent connections: the input current of step t is
    ``x[t] + W s[t-1]`` (``W = self.recurrent.weight``, ``(N, N)``, ``s[-1] = 0``), then the LIF
    equations as in :class:`LIF`.

    **BPTT only.**  The spikes of one step feed the next, so the whole-sequence EXODUS/SLAYER scan
    does not apply; the layer loops over time, calling :func:`exodus_lightning.functional.lif` with
    ``backend="bptt"`` once per step, and autograd differentiates the loop.  ``backend`` must be
    None or ``"bptt"`` (anything else is a ValueError), and the global default backend does not
    apply to this layer.

    Args:
        n_neurons: N, the size of the (flat) feature dimension: input ``(B, T, N)``.
        **kwargs: the keyword arguments of :class:`LIF`.  ``shape`` may only be None, ``(N,)`` or ``(1,)``.

    The recurrent weight is initialised like ``nn.Linear`` (Kaiming-uniform, a = sqrt(5)).

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import RecurrentLIF
        >>> layer = RecurrentLIF(3, tau_mem=10.0)
        >>> layer(torch.rand(2, 5, 3)).shape
        torch.Size([2, 5, 3])
    """

    def __init__(self, n_neurons: int, **kwargs: object) -> None:
        """``n_neurons``: N; the other keyword arguments are :class:`LIF`'s (``backend`` None or "bptt")."""
        if not isinstance(n_neurons, int) or isinstance(n_neurons, bool) or n_neurons < 1:
            raise ValueError(f"n_neurons must be an int >= 1, got {n_neurons!r}")
        backend = kwargs.pop("backend", None)
        if backend is not None and backend != "bptt":
            validate_backend(backend)
            raise ValueError(
                f"RecurrentLIF supports only backend='bptt' (the recurrence needs a time loop), got backend={backend!r}"
            )
        shape_t = _check_shape(kwargs.pop("shape", None))
        if shape_t is not None and shape_t not in ((n_neurons,), (1,)):
            raise ValueError(f"shape must be None, ({n_neurons},) or (1,) for RecurrentLIF({n_neurons}), got {shape_t}")
        super().__init__(shape=shape_t, backend="bptt", **kwargs)
        self.n_neurons = n_neurons
        self.recurrent = nn.Linear(n_neurons, n_neurons, bias=False)

    def forward(self, x: Tensor, state: Optional[LIFState] = None) -> Union[Tensor, tuple[Tensor, LIFState]]:
        """``x``: ``(B, T, N)``; ``state``: a previous call's final state (spikes of its last step
        are not part of the state: each call starts with ``s[-1] = 0``)."""
        F.check_input(x)
        if x.ndim != 3 or x.shape[2] != self.n_neurons:
            raise ValueError(
                f"x must have shape (B, T, N) with N = n_neurons = {self.n_neurons}, got {tuple(x.shape)}"
            )
        v, i = _as_state(state)
        B, T, N = x.shape
        p = self.neuron_parameters()
        s_prev = x.new_zeros((B, N))
        spikes, vs = [], []
        for t in range(T):
            xt = x[:, t : t + 1] + self.recurrent(s_prev).unsqueeze(1)
            s, v_t, st = F.lif_with_membrane(xt, p, "bptt", v, i)
            v, i = st.v, st.i
            s_prev = s[:, 0]
            spikes.append(s_prev)
            vs.append(v_t[:, 0])
        out = torch.stack(spikes, 1)
        self.v_mem = torch.stack(vs, 1) if self.record else None
        final = LIFState(v, i)
        return (out, final) if self.return_state else out


__all__ = ["LIF", "IF", "StatefulLIF", "LeakyIntegrator", "RecurrentLIF", "LIFState"]
