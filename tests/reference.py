"""Independent references for the tests: the neuron equations of docs/architecture.md §3 as a plain
PyTorch time loop (float64 by default), differentiated by autograd (= BPTT), and the SLAYER
recursion written out by hand.

Nothing here imports the package's own neuron code: the only shared piece is the surrogate
callable, which defines the gradient being compared.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
from torch import Tensor

Surrogate = Callable[[Tensor, Tensor], Tensor]


def single_exponential(v: Tensor, theta: Tensor, grad_width: float = 0.5, grad_scale: float = 1.0) -> Tensor:
    w = theta * grad_width
    return grad_scale / w * torch.exp(-torch.abs(v - theta) / w)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, theta, k, surrogate):
        ctx.save_for_backward(v, theta)
        ctx.surrogate = surrogate
        if k == 1:
            return (v >= theta).to(v.dtype)
        s = torch.clamp(torch.trunc(v / theta), min=0)
        return torch.clamp(s, max=float(k)) if k > 1 else s

    @staticmethod
    def backward(ctx, g):
        v, theta = ctx.saved_tensors
        return g * ctx.surrogate(v, theta), None, None, None


def _param(p: Union[float, Tensor], features: tuple, dtype) -> Tensor:
    if isinstance(p, Tensor):
        return p.to(dtype).expand(features).reshape(-1) if p.numel() > 1 else p.to(dtype).reshape(1)
    return torch.tensor([float(p)], dtype=dtype)


def lif_reference(
    x: Tensor,
    tau_mem: Union[float, Tensor],
    threshold: Union[float, Tensor] = 1.0,
    reset: str = "subtract",
    spike: Union[str, int] = "single",
    tau_syn: Optional[float] = None,
    norm_input: bool = False,
    min_v_mem: Optional[float] = None,
    surrogate: Surrogate = single_exponential,
    v0: Optional[Tensor] = None,
    i0: Optional[Tensor] = None,
    dtype: torch.dtype = torch.float64,
    reset_in_gradient: bool = True,
):
    """Returns (spikes, v_pre_reset, v_post_final, i_final), all in ``dtype``, autograd-connected to
    ``x``, ``v0``, ``i0`` and a tensor ``tau_mem``.  ``x`` is ``(B, T, *features)``.
    ``reset_in_gradient=False`` is SLAYER's gradient: the reset left out (``dr/dv = 1``, values unchanged)."""
    B, T = x.shape[:2]
    features = tuple(x.shape[2:])
    x3 = x.to(dtype).reshape(B, T, -1)
    N = x3.shape[2]
    # alpha = exp(-1/tau) evaluated in ``dtype`` (tau = inf gives exactly 1, the IF neuron).
    alpha = torch.exp(-1.0 / _param(tau_mem, features, dtype))
    theta = _param(threshold, features, dtype)
    beta = None if tau_syn is None else torch.exp(-1.0 / _param(tau_syn, features, dtype))
    k = {"single": 1, "multi": 0}.get(spike, spike)
    v_post = v0.to(dtype).reshape(B, N) if v0 is not None else torch.zeros(B, N, dtype=dtype)
    i = i0.to(dtype).reshape(B, N) if i0 is not None else torch.zeros(B, N, dtype=dtype)
    spikes, vs = [], []
    for t in range(T):
        inp = x3[:, t]
        if beta is not None:
            i = beta * (i + inp)
            inp = i
        v = alpha * v_post + ((1 - alpha) * inp if norm_input else inp)
        s = _Spike.apply(v, theta, k, surrogate)
        if reset == "subtract":
            r = v - theta * s
        else:
            r = v * (s == 0).to(dtype)
        if not reset_in_gradient:
            r = v + (r - v).detach()
        if min_v_mem is not None:
            r = torch.where(r > min_v_mem, r, torch.full_like(r, min_v_mem))
        v_post = r
        spikes.append(s)
        vs.append(v)
    shape = (B, T, *features)
    return (
        torch.stack(spikes, 1).reshape(shape),
        torch.stack(vs, 1).reshape(shape),
        v_post.reshape(B, *features),
        i.reshape(B, *features) if beta is not None else None,
    )


