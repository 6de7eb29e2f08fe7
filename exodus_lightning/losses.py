"""Losses for spiking networks, each a function and a small ``nn.Module`` around it.

Outputs are batch-first ``(B, T, C)`` (spikes or readout membrane); ``lengths`` (``(B,)``, optional)
marks the valid steps of padded sequences, so padding never contributes.

- :func:`max_over_time_cross_entropy`, :func:`sum_over_time_cross_entropy` — EXODUS (Bauer et al.
  2023) Table 2: the class score is the maximum / the sum of the output over time.
- :func:`mean_over_time_cross_entropy` and :func:`per_step_cross_entropy` — score averaged over time,
  or a cross-entropy at every step averaged over the steps.
- :func:`ce_mse_mix` — OTTT (Xiao et al. 2022) suppl. C.2.2: ``[(1-a) CE(o[t], y) + a MSE(o[t],
  onehot(y))] / T`` summed over the steps.
- :func:`spike_train_mse`, :func:`van_rossum_distance` — spike-train fitting (EXODUS suppl., the
  Poisson task).
- :func:`spike_count_loss` — event-driven learning (Zhu et al. 2022) eq. S17 as in its code.
- :func:`upper_activity_regularizer`, :func:`lower_activity_regularizer` — sparse spiking gradient
  descent (Perez-Nieves & Goodman 2021) suppl. E.4 (as in its code: without the leading minus).

Example:
    >>> import torch
    >>> from exodus_lightning.losses import sum_over_time_cross_entropy
    >>> out = torch.zeros(1, 3, 2); out[0, :, 1] = 1.0     # class 1 spikes at every step
    >>> round(sum_over_time_cross_entropy(out, torch.tensor([1])).item(), 4)   # -log softmax([0, 3])[1]
    0.0486
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exodus_lightning.spec import records_init_args


def _check(output: Tensor, target: Optional[Tensor], lengths: Optional[Tensor], name: str = "output") -> None:
    if not isinstance(output, Tensor) or output.ndim != 3:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"{name} must have shape (B, T, C), got {shape}")
    if target is not None and target.shape[0] != output.shape[0]:
        raise ValueError(f"target has batch size {target.shape[0]} but {name} has {output.shape[0]}")
    if lengths is not None:
        if lengths.shape != (output.shape[0],):
            raise ValueError(f"lengths must have shape (B,) = ({output.shape[0]},), got {tuple(lengths.shape)}")
        if bool((lengths < 1).any()) or bool((lengths > output.shape[1]).any()):
            raise ValueError(f"lengths must lie in [1, T = {output.shape[1]}], got {lengths.tolist()}")


def valid_steps(output: Tensor, lengths: Optional[Tensor]) -> Optional[Tensor]:
    """``(B, T, 1)`` boolean mask of the steps ``t < lengths[b]`` (None when ``lengths`` is None)."""
    if lengths is None:
        return None
    t = torch.arange(output.shape[1], device=output.device)
    return (t[None, :] < lengths.to(output.device)[:, None])[..., None]


def max_over_time(output: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """Class scores ``max_t output[b, t, c]`` over the valid steps: ``(B, C)``."""
    mask = valid_steps(output, lengths)
    if mask is not None:
        output = output.masked_fill(~mask, float("-inf"))
    return output.amax(1)


def sum_over_time(output: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """Class scores ``sum_t output[b, t, c]`` over the valid steps (spike counts): ``(B, C)``."""
    mask = valid_steps(output, lengths)
    if mask is not None:
        output = output * mask
    return output.sum(1)


def mean_over_time(output: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """Class scores averaged over the valid steps: ``(B, C)``."""
    if lengths is None:
        return output.mean(1)
    return sum_over_time(output, lengths) / lengths.to(output.device, output.dtype)[:, None]


def max_over_time_cross_entropy(output: Tensor, target: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """``CE(max_t output[:, t], target)`` — EXODUS Table 2 (SHD, SSC: readout membrane maximum)."""
    _check(output, target, lengths)
    return F.cross_entropy(max_over_time(output, lengths), target)


def sum_over_time_cross_entropy(output: Tensor, target: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """``CE(sum_t output[:, t], target)`` — EXODUS Table 2 (DVS Gesture, N-MNIST: spike counts)."""
    _check(output, target, lengths)
    return F.cross_entropy(sum_over_time(output, lengths), target)


def mean_over_time_cross_entropy(output: Tensor, target: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """``CE(mean_t output[:, t], target)`` (rate decoding)."""
    _check(output, target, lengths)
    return F.cross_entropy(mean_over_time(output, lengths), target)


def per_step_cross_entropy(output: Tensor, target: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """``(1/T_b) sum_t CE(output[:, t], target)``, averaged over the batch (a loss at every step)."""
    _check(output, target, lengths)
    B, T, C = output.shape
    ce = F.cross_entropy(output.reshape(B * T, C), target.repeat_interleave(T), reduction="none").reshape(B, T)
    if lengths is None:
        return ce.mean()
    mask = valid_steps(output, lengths)[..., 0]
    return ((ce * mask).sum(1) / lengths.to(ce.dtype)).mean()


def ce_mse_mix(output: Tensor, target: Tensor, alpha: float = 0.05, lengths: Optional[Tensor] = None) -> Tensor:
    """OTTT suppl. C.2.2: ``sum_t [(1-alpha) CE(o[t], y) + alpha MSE(o[t], onehot(y))] / T``, the MSE
    averaged over the ``B x C`` entries (alpha = 0.05 CIFAR, 0.001 DVS data, 0 pure CE)."""
    _check(output, target, lengths)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    B, T, C = output.shape
    onehot = F.one_hot(target, C).to(output.dtype)
    ce = F.cross_entropy(output.reshape(B * T, C), target.repeat_interleave(T), reduction="none").reshape(B, T)
    mse = (output - onehot[:, None, :]).square().mean(2)  # (B, T), averaged over C here, over B below
    per_step = (1 - alpha) * ce + alpha * mse
    if lengths is None:
        return per_step.mean(0).sum() / T
    mask = valid_steps(output, lengths)[..., 0]
    return ((per_step * mask).sum(1) / lengths.to(per_step.dtype)).mean()


def spike_train_mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared difference of two spike trains (or membrane traces) of the same shape."""
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} must have the same shape")
    return (output - target.to(output.dtype)).square().mean()


