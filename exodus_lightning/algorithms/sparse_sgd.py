"""Sparse spiking gradient descent (S3GD; Perez-Nieves & Goodman, NeurIPS 2021): the backward pass
computed only on the *active set* of a truncated surrogate gradient, with native CPU and CUDA kernels
(:mod:`exodus_lightning.ops.sparse`).

Neuron semantics of the paper (suppl. E.2 eq. 17-19), as options of :class:`SparseLinearLIF`:

====================================  =======================================  ===========================
paper                                 option (paper default)                   our LIF (``nn.LIF``)
====================================  =======================================  ===========================
``V[t+1] = a V[t] + h[t] - c S[t]``   ``delay=True``: input of step t moves    no delay: ``x[t]`` enters
one-step delay, ``V[0] = 0``          V at t+1                                 ``v[t]``
reset subtracted *after* the leak     ``reset_after_leak=True``: ``c = V_th -   reset before the leak:
                                      V_r``; False: ``c = a (V_th - V_r)``      ``a (v - theta s)``
strict threshold ``S = V > V_th``     ``strict_threshold=True``                ``v >= theta``
reset constant in the gradient        ``gradient="detached"``; ``"exact"``     EXODUS keeps the reset
                                      keeps it (EXODUS)
====================================  =======================================  ===========================

``a = exp(-1 / tau_mem)``, ``tau_mem`` in time steps (the paper gives ms: ``tau_mem = tau_ms / time_window_ms``,
e.g. 10 ms at 2 ms bins is 5 steps; :mod:`exodus_lightning.time_constants`).  Truncated surrogate (suppl. E.5 eq. 20, :func:`truncated_surrogate`):
``g(V) = 1/(beta |V - V_th| + 1)^2`` when ``|V - V_th| < B_th`` else 0 (beta = 100, B_th = 0.2); its
support is the active set ``A``.

Backward (``backend="sparse"``), with ``e[t] = dL/dS[t] g(V[t])`` on ``A`` only:

* Prop. 1: ``delta_j[t] = sum_{k>t} e_j[k] a^{k-t-1}`` (= dL/dh_j[t]) obeys
  ``delta_j[t] = a^n delta_j[t+n]`` across n inactive steps and
  ``delta_j[t] = e_j[t+1] + a^n delta_j[t+n]`` when t+1 is active; evaluated by a memoised walk
  over the merged active times of j and the times the input layer needs (suppl. C);
* weight gradient (suppl. B) ``dL/dW_ji = sum_{(b,t,j) in A} e[b,t,j] tr[b,t,i]`` with the input
  trace ``tr[t] = a tr[t-1] + x[t-1]`` stored in the forward;
* input gradient ``dL/dx_i[t] = sum_j W_ji delta_j[t]`` written only where the *input* layer is
  active (the layer below multiplies by its own truncated surrogate, zero elsewhere), so the
  whole-network gradient equals dense BPTT with the truncated surrogate and detached reset.  The
  CPU library evaluates it one of two ways, whichever its cost model says costs less
  (:func:`~exodus_lightning.ops.sparse.products_are_cheaper`): by dot products of delta at the
  needed times with rows of ``W^T``, one per active input entry (the paper's way), or — since every
  neuron decays by the same ``a`` — by the scan ``Gv[t] = G[t] + a Gv[t+1]`` of
  ``G[t] = sum_{j active at t} e_j[t] W_j`` (one row of ``W`` per active output entry; no delta, no
  transposed weight), with ``dL/dx[t] = Gv[t+1]``.

``gradient="exact"`` (own derivation, not in the paper) keeps the reset in the gradient:
``g_v[t] = g[t] (dL/dS[t] - c g_v[t+1]) + a g_v[t+1]``; outside ``A`` it is pure decay, and with
``e_hat[t] = g[t] (dL/dS[t] - c g_v[t+1])`` (nonzero on ``A`` only) the same trace and Prop. 1
formulas hold with ``e_hat`` — the active-set structure is unchanged.

The layer is the custom op ``exodus_sparse::sparse_linear_lif`` with this backward as its registered
autograd formula, so :class:`SparseSNN` compiles with ``torch.compile(fullgraph=True)``.

``backend="dense"`` runs the dense native reverse scan with the same truncated surrogate and
two ``torch.matmul`` for dW and dx (the benchmark's baseline).  Both backends run on CPU and CUDA
tensors (float32, float64; the layer, its input and its active sets on one device) and their native
kernels are deterministic on both devices (no atomics: each output element is summed by one thread in
a fixed order); the dense backend's ``torch.matmul`` follows PyTorch's own determinism settings.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from exodus_lightning.nn.spiking_layer import SpikingLayer
from exodus_lightning.ops import sparse as ops
from exodus_lightning.spec import records_init_args
from exodus_lightning.time_constants import decay_factor

BACKENDS = ("sparse", "dense")
GRADIENTS = ("detached", "exact")


# ----------------------------------------------------------------------------- surrogate


def _check_b_th(b_th: float) -> float:
    if not isinstance(b_th, (int, float)) or isinstance(b_th, bool) or not b_th > 0:
        raise ValueError(f"b_th must be a number > 0 (math.inf: no truncation), got {b_th!r}")
    return float(b_th)


def truncated_surrogate(v: Tensor, threshold: float = 1.0, beta: float = 100.0, b_th: float = 0.2) -> Tensor:
    """Suppl. E.5 eq. (20): ``g(v) = 1/(beta |v - V_th| + 1)^2`` if ``|v - V_th| < B_th``, else 0."""
    _check_b_th(b_th)
    d = (v - threshold).abs()
    den = beta * d + 1
    return torch.where(d < b_th, 1 / (den * den), torch.zeros_like(v))


def active_mask(v: Tensor, threshold: float = 1.0, b_th: float = 0.2) -> Tensor:
    """The active set ``|v - V_th| < B_th`` (strict) as a bool tensor."""
    _check_b_th(b_th)
    return (v - threshold).abs() < b_th


# ----------------------------------------------------------------------------- autograd


class _Config:
    """Static parameters of one layer call (kept off the autograd graph)."""

    __slots__ = ("alpha", "theta", "reset_scale", "b_th", "beta_s", "delay", "strict", "exact", "backend")

    def __init__(self, **kw) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


def _layer_forward(x: Tensor, weight: Tensor, alpha: float, theta: float, reset_scale: float, b_th: float,
                   beta_s: float, delay: bool, strict: bool, backend: str,
                   keep_trace: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The forward of :func:`sparse_linear_lif` from the sparse ops (on real or fake tensors)."""
    h = torch.matmul(x, weight.to(x.dtype).t())
    spikes, v, counts = ops.lif_forward(h, alpha, theta, reset_scale, b_th, beta_s, delay, strict)
    del h
    active = ops.collect_active(v, counts, theta, b_th, beta_s)
    if backend == "sparse":
        # Only the CSR active set and the input trace are kept; the membrane is dropped.
        kept = ops.input_trace(x, alpha, delay) if keep_trace else x.new_empty((0,))
    else:
        kept = v
    return spikes, active.offsets, active.times, active.fvals, kept


