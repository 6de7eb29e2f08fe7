"""Event-driven backpropagation (Zhu, Yu, Fang, Xie, Huang, Masquelier, NeurIPS 2022): SRM neurons
with a dual-exponential kernel, gradients only at spike times, spike-count loss.

Forward (suppl. D, S14–S16), per neuron, in discrete time::

    u[t] = sum_{t_last < t' <= t} eps(t - t') I[t'],    I[t] = (W s_in)[t]          (S14)
    s[t] = H(u[t] - theta)                                                          (S15)
    eps(d) = tau_mem / (tau_mem - tau_syn) (a_m^(d+1) - a_s^(d+1))                  (S16)

with ``a_x = exp(-1/tau_x)`` (the paper, ``decay="exp"``) or ``a_x = 1 - 1/tau_x`` (the official
code, ``decay="euler"``; :mod:`exodus_lightning.time_constants`; the paper's tau_m and tau_s are
``tau_mem`` and ``tau_syn`` here); integration restarts after every output spike (``t_last``).  The native
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
    >>> net = EventDrivenSNN("20-32l-4l", tau_mem=8.0, tau_syn=4.0, tau_grad=3.0)
    >>> net(torch.zeros(2, 10, 20)).shape
    torch.Size([2, 10, 4])
"""


from exodus_lightning.algorithms.event_driven.functions import (
    AdjustedAvgPoolFunction,
    EventLayerFunction,
    WeightNormFunction,
    weight_norm,
)
from exodus_lightning.algorithms.event_driven.layers import (
    AdjustedAvgPool2d,
    EventConv2d,
    EventLinear,
)
from exodus_lightning.algorithms.event_driven.network import EventDrivenSNN, predict
from exodus_lightning.algorithms.event_driven.srm import (
    SRMConfig,
    gradient_kernel,
    srm_kernel,
)

__all__ = [
    "srm_kernel",
    "gradient_kernel",
    "SRMConfig",
    "EventLayerFunction",
    "AdjustedAvgPoolFunction",
    "WeightNormFunction",
    "weight_norm",
    "EventLinear",
    "EventConv2d",
    "AdjustedAvgPool2d",
    "predict",
    "EventDrivenSNN",
]
