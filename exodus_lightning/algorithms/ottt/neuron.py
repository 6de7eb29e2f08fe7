"""OTTT's online LIF neuron: one time step per call, membrane and presynaptic trace kept between calls."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from exodus_lightning.algorithms.ottt.ops import OnlineLIFStep, SpikeTrace
from exodus_lightning.algorithms.ottt.weight_standardization import _check_positive
from exodus_lightning.neuron_parameters import check_time_constant
from exodus_lightning.nn.spiking_layer import SpikingLayer
from exodus_lightning.spec import records_init_args
from exodus_lightning.surrogate import SigmoidSurrogate
from exodus_lightning.time_constants import Decay, check_decay, decay_factor, min_tau


@records_init_args
class OnlineLIF(SpikingLayer, nn.Module):
    r"""Single-step LIF neurons for OTTT (module docstring equations): ``forward(I[t])`` returns
    ``SpikeTrace(gamma s[t], gamma a_hat[t])`` and keeps ``v`` and ``a_hat`` as plain attributes
    (never in the ``state_dict``).  Call :meth:`reset_state` before every new sequence
    (:class:`OnlineSequential` does).

    Args:
        tau_mem: membrane time constant in steps (>= 1 with ``decay="euler"``; ``inf`` is the IF
            neuron); its per-step decay ``lam`` drives the membrane and the trace (the official
            code's tau = 2 gives lam = 0.5).
        threshold: ``V_th`` > 0.
        surrogate: ``f(v, threshold)``; None: :class:`SigmoidSurrogate` (alpha = 4).
        scale: factor applied to the spikes and the trace after the neuron (the official code's
            ``Scale(2.74)`` after every neuron; 1 by default, sWS layers fold gamma in instead).
        decay: ``"euler"`` (``lam = 1 - 1/tau_mem``, the official code) or ``"exp"``.

    A :class:`~exodus_lightning.nn.SpikingLayer` of one time step per call: the monitors and
    recorders see its spikes ``s[t]`` (without ``scale``).
    """

    steps_per_call = 1

    def __init__(self, tau_mem: float = 2.0, threshold: float = 1.0,
                 surrogate: Optional[Callable[[Tensor, float], Tensor]] = None, scale: float = 1.0,
                 decay: Decay = "euler") -> None:
        super().__init__()
        self.decay = check_decay(decay)
        if isinstance(tau_mem, Tensor):
            raise TypeError("tau_mem of OnlineLIF must be a float (one time constant per layer), got a tensor")
        check_time_constant(tau_mem, "tau_mem", allow_inf=True, low=min_tau(self.decay))
        self.tau_mem = float(tau_mem)
        self.lam = float(decay_factor(self.tau_mem, self.decay))  # the paper's lambda, per-step decay
        self.threshold = _check_positive(threshold, "threshold")
        self.scale = _check_positive(scale, "scale")
        surrogate = SigmoidSurrogate() if surrogate is None else surrogate
        if not callable(surrogate):
            raise ValueError(f"surrogate must be callable f(v, threshold), got {type(surrogate).__name__}")
        self.surrogate = surrogate
        self.v: Optional[Tensor] = None
        self.trace: Optional[Tensor] = None

    def reset_state(self) -> None:
        """Forget ``v`` and ``a_hat`` (both restart at 0 at the next step)."""
        self.v, self.trace = None, None

    def forward(self, current: Tensor) -> SpikeTrace:
        if isinstance(current, SpikeTrace):
            raise ValueError("OnlineLIF takes an input current, got a SpikeTrace: put a weight layer before it")
        v = self.v
        if v is None or v.shape != current.shape:
            if v is not None:
                raise ValueError(f"input of shape {tuple(current.shape)} but the state has shape {tuple(v.shape)}; "
                                 "call reset_state() before a new sequence")
            v = torch.zeros_like(current)
        s, v_next = OnlineLIFStep.apply(current, v.detach(), self.lam, self.threshold, self.surrogate)
        with torch.no_grad():
            # The trace never needs a graph: it only enters the next weight's gradient (eq. (5)).
            trace = s.detach() if self.trace is None else self.lam * self.trace + s.detach()
        self.v, self.trace = v_next.detach(), trace
        if self.scale != 1.0:
            return SpikeTrace(self.scale * s, self.scale * trace)
        return SpikeTrace(s, trace)

    def spikes(self, output: SpikeTrace) -> Tensor:
        """``s[t]`` of this step's output (the spikes before ``scale``)."""
        return output.spike / self.scale if self.scale != 1.0 else output.spike

    def extra_repr(self) -> str:
        extra = f", scale={self.scale:g}" if self.scale != 1.0 else ""
        return f"tau_mem={self.tau_mem:g} (lam={self.lam:g}), threshold={self.threshold:g}{extra}"