def van_rossum_distance(output: Tensor, target: Tensor, tau: float = 10.0) -> Tensor:
    """van Rossum (2001) distance: ``sqrt(sum_t (k * (s_out - s_target))[t]^2 / tau)`` with the causal
    kernel ``k[t] = exp(-t / tau)`` along time (dim 1), averaged over batch and channels."""
    if output.shape != target.shape or output.ndim < 2:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} must have the same "
                         "shape (B, T, ...)")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    diff = (output - target.to(output.dtype)).movedim(1, 0)
    decay = torch.exp(torch.tensor(-1.0 / tau, dtype=diff.dtype, device=diff.device))
    trace = torch.zeros_like(diff[0])
    total = torch.zeros_like(diff[0])
    for t in range(diff.shape[0]):
        trace = decay * trace + diff[t]
        total = total + trace.square()
    return torch.sqrt(total / tau + 1e-12).mean()


def spike_count_loss(output: Tensor, target: Tensor, n_correct: float, n_wrong: float,
                     lengths: Optional[Tensor] = None) -> Tensor:
    """Event-driven learning (Zhu et al. 2022, eq. S17, as in the official code): with counts
    ``c[b, k] = sum_t s[b, t, k]`` and targets ``n = n_correct`` for the label, ``n_wrong`` otherwise,
    ``L = (1 / 2T) sum_{b,k} (c - n)^2`` over the entries not yet satisfied (the label neuron firing
    fewer than ``n_correct``, a wrong neuron more than ``n_wrong``); summed over the batch."""
    _check(output, target, lengths)
    if n_correct < n_wrong:
        raise ValueError(f"n_correct ({n_correct}) must be >= n_wrong ({n_wrong})")
    B, T, C = output.shape
    counts = sum_over_time(output, lengths)
    is_label = F.one_hot(target, C).bool()
    desired = torch.where(is_label, torch.full_like(counts, n_correct), torch.full_like(counts, n_wrong))
    active = torch.where(is_label, counts < desired, counts > desired)
    return ((counts - desired).square() * active).sum() / (2 * T)


def upper_activity_regularizer(spikes: Tensor, strength: float = 0.06, threshold: float = 1.0) -> Tensor:
    """Sparse SGD suppl. E.4 (code): per sample ``strength * max(0, (1/N) sum_{t,j} S[b,t,j] - threshold)``,
    averaged over the batch — penalises layers whose mean spike count per neuron exceeds ``threshold``.
    ``spikes`` is ``(B, T, *features)``."""
    if spikes.ndim < 3:
        raise ValueError(f"spikes must have shape (B, T, *features), got {tuple(spikes.shape)}")
    per_neuron = spikes.reshape(spikes.shape[0], spikes.shape[1], -1).sum(1)  # (B, N)
    return (strength * F.relu(per_neuron.mean(1) - threshold)).mean()


