"""The event-driven network built from the framework's one architecture grammar, and its prediction."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from exodus_lightning.algorithms.event_driven.layers import (
    AdjustedAvgPool2d,
    EventConv2d,
    EventLinear,
    EventWeightLayer,
    FlattenFeatures,
    check_spikes,
)
from exodus_lightning.algorithms.event_driven.srm import SRMConfig
from exodus_lightning.nn.architecture import flat_size, parse_architecture
from exodus_lightning.spec import records_init_args
from exodus_lightning.time_constants import Decay


def predict(spikes: Tensor, weighted: bool = False) -> Tensor:
    """Class prediction from output spike counts ``(B, T, C) -> (B,)``.  ``weighted=True`` uses the
    official code's tie-break: spikes weighted by ``1.1 - t / (10 T)`` (earlier spikes count more)."""
    check_spikes(spikes, "spikes", 3)
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
        tau_mem, tau_syn, tau_grad, theta: S16 kernel, backward kernel, threshold (Table S1 N-MNIST
            defaults 8, 4, 3, 1).
        decay: ``"exp"`` (paper, ``exp(-1/tau)``) or ``"euler"`` (official code, ``1 - 1/tau``).
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

    def __init__(self, architecture: str, tau_mem: float = 8.0, tau_syn: float = 4.0, tau_grad: float = 3.0,
                 theta: float = 1.0, decay: Decay = "exp", damping: float = 1.0,
                 max_dudt_inv: Optional[float] = None, weight_norm: bool = True, init_gain: float = 1.0,
                 calibrate_spikes: Optional[float] = None) -> None:
        super().__init__()
        if not isinstance(architecture, str):
            raise TypeError(f"architecture must be a string, got {type(architecture).__name__}")
        if calibrate_spikes is not None and not calibrate_spikes > 0:
            raise ValueError(f"calibrate_spikes must be > 0 or None, got {calibrate_spikes!r}")
        self.cfg = SRMConfig(tau_mem, tau_syn, tau_grad, theta, decay, damping, max_dudt_inv)
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
                    layers.append(FlattenFeatures())
                layers.append(EventLinear(flat_size(tok.in_shape), tok.size, self.cfg, weight_norm, init_gain))
        self.num_outputs = tokens[-1].out_shape[0]
        return layers

    def weight_layers(self) -> list[EventWeightLayer]:
        return [m for m in self.layers if isinstance(m, EventWeightLayer)]

    def forward(self, x: Tensor) -> Tensor:
        check_spikes(x, "x", 2 + len(self.input_shape))
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
            if isinstance(layer, EventWeightLayer):
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