@torch.library.custom_op("exodus_sparse::sparse_linear_lif", mutates_args=())
def sparse_linear_lif(x: Tensor, weight: Tensor, in_offsets: Optional[Tensor], in_times: Optional[Tensor],
                      alpha: float, theta: float, reset_scale: float, b_th: float, beta_s: float, delay: bool,
                      strict: bool, exact: bool, backend: str,
                      keep_trace: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``spikes = LIF(x W^T)`` (suppl. E.2 eq. 17-19) and what its backward keeps: returns
    ``(spikes, offsets, times, fvals, kept)``, the layer's active set as a CSR and ``kept`` the input
    trace (``backend="sparse"`` with ``keep_trace``: the weight gradient's, suppl. B), the membrane
    (``"dense"``) or empty.  ``in_offsets``/``in_times``: the input layer's active set (the input
    gradient is then written only there, suppl. C) or None (dense input gradient); ``exact`` keeps
    the reset in the gradient.  Autograd: :func:`_backward`."""
    return _layer_forward(x, weight, alpha, theta, reset_scale, b_th, beta_s, delay, strict, backend, keep_trace)


@sparse_linear_lif.register_fake
def _(x, weight, in_offsets, in_times, alpha, theta, reset_scale, b_th, beta_s, delay, strict, exact, backend,
      keep_trace):
    return _layer_forward(x, weight, alpha, theta, reset_scale, b_th, beta_s, delay, strict, backend, keep_trace)


def _setup(ctx, inputs, output) -> None:
    (x, weight, in_offsets, in_times, alpha, theta, reset_scale, b_th, beta_s, delay, strict, exact, backend,
     keep_trace) = inputs
    _, offsets, times, fvals, kept = output
    ctx.cfg = _Config(alpha=alpha, theta=theta, reset_scale=reset_scale, b_th=b_th, beta_s=beta_s, delay=delay,
                      strict=strict, exact=exact, backend=backend)
    ctx.sparse_input = in_offsets is not None
    ctx.keep_trace = keep_trace
    ctx.save_for_backward(x if backend == "dense" else None, weight, offsets, times, fvals, kept, in_offsets,
                          in_times)


def _backward(ctx, grad_spikes, *_):
    """Sparse backward (suppl. B, C; Prop. 1): ``dW`` from the errors at the active entries and the
    input trace, ``dL/dx`` at the input layer's active entries (or dense from delta); or the dense
    reverse scan and two GEMMs (``backend="dense"``)."""
    cfg = ctx.cfg
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    x, weight, offsets, times, fvals, kept, in_offsets, in_times = ctx.saved_tensors
    grad_x = grad_w = None
    if cfg.backend == "sparse":
        dt = fvals.dtype
        w = weight.detach().to(dt)
        mode = 0
        if need_x:
            mode = 2 if ctx.sparse_input else 1
        if need_w and not ctx.keep_trace:
            raise RuntimeError("exodus_sparse::sparse_linear_lif: the weight gradient needs the input trace, "
                               "which keep_trace=False did not keep; call it with keep_trace=True")
        trace = kept if need_w else None
        _, gw, delta, gx, _ = torch.ops.exodus_sparse.sparse_backward(
            offsets, times, fvals, grad_spikes.to(dt), cfg.alpha, cfg.reset_scale, cfg.exact, cfg.delay, trace, w,
            mode, in_offsets if mode == 2 else None, in_times if mode == 2 else None, ops.DEFAULT_INPUT_PATH)
        if need_w:
            grad_w = gw.to(weight.dtype)
        if mode == 1:
            grad_x = torch.matmul(delta, w)
        elif mode == 2:
            grad_x = gx
    else:
        delta = ops.dense_backward(kept, grad_spikes, cfg.alpha, cfg.theta, cfg.reset_scale, cfg.b_th, cfg.beta_s,
                                   cfg.exact, cfg.delay)
        w = weight.detach().to(delta.dtype)
        if need_w:
            grad_w = torch.matmul(delta.reshape(-1, delta.shape[2]).t(),
                                  x.reshape(-1, x.shape[2]).to(delta.dtype)).to(weight.dtype)
        if need_x:
            grad_x = torch.matmul(delta, w)
    return grad_x, grad_w, None, None, None, None, None, None, None, None, None, None, None, None


torch.library.register_autograd("exodus_sparse::sparse_linear_lif", _backward, setup_context=_setup)


# ----------------------------------------------------------------------------- layers


def _positive(value: float, name: str, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0 or (not allow_inf and math.isinf(value)):
        raise ValueError(f"{name} must be > 0{'' if allow_inf else ' and finite'}, got {value!r}")
    return float(value)


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


@records_init_args
class SparseLinearLIF(SpikingLayer, nn.Module):
    """Fused Linear + LIF layer of the paper, trained with the sparse (S3GD) backward.

    Input ``(B, T, in_features)`` (spikes or any float), output spikes ``(B, T, out_features)``.
    The weight has ``nn.Linear``'s layout ``(out_features, in_features)`` and no bias (as in the
    paper).  The sparsity is in the weight product, which is why the layer is fused.

    Args:
        in_features, out_features: layer sizes.
        tau_mem: membrane time constant in time steps; ``alpha = exp(-1 / tau_mem)``.
        threshold: ``V_th`` (1).  v_reset: ``V_r`` (0); the reset subtracts ``V_th - V_r``.
        b_th: truncation ``B_th`` of the surrogate (0.2; ``math.inf``: none, everything active).
        surrogate_beta: ``beta`` of the surrogate (100).
        backend: ``"sparse"`` (active-set kernels) or ``"dense"`` (dense native scan + GEMMs).
        gradient: ``"detached"`` (paper: reset constant in the gradient) or ``"exact"`` (EXODUS).
        delay, reset_after_leak, strict_threshold: the paper's neuron semantics (all True); see
            the module docstring for the mapping to our ``nn.LIF``.
        init: ``"uniform"`` U(+-1/sqrt(in)) (N-MNIST, SHD) or ``"normal"`` N(0, (20 (1-alpha)/sqrt(in))^2)
            (F-MNIST), as in the official code (suppl. Table 3).

    ``forward(x, input_active=None)``: ``input_active`` is the previous layer's active set
    (``layer.last_active``); the input gradient is then written only there.  Without it the full
    (dense) input gradient is produced.  After each call ``last_active`` holds this layer's set.
    """

    def __init__(self, in_features: int, out_features: int, tau_mem: float = 10.0,
                 threshold: float = 1.0, v_reset: float = 0.0, b_th: float = 0.2, surrogate_beta: float = 100.0,
                 backend: str = "sparse", gradient: str = "detached", delay: bool = True,
                 reset_after_leak: bool = True, strict_threshold: bool = True, init: str = "uniform") -> None:
        super().__init__()
        self.in_features = _count(in_features, "in_features")
        self.out_features = _count(out_features, "out_features")
        self.tau_mem = _positive(tau_mem, "tau_mem", allow_inf=True)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        if not isinstance(v_reset, (int, float)) or not v_reset < threshold:
            raise ValueError(f"v_reset must be a number below threshold ({threshold}), got {v_reset!r}")
        self.threshold, self.v_reset = float(threshold), float(v_reset)
        self.b_th = _check_b_th(b_th)
        self.surrogate_beta = _positive(surrogate_beta, "surrogate_beta")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        if init not in ("uniform", "normal"):
            raise ValueError(f"init must be 'uniform' or 'normal', got {init!r}")
        self.backend, self.gradient, self.init = backend, gradient, init
        self.delay, self.reset_after_leak, self.strict_threshold = bool(delay), bool(reset_after_leak), bool(strict_threshold)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.last_active: Optional[ops.ActiveSet] = None
        self.reset_parameters()

    @property
    def alpha(self) -> float:
        return decay_factor(self.tau_mem)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "uniform":
                bound = 1 / math.sqrt(self.in_features)
                self.weight.uniform_(-bound, bound)
            else:
                self.weight.normal_(0.0, 20 * (1 - self.alpha) / math.sqrt(self.in_features))

    def config(self) -> _Config:
        a = self.alpha
        c = self.threshold - self.v_reset
        return _Config(alpha=a, theta=self.threshold, reset_scale=c if self.reset_after_leak else a * c,
                       b_th=self.b_th, beta_s=self.surrogate_beta, delay=self.delay, strict=self.strict_threshold,
                       exact=self.gradient == "exact", backend=self.backend)

    def forward(self, x: Tensor, input_active: Optional[ops.ActiveSet] = None) -> Tensor:
        if torch.is_autocast_enabled(x.device.type):
            # Mixed precision: the sparse kernels compute in float32 or float64 only, and the weight
            # product is fused into this layer, so the whole layer runs in float32 (autocast off).
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x, input_active)
        ops.check_tensor(x, "x")
        if x.shape[2] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features (last dimension), got shape {tuple(x.shape)}")
        if self.weight.device != x.device:
            raise ValueError(f"x is on {x.device} but the layer's weight is on {self.weight.device}: move the "
                             "layer (layer.to(device)) or the input to one device")
        if input_active is not None:
            if not isinstance(input_active, ops.ActiveSet):
                raise TypeError(f"input_active must be an ActiveSet or None, got {type(input_active).__name__}")
            if input_active.shape != tuple(x.shape):
                raise ValueError(f"input_active has shape {input_active.shape}, x has {tuple(x.shape)}")
            if input_active.device != x.device:
                raise ValueError(f"input_active is on {input_active.device}, x is on {x.device}")
            if input_active.fvals.dtype != x.dtype:
                input_active = None  # dtypes differ: fall back to the dense input gradient (still exact)
        c = self.config()
        keep_trace = self.weight.requires_grad and torch.is_grad_enabled()
        spikes, offsets, times, fvals, _ = sparse_linear_lif(
            x, self.weight, None if input_active is None else input_active.offsets,
            None if input_active is None else input_active.times, c.alpha, c.theta, c.reset_scale, c.b_th, c.beta_s,
            c.delay, c.strict, c.exact, c.backend, keep_trace)
        self.last_active = ops.ActiveSet(offsets, times, fvals, tuple(x.shape[:2]) + (self.out_features,))
        return spikes

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, tau_mem={self.tau_mem}, b_th={self.b_th}, "
                f"backend={self.backend!r}, gradient={self.gradient!r}")


@records_init_args
class DelayedLeakyReadout(nn.Module):
    """Readout of the paper: a hidden-type neuron with infinite threshold (suppl. E.3), i.e.
    ``V[t+1] = a_r V[t] + c (x[t] W^T)``, ``V[0] = 0``, ``a_r = exp(-1 / tau)`` (tau in steps); output ``V``
    ``(B, T, n_out)``.  ``c = 1`` (suppl.) or ``1 - a_r`` with ``scale_input=True`` (official code)."""

    def __init__(self, in_features: int, out_features: int, tau: float = 20.0, scale_input: bool = False) -> None:
        super().__init__()
        self.in_features = _count(in_features, "in_features")
        self.out_features = _count(out_features, "out_features")
        self.tau = _positive(tau, "tau")
        self.scale_input = bool(scale_input)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        from exodus_lightning.functional import leaky_integrator

        h = torch.matmul(x, self.weight.to(x.dtype).t())
        # One-step delay: h[t] reaches V at t + 1.
        h = torch.cat([h.new_zeros(h.shape[0], 1, h.shape[2]), h[:, :-1]], 1)
        if self.scale_input:
            h = h * (1 - decay_factor(self.tau))
        return leaky_integrator(h, tau=self.tau)


# ----------------------------------------------------------------------------- regularisers


def activity_regularizer_grad(spikes: Tensor, upper_strength: float = 0.06, upper_threshold: float = 1.0,
                              lower_strength: float = 100.0, lower_threshold: float = 1e-3) -> Tensor:
    """Closed-form ``dR/dS`` of the suppl. E.4 regularisers (as in
    :func:`exodus_lightning.losses.upper_activity_regularizer` / ``lower_activity_regularizer``),
    with ``zeta[b, j] = sum_t S[b, t, j]`` and batch mean ``1/B``:

    * upper ``lambda_up max(0, mean_j zeta[b, j] - nu_up)``: ``lambda_up / (B N)`` where active;
    * lower ``(lambda_low / N) sum_j max(0, nu_low - zeta[b, j])^2``:
      ``-2 lambda_low max(0, nu_low - zeta[b, j]) / (B N)``.

    Only the active entries of the result matter to the sparse backward."""
    if spikes.ndim < 3:
        raise ValueError(f"spikes must have shape (B, T, *features), got {tuple(spikes.shape)}")
    B, T = spikes.shape[:2]
    s = spikes.reshape(B, T, -1)
    N = s.shape[2]
    zeta = s.sum(1)  # (B, N)
    up = upper_strength * (zeta.mean(1) > upper_threshold).to(s.dtype) / (B * N)  # (B,)
    low = -2 * lower_strength * torch.relu(lower_threshold - zeta) / (B * N)      # (B, N)
    g = up[:, None] + low
    return g[:, None, :].expand(B, T, N).reshape(spikes.shape).contiguous()


class _InjectRegularizerGrad(torch.autograd.Function):
    """Identity in the forward; adds ``dR/dS`` of the activity regularisers in the backward, the
    way the paper's code lets them "enter dL/dS" without a separate graph."""

    @staticmethod
    def forward(ctx, spikes: Tensor, strengths: tuple) -> Tensor:
        ctx.save_for_backward(spikes)
        ctx.strengths = strengths
        return spikes.view_as(spikes)

    @staticmethod
    def backward(ctx, g: Tensor):
        (spikes,) = ctx.saved_tensors
        return g + activity_regularizer_grad(spikes, *ctx.strengths).to(g.dtype), None


