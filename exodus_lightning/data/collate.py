"""Batch convention and the padding collate function.

Every DataModule in :mod:`exodus_lightning.data` yields batches ``(x, y, lengths)``:

* ``x``: ``float32`` tensor of shape ``(B, T, *features)`` (batch-first, time second, the layout
  of the exodus_lightning layers). Sequences shorter than the longest one in the batch are padded
  with zeros at the end.
* ``y``: ``int64`` class labels of shape ``(B,)`` (the spike-train fitting task returns a float
  target spike train ``(B, T, n_outputs)`` instead, see
  :class:`~exodus_lightning.data.poisson_fit.PoissonSpikeFitDataModule`).
* ``lengths``: ``int64`` tensor of shape ``(B,)``: the number of valid (unpadded) time steps of
  each sample, so ``x[b, lengths[b]:]`` is all zeros.

:class:`Batch` is a :class:`~typing.NamedTuple`, so ``x, y, lengths = batch`` works and Lightning
moves it to the device like a plain tuple.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

__all__ = ["Batch", "pad_collate"]


class Batch(NamedTuple):
    """A padded batch: ``x`` (B, T, ...) float32, ``y`` (B,) int64, ``lengths`` (B,) int64."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor


def _as_tensor(a: Any) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    return torch.from_numpy(np.ascontiguousarray(a))


def pad_collate(batch: Sequence[tuple[Any, Any]] | Any) -> Batch:
    """Stack ``(sample, target)`` pairs into a zero-padded :class:`Batch`.

    Args:
        batch: sequence of ``(sample, target)``; ``sample`` is an array or tensor of shape
            ``(T_i, *features)`` (all samples share ``features``); ``target`` is an integer label
            or a tensor (stacked as is, e.g. a target spike train). A
            :class:`~exodus_lightning.data.compact.CompactBatch` (what the event datasets build for a
            whole batch) is made dense.

    Returns:
        ``Batch(x, y, lengths)`` with ``x`` float32 ``(B, max_i T_i, *features)``, ``y`` int64
        ``(B,)`` for integer labels, and ``lengths`` int64 ``(B,)`` holding each ``T_i``.

    Raises:
        ValueError: for an empty batch or samples whose feature shapes differ.
    """
    densify = getattr(batch, "densify", None)
    if callable(densify):
        return densify()
    if len(batch) == 0:
        raise ValueError("pad_collate: empty batch")
    samples = [_as_tensor(s) for s, _ in batch]
    feat = samples[0].shape[1:]
    for i, s in enumerate(samples):
        if s.dim() < 1 or s.shape[1:] != feat:
            raise ValueError(
                f"pad_collate: sample {i} has shape {tuple(s.shape)}, expected (T, {', '.join(map(str, feat))})"
            )
    lengths = torch.tensor([s.shape[0] for s in samples], dtype=torch.long)
    t_max = int(lengths.max()) if len(samples) else 0
    x = torch.zeros((len(samples), t_max, *feat), dtype=torch.float32)
    for i, s in enumerate(samples):
        x[i, : s.shape[0]] = s.to(torch.float32)
    targets = [t for _, t in batch]
    if isinstance(targets[0], (torch.Tensor, np.ndarray)) and np.ndim(targets[0]) > 0:
        y = torch.stack([_as_tensor(t) for t in targets])
    else:
        y = torch.tensor([int(t) for t in targets], dtype=torch.long)
    return Batch(x, y, lengths)
