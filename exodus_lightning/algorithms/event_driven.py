"""Event-driven backpropagation (Zhu, Yu, Fang, Xie, Huang, Masquelier, NeurIPS 2022): SRM neurons
with a dual-exponential kernel, gradients only at spike times, spike-count loss.

Forward (suppl. D, S14–S16), per neuron, in discrete time::

    u[t] = sum_{t_last < t' <= t} eps(t - t') I[t'],    I[t] = (W s_in)[t]          (S14)
    s[t] = H(u[t] - theta)                                                          (S15)
    eps(d) = tau_m / (tau_m - tau_s) (a_m^(d+1) - a_s^(d+1))                        (S16)

with ``a_x = exp(-1/tau_x)`` (the paper, ``decay="exp"``) or ``a_x = 1 - 1/tau_x`` (the official
code, ``decay="linear"``); integration restarts after every output spike (``t_last``).  The native
kernel realises S14 as two traces ``m[t] = a_m (m[t-1] + I[t])``, ``q[t] = a_s (q[t-1] + I[t])``,
``u = kappa (m - q)``, all cleared at a spike, plus the gradient trace ``g[t] = a_g (g[t-1] + I[t])``
whose value at a spike is the normaliser ``g(t_k) = sum w h(t_k - t_m)`` of S20 with the backward
kernel ``h(d) = a_g^(d+1)`` (the paper's ``exp(-d/tau_grad)`` up to a constant factor, which cancels
in ``h / g``; h and g always share one decay).

Backward (suppl. B, S11, S17–S21): the loss gradient ``dL/ds[t_k]`` at output spikes becomes a
spike-time gradient ``dL/dt_k = -dL/ds[t_k]`` (suppl. B: ``d count / d t_k ~ -1``; with
:func:`exodus_lightning.losses.spike_count_loss` this is S17 up to its constant, as in the official
code).  For every output spike ``t_k`` and input spike ``t_m`` of its window ``(t_{k-1}, t_k]``::

    dL/dt_m += dL/dt_k * w h(t_k - t_m) / g(t_k)                                     (S11, S20)
    dL/dw   += dL/dt_k * (-1 / (du/dt)(t_k)) * eps(t_k - t_m)                        (S13, S21)

with the discrete ``du/dt = u[t_k] - u_post[t_k - 1]``.  Input spikes after a neuron's last output
spike get no gradient.  Because ``sum_m w h / g = 1`` per output spike, the sum of spike-time
gradients is the same in every layer (appendix A) — exactly, before the optional damping, as long
as every ``g(t_k) > 0``; a spike with ``g(t_k) <= 0`` has no finite time derivative and passes no
input gradient (the official code clips it the same way).

Options from the official code, documented and off by default: ``damping`` (0.85 there) multiplies
every input gradient; ``max_dudt_inv`` (4 there) clips ``-1/(du/dt)`` to ``[-max_dudt_inv, 0]``.
Not implemented: the official code's label-spike injection and its approximate weight-norm backward
(here the exact chain rule S23–S28).

Weight normalisation (suppl. E, S22): ``W = gamma (W0 - mean W0) / sqrt(Var W0 + eps) + beta`` per
output channel (biased variance, as S25/S26 assume), backward S23–S28 (:class:`WeightNormFunction`).

Example:
    >>> import torch
    >>> from exodus_lightning.algorithms.event_driven import EventDrivenSNN
    >>> net = EventDrivenSNN("20-32l-4l", tau_m=8.0, tau_s=4.0, tau_grad=3.0)
    >>> net(torch.zeros(2, 10, 20)).shape
    torch.Size([2, 10, 4])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exodus_lightning.nn.architecture import flat_size, parse_architecture
from exodus_lightning.nn.spiking_layer import SpikingLayer
from exodus_lightning.ops.event import srm_backward, srm_forward
from exodus_lightning.spec import records_init_args

Decay = Literal["exp", "linear"]


# ----------------------------------------------------------------------------- kernels


def decay_factor(tau: float, decay: Decay = "exp") -> float:
    """Per-step decay of a trace with time constant ``tau``: ``exp(-1/tau)`` (paper S16) or
    ``1 - 1/tau`` (official code)."""
    if decay == "exp":
        return math.exp(-1.0 / tau)
    if decay == "linear":
        return 1.0 - 1.0 / tau
    raise ValueError(f"decay must be 'exp' or 'linear', got {decay!r}")


def srm_kernel(n: int, tau_m: float, tau_s: float, decay: Decay = "exp") -> Tensor:
    """``eps(d)`` of S16 for ``d = 0..n-1`` (float64), ``tau_m/(tau_m-tau_s) (a_m^(d+1) - a_s^(d+1))``."""
    d = torch.arange(1, n + 1, dtype=torch.float64)
    am, as_ = decay_factor(tau_m, decay), decay_factor(tau_s, decay)
    return tau_m / (tau_m - tau_s) * (am ** d - as_ ** d)


def gradient_kernel(n: int, tau_grad: float, decay: Decay = "exp") -> Tensor:
    """Backward kernel ``h(d) = a_g^(d+1)`` for ``d = 0..n-1`` (float64); ``exp(-d/tau_grad)`` of
    section 3.3 times the constant ``a_g``, which cancels in ``h / g``."""
    d = torch.arange(1, n + 1, dtype=torch.float64)
    return decay_factor(tau_grad, decay) ** d


@records_init_args
@dataclass(frozen=True)
class SRMConfig:
    """Neuron and gradient options of an event-driven layer (validated on construction)."""

    tau_m: float = 8.0
    tau_s: float = 4.0
    tau_grad: float = 3.0
    theta: float = 1.0
    decay: Decay = "exp"
    damping: float = 1.0
    max_dudt_inv: Optional[float] = None

    def __post_init__(self) -> None:
        if self.decay not in ("exp", "linear"):
            raise ValueError(f"decay must be 'exp' or 'linear', got {self.decay!r}")
        low = 1.0 if self.decay == "linear" else 0.0  # 1 - 1/tau must lie in (0, 1)
        for name in ("tau_m", "tau_s", "tau_grad", "theta", "damping"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{name} must be a float, got {type(v).__name__}")
            if not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v!r}")
        for name in ("tau_m", "tau_s", "tau_grad"):
            if not getattr(self, name) > low:
                raise ValueError(f"{name} must be > {low:g} with decay={self.decay!r}, got {getattr(self, name)!r}")
        if not self.tau_m > self.tau_s:
            raise ValueError(f"tau_m must be > tau_s (S16), got tau_m={self.tau_m!r}, tau_s={self.tau_s!r}")
        if not self.theta > 0:
            raise ValueError(f"theta must be > 0, got {self.theta!r}")
        if not 0 < self.damping <= 1:
            raise ValueError(f"damping must lie in (0, 1], got {self.damping!r}")
        if self.max_dudt_inv is not None and not (isinstance(self.max_dudt_inv, (int, float))
                                                  and self.max_dudt_inv > 0):
            raise ValueError(f"max_dudt_inv must be > 0 or None, got {self.max_dudt_inv!r}")

    @property
    def decays(self) -> tuple[float, float, float]:
        return (decay_factor(self.tau_m, self.decay), decay_factor(self.tau_s, self.decay),
                decay_factor(self.tau_grad, self.decay))

    @property
    def kappa(self) -> float:
        return self.tau_m / (self.tau_m - self.tau_s)

    def op_args(self) -> tuple[float, float, float, float]:
        am, as_, ag = self.decays
        return am, as_, ag, self.kappa


# ----------------------------------------------------------------------------- autograd


class EventLayerFunction(torch.autograd.Function):
    """Weight layer (linear, or conv2d when ``geometry = (stride, padding)``) followed by SRM neurons,
    with the event-driven backward: ``dW`` from ``e_w`` (S21) and ``ds_in`` from ``e_in`` (S20),
    masked to input spikes and multiplied by ``damping``."""

    @staticmethod
    def forward(ctx, s_in: Tensor, weight: Tensor, cfg: SRMConfig, geometry: Optional[tuple[int, int]]):
        B, T = s_in.shape[:2]
        if geometry is None:
            current = s_in @ weight.t()
        else:
            stride, padding = geometry
            current = F.conv2d(s_in.flatten(0, 1), weight, stride=stride, padding=padding)
            current = current.reshape(B, T, *current.shape[1:])
        out_shape = current.shape
        am, as_, ag, kappa = cfg.op_args()
        spikes, du, dug, _ = srm_forward(current.reshape(B, T, -1), am, as_, ag, kappa, float(cfg.theta), False)
        ctx.save_for_backward(s_in, weight, spikes, du, dug)
        ctx.cfg, ctx.geometry = cfg, geometry
        return spikes.reshape(out_shape)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor):
        s_in, weight, spikes, du, dug = ctx.saved_tensors
        cfg, geometry = ctx.cfg, ctx.geometry
        am, as_, ag, kappa = cfg.op_args()
        B, T = s_in.shape[:2]
        clip = float(cfg.max_dudt_inv) if cfg.max_dudt_inv is not None else 0.0
        e_w, e_in = srm_backward(grad_spikes.reshape(spikes.shape), spikes, du, dug, am, as_, ag, kappa, clip)
        grad_in = grad_w = None
        if geometry is None:
            n_out, n_in = weight.shape
            if ctx.needs_input_grad[1]:
                grad_w = e_w.reshape(-1, n_out).t() @ s_in.reshape(-1, n_in)        # S21
            if ctx.needs_input_grad[0]:
                grad_in = e_in @ weight                                              # S20
        else:
            stride, padding = geometry
            x = s_in.flatten(0, 1)
            out_hw = grad_spikes.shape[-3:]
            if ctx.needs_input_grad[1]:
                grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, e_w.reshape(B * T, *out_hw),
                                                     stride=stride, padding=padding)
            if ctx.needs_input_grad[0]:
                grad_in = torch.nn.grad.conv2d_input(x.shape, weight, e_in.reshape(B * T, *out_hw),
                                                     stride=stride, padding=padding).reshape(s_in.shape)
        if grad_in is not None:
            # Gradients exist only at input spike events (S20 sums over spikes).
            grad_in = grad_in * (s_in != 0).to(grad_in.dtype)
            if cfg.damping != 1.0:
                grad_in = grad_in * cfg.damping
        return grad_in, grad_w, None, None


class AdjustedAvgPoolFunction(torch.autograd.Function):
    """Average pooling of spikes whose backward shares each window's gradient among the window's
    spiking inputs only (the official "adjusted_avg" pooling), so the gradient sum is preserved
    (plain average pooling would scale it by n_spiking / k^2)."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: int):
        B, T = x.shape[:2]
        y = F.avg_pool2d(x.flatten(0, 1), kernel)
        ctx.save_for_backward(x)
        ctx.kernel = kernel
        return y.reshape(B, T, *y.shape[1:])

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        k = ctx.kernel
        mask = (x != 0).to(grad.dtype)
        flat = mask.flatten(0, 1)
        count = F.avg_pool2d(flat, k) * (k * k)
        share = torch.where(count > 0, grad.flatten(0, 1) / count.clamp_min(1), torch.zeros_like(count))
        up = share.repeat_interleave(k, -2).repeat_interleave(k, -1)
        H, W = x.shape[-2:]
        up = F.pad(up, (0, W - up.shape[-1], 0, H - up.shape[-2]))  # rows/cols the pooling dropped
        return up.reshape(x.shape) * mask, None