def slayer_reference_grad(
    grad_spikes: Tensor,
    v: Tensor,
    tau_mem: float,
    threshold: float,
    surrogate: Surrogate = single_exponential,
    norm_input: bool = False,
) -> Tensor:
    """dL/dx of the SLAYER recursion (reset dropped from the gradient), by hand:
    g_v[t] = g_s[t] f'(v[t]) + alpha g_v[t+1];  dL/dx[t] = c g_v[t]   (no synapse, no clamp)."""
    alpha = 1.0 if math.isinf(tau_mem) else math.exp(-1.0 / tau_mem)
    c = (1 - alpha) if norm_input else 1.0
    B, T = v.shape[:2]
    gs = grad_spikes.reshape(B, T, -1).double()
    fv = surrogate(v.reshape(B, T, -1).double(), torch.tensor(float(threshold), dtype=torch.float64))
    out = torch.zeros_like(gs)
    carry = torch.zeros_like(gs[:, 0])
    for t in reversed(range(T)):
        carry = gs[:, t] * fv[:, t] + alpha * carry
        out[:, t] = c * carry
    return out.reshape(v.shape)


def leaky_reference(x: Tensor, tau: Union[float, Tensor], v0: Optional[Tensor] = None, norm_input: bool = False):
    B, T = x.shape[:2]
    features = tuple(x.shape[2:])
    x3 = x.double().reshape(B, T, -1)
    if isinstance(tau, Tensor):
        alpha = torch.exp(-1.0 / _param(tau, features, torch.float64))
    else:
        alpha = torch.tensor([math.exp(-1.0 / tau) if not math.isinf(tau) else 1.0], dtype=torch.float64)
    v = v0.double().reshape(B, -1) if v0 is not None else torch.zeros(B, x3.shape[2], dtype=torch.float64)
    outs = []
    for t in range(T):
        v = alpha * v + ((1 - alpha) * x3[:, t] if norm_input else x3[:, t])
        outs.append(v)
    return torch.stack(outs, 1).reshape(x.shape)