def lower_activity_regularizer(spikes: Tensor, strength: float = 100.0, threshold: float = 1e-3) -> Tensor:
    """Sparse SGD suppl. E.4 (code): per sample ``(strength / N) sum_j max(0, threshold - sum_t S[b,t,j])^2``,
    averaged over the batch — penalises silent neurons."""
    if spikes.ndim < 3:
        raise ValueError(f"spikes must have shape (B, T, *features), got {tuple(spikes.shape)}")
    per_neuron = spikes.reshape(spikes.shape[0], spikes.shape[1], -1).sum(1)
    return (strength * F.relu(threshold - per_neuron).square().mean(1)).mean()


# ------------------------------------------------------------------------------- modules


class _TimeLoss(nn.Module):
    fn = staticmethod(max_over_time_cross_entropy)

    def forward(self, output: Tensor, target: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        return type(self).fn(output, target, lengths)


@records_init_args
class MaxOverTimeCrossEntropy(_TimeLoss):
    """Module form of :func:`max_over_time_cross_entropy`."""

    fn = staticmethod(max_over_time_cross_entropy)


@records_init_args
class SumOverTimeCrossEntropy(_TimeLoss):
    """Module form of :func:`sum_over_time_cross_entropy`."""

    fn = staticmethod(sum_over_time_cross_entropy)


@records_init_args
class MeanOverTimeCrossEntropy(_TimeLoss):
    """Module form of :func:`mean_over_time_cross_entropy`."""

    fn = staticmethod(mean_over_time_cross_entropy)


@records_init_args
class PerStepCrossEntropy(_TimeLoss):
    """Module form of :func:`per_step_cross_entropy`."""

    fn = staticmethod(per_step_cross_entropy)


@records_init_args
class CEMSEMix(nn.Module):
    """Module form of :func:`ce_mse_mix`."""

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
        self.alpha = alpha

    def forward(self, output: Tensor, target: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        return ce_mse_mix(output, target, self.alpha, lengths)


@records_init_args
class SpikeCountLoss(nn.Module):
    """Module form of :func:`spike_count_loss`."""

    def __init__(self, n_correct: float = 35.0, n_wrong: float = 5.0) -> None:
        super().__init__()
        if n_correct < n_wrong:
            raise ValueError(f"n_correct ({n_correct}) must be >= n_wrong ({n_wrong})")
        self.n_correct, self.n_wrong = n_correct, n_wrong

    def forward(self, output: Tensor, target: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        return spike_count_loss(output, target, self.n_correct, self.n_wrong, lengths)


@records_init_args
class SpikeTrainMSE(nn.Module):
    """Module form of :func:`spike_train_mse`."""

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return spike_train_mse(output, target)


@records_init_args
class VanRossumDistance(nn.Module):
    """Module form of :func:`van_rossum_distance`."""

    def __init__(self, tau: float = 10.0) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        self.tau = tau

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return van_rossum_distance(output, target, self.tau)


@records_init_args
class ActivityRegularizer(nn.Module):
    """Both sparse-SGD activity regularisers on one layer's spikes (suppl. E.4); either strength may be 0."""

    def __init__(self, upper_strength: float = 0.06, upper_threshold: float = 1.0,
                 lower_strength: float = 100.0, lower_threshold: float = 1e-3) -> None:
        super().__init__()
        for name, v in [("upper_strength", upper_strength), ("lower_strength", lower_strength)]:
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        self.upper_strength, self.upper_threshold = upper_strength, upper_threshold
        self.lower_strength, self.lower_threshold = lower_strength, lower_threshold

    def forward(self, spikes: Tensor) -> Tensor:
        return (upper_activity_regularizer(spikes, self.upper_strength, self.upper_threshold)
                + lower_activity_regularizer(spikes, self.lower_strength, self.lower_threshold))


LOSSES = {
    "max_over_time_cross_entropy": MaxOverTimeCrossEntropy,
    "sum_over_time_cross_entropy": SumOverTimeCrossEntropy,
    "mean_over_time_cross_entropy": MeanOverTimeCrossEntropy,
    "per_step_cross_entropy": PerStepCrossEntropy,
    "ce_mse_mix": CEMSEMix,
    "spike_count": SpikeCountLoss,
}


def loss_by_name(name: str) -> nn.Module:
    """A classification loss module by its name (the keys of ``LOSSES``)."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(sorted(LOSSES))}, got {name!r}")
    return LOSSES[name]()