class WeightNormFunction(torch.autograd.Function):
    """S22 per output channel with the hand-written backward S23–S28 (tested against autograd)."""

    @staticmethod
    def forward(ctx, w0: Tensor, gamma: Tensor, beta: Tensor, eps: float):
        x = w0.reshape(w0.shape[0], -1)
        mu = x.mean(1, keepdim=True)
        var = x.var(1, unbiased=False, keepdim=True)
        inv = torch.rsqrt(var + eps)
        xhat = (x - mu) * inv                                               # S22
        y = gamma[:, None] * xhat + beta[:, None]
        ctx.save_for_backward(x, mu, var, inv, xhat, gamma)
        ctx.eps, ctx.shape = eps, w0.shape
        return y.reshape(w0.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, mu, var, inv, xhat, gamma = ctx.saved_tensors
        m = x.shape[1]
        dy = grad.reshape(x.shape)
        dxhat = dy * gamma[:, None]                                                           # S23
        dvar = (dxhat * (x - mu)).sum(1, keepdim=True) * -0.5 * (var + ctx.eps) ** -1.5      # S25
        # S24; the standard chain rule also has dvar * sum(-2 (x - mu)) / m, which is exactly 0.
        dmu = (dxhat * -inv).sum(1, keepdim=True)
        dx = dxhat * inv + dmu / m + dvar * 2 * (x - mu) / m                                  # S26
        dgamma = (dy * xhat).sum(1)                                                           # S27
        dbeta = dy.sum(1)                                                                     # S28
        return dx.reshape(ctx.shape), dgamma, dbeta, None


def weight_norm(w0: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """S22: ``gamma_k (W0_k - E[W0_k]) / sqrt(Var[W0_k] + eps) + beta_k`` per output channel k."""
    if gamma.shape != (w0.shape[0],) or beta.shape != (w0.shape[0],):
        raise ValueError(f"gamma and beta must have shape ({w0.shape[0]},), got {tuple(gamma.shape)} and "
                         f"{tuple(beta.shape)}")
    return WeightNormFunction.apply(w0, gamma, beta, eps)


# ----------------------------------------------------------------------------- layers


def _check_spikes(x: Tensor, name: str, ndim: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions (B, T, ...), got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have T >= 1 time steps, got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")


class _EventWeightLayer(SpikingLayer, nn.Module):
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
class EventLinear(_EventWeightLayer):
    """Fully connected weights + SRM neurons, ``(B, T, in_features) -> (B, T, out_features)`` spikes.

    Args:
        in_features, out_features: sizes.
        cfg: :class:`SRMConfig` (tau_m, tau_s, tau_grad, theta, decay, damping, max_dudt_inv).
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
        _check_spikes(x, "x", 3)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features in its last dimension, got shape "
                             f"{tuple(x.shape)}")
        w = self.weight().to(x.dtype)
        return EventLayerFunction.apply(x.contiguous(), w, self.cfg, None)


@records_init_args
class EventConv2d(_EventWeightLayer):
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
        _check_spikes(x, "x", 5)
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
        _check_spikes(x, "x", 5)
        return AdjustedAvgPoolFunction.apply(x.contiguous(), self.kernel_size)


@records_init_args
class _FlattenFeatures(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2)


# ----------------------------------------------------------------------------- network

def predict(spikes: Tensor, weighted: bool = False) -> Tensor:
    """Class prediction from output spike counts ``(B, T, C) -> (B,)``.  ``weighted=True`` uses the
    official code's tie-break: spikes weighted by ``1.1 - t / (10 T)`` (earlier spikes count more)."""
    _check_spikes(spikes, "spikes", 3)
    if weighted:
        T = spikes.shape[1]
        w = 1.1 - torch.arange(T, dtype=spikes.dtype, device=spikes.device) / (10 * T)
        return (spikes * w[None, :, None]).sum(1).argmax(1)
    return spikes.sum(1).argmax(1)


@records_init_args
class EventDrivenSNN(nn.Module):
    """A feed-forward SNN of SRM layers trained with event-driven backpropagation; outputs the last
    layer's spikes ``(B, T, num_classes)`` — use with ``SpikingClassifier(loss="spike_count")`` (S17),
    whose score (spike count summed over time) is the prediction of :func:`predict`.

    Args:
        architecture: the framework's one grammar
            (:func:`exodus_lightning.nn.architecture.parse_architecture`): ``"F-Hl-...-Cl"`` (fully
            connected, e.g. ``"100-128l-20l"``) or, for images ``(B, T, C, H, W)``, a first token
            ``HxWxC`` followed by ``NcK`` / ``NcKpP`` (conv, N channels, kernel K, padding P, default
            K // 2), ``Na`` (average pooling, with the adjusted backward) and ``Nl`` (a flatten is
            inserted before the first).  Every weight layer is followed by SRM neurons, the last one
            included (outputs are spikes).  N-MNIST of Table S1: ``"34x34x2-12c5p1-2a-64c5p0-2a-10l"``.
        tau_m, tau_s, tau_grad, theta: S16 kernel, backward kernel, threshold (Table S1 N-MNIST
            defaults 8, 4, 3, 1).
        decay: ``"exp"`` (paper, ``exp(-1/tau)``) or ``"linear"`` (official code, ``1 - 1/tau``).
        damping: factor on every input gradient (official code: 0.85); 1 = off.
        max_dudt_inv: clip ``-1/(du/dt)`` to ``[-max_dudt_inv, 0]`` (official code: 4); None = off.
        weight_norm: weight normalisation S22 in every layer.
        init_gain: initial weight scale (std times sqrt(fan-in)).
        calibrate_spikes: if set, the first training forward scales each layer (data-dependent
            init, suppl. G; a geometric bisection on the weight scale, layer by layer) so that its
            neurons fire this many spikes on average over the window; None: no calibration.  The
            calibration is data-dependent control flow: with ``torch.compile(fullgraph=True)`` run it
            eagerly first (one training forward, or :meth:`calibrate`), then compile.
    """

    def __init__(self, architecture: str, tau_m: float = 8.0, tau_s: float = 4.0, tau_grad: float = 3.0,
                 theta: float = 1.0, decay: Decay = "exp", damping: float = 1.0,
                 max_dudt_inv: Optional[float] = None, weight_norm: bool = True, init_gain: float = 1.0,
                 calibrate_spikes: Optional[float] = None) -> None:
        super().__init__()
        if not isinstance(architecture, str):
            raise TypeError(f"architecture must be a string, got {type(architecture).__name__}")
        if calibrate_spikes is not None and not calibrate_spikes > 0:
            raise ValueError(f"calibrate_spikes must be > 0 or None, got {calibrate_spikes!r}")
        self.cfg = SRMConfig(tau_m, tau_s, tau_grad, theta, decay, damping, max_dudt_inv)
        self.architecture = architecture
        self.calibrate_spikes = calibrate_spikes
        self.register_buffer("calibrated", torch.tensor(False))
        # The buffer (saved in checkpoints) mirrored as a Python bool: forward reads this one, so that
        # a calibrated network compiles with fullgraph=True (a tensor's value would be data-dependent
        # control flow); kept in step by calibrate() and after load_state_dict.
        self._calibration_pending = calibrate_spikes is not None
        self.register_load_state_dict_post_hook(EventDrivenSNN._sync_calibration)
        self.layers = nn.ModuleList(self._build(architecture, weight_norm, init_gain))

    @staticmethod
    def _sync_calibration(module: "EventDrivenSNN", incompatible_keys) -> None:
        module._calibration_pending = module.calibrate_spikes is not None and not bool(module.calibrated)

    def _build(self, arch: str, weight_norm: bool, init_gain: float) -> list[nn.Module]:
        self.input_shape, tokens = parse_architecture(arch, ("conv", "avg_pool", "linear"), "EventDrivenSNN")
        if not tokens[-1].weighted:
            raise ValueError(f"architecture {arch!r} must end with a weight layer (its spikes are the output)")
        layers: list[nn.Module] = []
        for tok in tokens:
            if tok.kind == "conv":
                layers.append(EventConv2d(tok.in_shape[0], tok.size, tok.kernel, 1, tok.padding, self.cfg, weight_norm,
                                          init_gain))
            elif tok.kind == "avg_pool":
                layers.append(AdjustedAvgPool2d(tok.size))
            else:
                if len(tok.in_shape) != 1:
                    layers.append(_FlattenFeatures())
                layers.append(EventLinear(flat_size(tok.in_shape), tok.size, self.cfg, weight_norm, init_gain))
        self.num_outputs = tokens[-1].out_shape[0]
        return layers

    def weight_layers(self) -> list[_EventWeightLayer]:
        return [m for m in self.layers if isinstance(m, _EventWeightLayer)]

    def forward(self, x: Tensor) -> Tensor:
        _check_spikes(x, "x", 2 + len(self.input_shape))
        if tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(f"x must have shape (B, T, {', '.join(map(str, self.input_shape))}), got "
                             f"{tuple(x.shape)}")
        if self.training and self._calibration_pending:
            # data-dependent (a bisection on measured spike counts): runs eagerly, before torch.compile
            self.calibrate(x, self.calibrate_spikes)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """The output of every layer (spikes of the weight layers, pooled maps of the pools)."""
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs

    @torch.no_grad()
    def calibrate(self, x: Tensor, spikes_per_neuron: float, low: float = 0.05, high: float = 500.0,
                  tol: float = 1.01) -> list[float]:
        """Data-dependent init (suppl. G, as in the official code): layer by layer, a geometric
        bisection on a multiplier of the weight scale in ``[low, high]`` until the layer's mean spike
        count per neuron on ``x`` is ``spikes_per_neuron`` (stops when high/low < ``tol``).  Returns
        the multipliers; marks the network calibrated."""
        if not spikes_per_neuron > 0:
            raise ValueError(f"spikes_per_neuron must be > 0, got {spikes_per_neuron!r}")
        factors = []
        h = x
        for layer in self.layers:
            if isinstance(layer, _EventWeightLayer):
                lo, hi = low, high
                layer.scale_(lo)
                cur = lo
                while hi / lo > tol:
                    mid = math.sqrt(lo * hi)
                    layer.scale_(mid / cur)
                    cur = mid
                    rate = layer(h).sum(1).mean().item()
                    if rate < spikes_per_neuron:
                        lo = mid
                    else:
                        hi = mid
                factors.append(cur)
            h = layer(h)
        self.calibrated.fill_(True)
        self._calibration_pending = False
        return factors