def rel_err(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max(max |b|, tiny)."""
    a, b = a.double(), b.double()
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / max(scale, 1e-30)


# ----------------------------------------------------------------- sparse spiking gradient descent


def truncated_surrogate(v: Tensor, theta: float, b_th: float, beta_s: float) -> Tensor:
    """Suppl. E.5 eq. (20): ``1 / (beta_s |v - theta| + 1)^2`` where ``|v - theta| < b_th``, else 0."""
    d = (v - theta).abs()
    return torch.where(d < b_th, 1 / (beta_s * d + 1) ** 2, torch.zeros_like(v))


class _TruncatedSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, theta, strict, b_th, beta_s):
        ctx.save_for_backward(v)
        ctx.args = theta, b_th, beta_s
        return (v > theta if strict else v >= theta).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        theta, b_th, beta_s = ctx.args
        return g * truncated_surrogate(v, theta, b_th, beta_s), None, None, None, None


def sparse_lif_reference(h: Tensor, alpha: float, theta: float, reset_scale: float, b_th: float, beta_s: float,
                         delay: bool, strict: bool, exact: bool = False) -> tuple[Tensor, Tensor]:
    """The S3GD layer's neuron (suppl. E.2 eq. (17)-(19)) as a loop in ``h``'s dtype, in the kernels'
    order of operations: ``V[t] = (alpha V[t-1] + h[t - delay]) - reset_scale S[t-1]``, ``S[t] = V[t] >
    theta`` (``>=`` unless ``strict``).  Returns ``(spikes, V)``, differentiable w.r.t. ``h`` through the
    truncated surrogate (BPTT), the reset detached unless ``exact``."""
    B, T, N = h.shape
    v = h.new_zeros(B, N)
    s = h.new_zeros(B, N)
    spikes, vs = [], []
    for t in range(T):
        inp = (h[:, t - 1] if t > 0 else torch.zeros_like(v)) if delay else h[:, t]
        v = (alpha * v + inp) - reset_scale * (s if exact else s.detach())
        s = _TruncatedSpike.apply(v, theta, strict, b_th, beta_s)
        spikes.append(s)
        vs.append(v)
    if T == 0:
        return h * 0, h * 0  # empty, and connected to h for autograd
    return torch.stack(spikes, 1), torch.stack(vs, 1)


def input_trace_reference(x: Tensor, alpha: float, delay: bool) -> Tensor:
    """``tr[t] = alpha tr[t-1] + x[t - delay]`` (suppl. B: dV[t]/dW with the reset ignored), ``x[-1] = 0``."""
    B, T, N = x.shape
    tr = x.new_zeros(B, N)
    out = []
    for t in range(T):
        tr = alpha * tr + ((x[:, t - 1] if t > 0 else torch.zeros_like(tr)) if delay else x[:, t])
        out.append(tr)
    return torch.stack(out, 1) if T else x.new_zeros(B, 0, N)


# ----------------------------------------------------------------- event-driven backpropagation
# Brute-force loops over spikes of Zhu et al. 2022, suppl. S14-S16 and S20/S21 (float64).  ``cfg``
# is anything with tau_mem, tau_syn, tau_grad, theta, decay ("exp" | "euler"), damping, max_dudt_inv.


def srm_decay(tau: float, decay: str) -> float:
    """A trace's decay per step: ``exp(-1/tau)``, or the official code's ``1 - 1/tau``."""
    return math.exp(-1.0 / tau) if decay == "exp" else 1.0 - 1.0 / tau


def eps_ref(d: int, tau_mem: float, tau_syn: float, decay: str) -> float:
    """S16 written out (``exp(-(d+1)/tau)``, or the code's ``(1 - 1/tau)^(d+1)``)."""
    return tau_mem / (tau_mem - tau_syn) * (srm_decay(tau_mem, decay) ** (d + 1) - srm_decay(tau_syn, decay) ** (d + 1))


def h_ref(d: int, tau_g: float, decay: str) -> float:
    """Section 3.3's backward kernel ``exp(-d / tau_grad)`` (no extra factor: it cancels in h / g)."""
    return math.exp(-d / tau_g) if decay == "exp" else (1.0 - 1.0 / tau_g) ** d


def forward_ref(current: torch.Tensor, cfg):
    """S14/S15 by a loop over steps, re-summing the kernel over the window since the last spike."""
    B, T, N = current.shape
    s = torch.zeros_like(current)
    u = torch.zeros_like(current)
    for b in range(B):
        for n in range(N):
            last = -1
            for t in range(T):
                u[b, t, n] = sum(eps_ref(t - tp, cfg.tau_mem, cfg.tau_syn, cfg.decay) * current[b, tp, n].item()
                                 for tp in range(last + 1, t + 1))
                if u[b, t, n] >= cfg.theta:
                    s[b, t, n] = 1.0
                    last = t
    return s, u


def backward_ref(x, w, s_out, u, grad_out, cfg):
    """S20/S21 by loops over output spikes and the input spikes of their windows."""
    B, T, M = x.shape
    N = w.shape[0]
    dW = torch.zeros_like(w)
    dx = torch.zeros_like(x)
    for b in range(B):
        for i in range(N):
            prev = -1
            for tk in range(T):
                if s_out[b, tk, i] == 0:
                    continue
                dL_dt = -grad_out[b, tk, i].item()                      # d count / d t_k = -1
                u_post_prev = 0.0 if tk == 0 or s_out[b, tk - 1, i] else u[b, tk - 1, i].item()
                dudt = u[b, tk, i].item() - u_post_prev
                dtdu = -1.0 / dudt
                if cfg.max_dudt_inv is not None:
                    dtdu = max(dtdu, -cfg.max_dudt_inv)
                window = [(tm, j) for tm in range(prev + 1, tk + 1) for j in range(M) if x[b, tm, j] != 0]
                g = sum(w[i, j].item() * h_ref(tk - tm, cfg.tau_grad, cfg.decay) for tm, j in window)
                for tm, j in window:
                    dW[i, j] += dL_dt * dtdu * eps_ref(tk - tm, cfg.tau_mem, cfg.tau_syn, cfg.decay) * x[b, tm, j]
                    if g > 0:
                        dL_dtm = dL_dt * w[i, j].item() * h_ref(tk - tm, cfg.tau_grad, cfg.decay) / g
                        dx[b, tm, j] += -dL_dtm * cfg.damping           # back to dL/ds_in
                prev = tk
    return dW, dx