@records_init_args
class SparseSNN(nn.Module):
    """The paper's network: input -> ``hidden`` SparseLinearLIF layers -> leaky readout with
    infinite threshold.  Output ``(B, T, n_classes)`` (the readout membrane; use max- or
    sum-over-time cross-entropy).  Each hidden layer receives the previous layer's active set so
    the input gradients are written only there.

    Activity regularisers (suppl. E.4; strengths 0 switch them off): in training their gradient is
    added to ``dL/dS`` of every hidden layer (:func:`activity_regularizer_grad`), and their value
    is kept in ``last_regularization`` (not part of the returned output, so it is not logged by
    :class:`~exodus_lightning.models.SpikingClassifier`).  ``last_activity`` holds the active
    fraction of each hidden layer.

    Args:
        n_inputs, n_classes: sizes.  hidden: hidden layer sizes ((200, 200)).
        tau_mem, tau_readout: time constants in steps.  b_th, surrogate_beta, backend, gradient, init: as in
        :class:`SparseLinearLIF`.  upper_strength, upper_threshold, lower_strength,
        lower_threshold: regulariser parameters (paper: 0.06, 1 (10 for SHD), 100, 1e-3).
        readout_scale_input: the official code's ``(1 - a_r)`` input factor of the readout.
    """

    def __init__(self, n_inputs: int, n_classes: int, hidden: Sequence[int] = (200, 200), tau_mem: float = 10.0,
                 tau_readout: float = 10.0, b_th: float = 0.2, surrogate_beta: float = 100.0,
                 backend: str = "sparse", gradient: str = "detached", init: str = "uniform",
                 upper_strength: float = 0.06, upper_threshold: float = 1.0, lower_strength: float = 100.0,
                 lower_threshold: float = 1e-3, readout_scale_input: bool = False) -> None:
        super().__init__()
        _count(n_inputs, "n_inputs")
        _count(n_classes, "n_classes")
        if isinstance(hidden, int) or not hidden:
            raise ValueError(f"hidden must be a non-empty list of layer sizes, got {hidden!r}")
        for name, v in [("upper_strength", upper_strength), ("lower_strength", lower_strength)]:
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        sizes = [n_inputs] + [_count(int(h) if not isinstance(h, bool) else h, "hidden") for h in hidden]
        self.layers = nn.ModuleList(
            SparseLinearLIF(a, b, tau_mem=tau_mem, b_th=b_th, surrogate_beta=surrogate_beta, backend=backend,
                            gradient=gradient, init=init)
            for a, b in zip(sizes[:-1], sizes[1:]))
        self.readout = DelayedLeakyReadout(sizes[-1], n_classes, tau=tau_readout, scale_input=readout_scale_input)
        self.strengths = (float(upper_strength), float(upper_threshold), float(lower_strength), float(lower_threshold))
        # the regularisers' value as a tensor: read as a float only when asked (no sync in the step,
        # and no data-dependent Python value under torch.compile)
        self._regularization: Optional[Tensor] = None

    @property
    def last_regularization(self) -> Optional[float]:
        """The activity regularisers' value of the last training forward (None outside training)."""
        return None if self._regularization is None else float(self._regularization)

    @property
    def last_activity(self) -> list[float]:
        """The active fraction of each hidden layer in the last forward (the paper's rho)."""
        return [layer.last_active.fraction for layer in self.layers if layer.last_active is not None]

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 3:
            raise ValueError(f"x must have shape (B, T, *features), got {tuple(x.shape)}")
        x = x.reshape(x.shape[0], x.shape[1], -1)
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        active = None
        reg = x.new_zeros(())
        regularize = self.training and torch.is_grad_enabled() and (self.strengths[0] > 0 or self.strengths[2] > 0)
        for layer in self.layers:
            x = layer(x, input_active=active)
            active = layer.last_active
            if regularize:
                from exodus_lightning.losses import (
                    lower_activity_regularizer,
                    upper_activity_regularizer,
                )

                with torch.no_grad():
                    reg = reg + (upper_activity_regularizer(x, self.strengths[0], self.strengths[1])
                                 + lower_activity_regularizer(x, self.strengths[2], self.strengths[3]))
                x = _InjectRegularizerGrad.apply(x, self.strengths)
        self._regularization = reg.detach() if regularize else None
        return self.readout(x)
