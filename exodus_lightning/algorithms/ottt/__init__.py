r"""Online training through time (OTTT; Xiao et al., NeurIPS 2022) building blocks.

Per time step ``t`` and spiking layer ``l`` (paper §4.1, suppl. Algorithm 1; ``sg`` = stop-gradient):

.. code-block:: text

    u[t]     = lam * sg(v[t-1]) + I[t]          I[t] = W s^{l-1}[t] + b   (temporal path cut)
    s[t]     = H(u[t] - V_th)                   H(x) = 1 if x >= 0; surrogate: sigmoid' with slope 4
    v[t]     = u[t] - V_th * sg(s[t])           soft reset, detached
    a_hat[t] = lam * a_hat[t-1] + s[t]          presynaptic trace (paper eq. (5), no autograd)

with ``lam = 1 - 1/tau_mem`` (the official code's Euler decay, ``decay="euler"``, the default here;
``decay="exp"`` gives ``exp(-1/tau_mem)``; :mod:`exodus_lightning.time_constants`), and the weight
gradient of the instantaneous loss ``L[t]`` is ``g_u[t] a_hat^{l-1}[t]^T`` (paper
eq. (5)/(7), suppl. B), the input gradient ``W^T g_u[t]``.  Two custom autograd ops do exactly this:

- :class:`OnlineLIFStep` — the single-step LIF of one layer, with the trace update; saves one
  tensor (the surrogate derivative) for backward;
- :func:`trace_linear` / :func:`trace_conv2d` — forward ``W s[t] + b``; backward ``dW = g a_hat^T``,
  ``ds = W^T g``, ``db = sum g``.  They save the trace (not the spikes), so the op runs once per step
  (the official code runs every wrapped op twice, on spikes and on traces).

Between layers a :class:`SpikeTrace` ``(spike, trace)`` pair flows; stateless linear modules
(pooling, flatten, scaling) act on both fields, which is exact because the trace recursion is linear.
:class:`OnlineSequential` runs one time step of such a network; its state (membrane and trace per
layer) is all that survives a step, so training memory is independent of T (paper §4.3).

Normalisation-free pieces (suppl. C.1): :class:`ScaledWSLinear`, :class:`ScaledWSConv2d` (paper
eq. (6): ``W_hat_i = gamma * g_i * (W_i - mean W_i) / sqrt(N var W_i + eps)``, gamma = 2.74 for
Heaviside inputs, learnable gain ``g``) and the VGG-sWS network (:func:`vgg_sws`).

Where the official code (pkuxmq/OTTT-SNN) and the paper differ, the default follows the code and an
option gives the paper: the first weight layer's gradient uses the raw input (code) or its trace
(``input_trace=True``, paper Theorem 2); the readout uses the trace (code, ``readout_trace=True``)
or the spikes (``readout_trace=False``: the exact gradient of the stateless readout).

Example:
    >>> import torch
    >>> from exodus_lightning.algorithms.ottt import build_online_network
    >>> net = build_online_network("20-32l-5l", tau_mem=2.0)      # lam = 1 - 1/2 = 0.5
    >>> net.reset_state()
    >>> [net(torch.rand(4, 20)).shape for t in range(3)][-1]      # one call = one time step
    torch.Size([4, 5])
"""

from exodus_lightning.algorithms.ottt.layers import (
    OnlineConv2d,
    OnlineLinear,
    OnlineSequential,
)
from exodus_lightning.algorithms.ottt.network import (
    VGG_CFG,
    build_online_network,
    vgg_sws,
    vgg_sws_architecture,
)
from exodus_lightning.algorithms.ottt.neuron import OnlineLIF
from exodus_lightning.algorithms.ottt.ops import (
    OnlineLIFStep,
    SpikeTrace,
    trace_conv2d,
    trace_linear,
)
from exodus_lightning.algorithms.ottt.weight_standardization import (
    GAMMA_HEAVISIDE,
    ScaledWSConv2d,
    ScaledWSLinear,
    heaviside_gamma,
)
from exodus_lightning.surrogate import SigmoidSurrogate

__all__ = [
    "GAMMA_HEAVISIDE",
    "heaviside_gamma",
    "SigmoidSurrogate",
    "SpikeTrace",
    "OnlineLIFStep",
    "trace_linear",
    "trace_conv2d",
    "OnlineLIF",
    "OnlineLinear",
    "OnlineConv2d",
    "ScaledWSLinear",
    "ScaledWSConv2d",
    "OnlineSequential",
    "build_online_network",
    "vgg_sws_architecture",
    "vgg_sws",
    "VGG_CFG",
]
