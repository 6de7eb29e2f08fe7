"""Time folding: stateless layers (Conv2d, pooling, BatchNorm, Dropout, Flatten, …) applied to
``(B, T, ...)`` sequences by folding time into the batch, ``(B*T, ...)``, and back.

A layer is *time-aware* when it takes ``(B, T, ...)`` itself (the neurons of
:mod:`exodus_lightning.nn`, :class:`TimeDistributed`, :class:`SumPool2d` on 5-D input); it says so
with the class attribute ``time_aware = True``.  :class:`SpikingSequential` folds time for every
other child, so a spiking CNN is written as a plain list of layers.
"""

from __future__ import annotations

from typing import Union

from torch import Tensor, nn
from torch.nn import functional as TF

from exodus_lightning.functional import check_input
from exodus_lightning.nn.neurons import LeakyIntegrator, LIF
from exodus_lightning.spec import records_init_args

IntPair = Union[int, tuple[int, int]]


def fold(x: Tensor, name: str = "x") -> tuple[Tensor, tuple[int, int]]:
    """``(B, T, *rest)`` -> ``(B*T, *rest)`` and ``(B, T)``."""
    B, T, _ = check_input(x, name)
    return x.reshape(B * T, *x.shape[2:]), (B, T)


def unfold(y: Tensor, bt: tuple[int, int]) -> Tensor:
    """``(B*T, *rest)`` -> ``(B, T, *rest)``."""
    return y.reshape(bt[0], bt[1], *y.shape[1:])


def is_time_aware(module: nn.Module) -> bool:
    """True for layers that take ``(B, T, ...)`` themselves (no folding needed)."""
    return isinstance(module, (LIF, LeakyIntegrator)) or bool(getattr(module, "time_aware", False))


@records_init_args
class TimeDistributed(nn.Module):
    """Applies a stateless ``module`` to every time step of ``(B, T, ...)`` at once by folding time
    into the batch: ``module(x.reshape(B*T, ...)).reshape(B, T, ...)``.

    For BatchNorm this means statistics over batch *and* time (the usual choice for SNNs with
    time-folded BN, e.g. spikingjelly's multi-step mode); Dropout draws an independent mask per
    time step.

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import TimeDistributed
        >>> conv = TimeDistributed(torch.nn.Conv2d(2, 4, 3, padding=1))
        >>> conv(torch.rand(3, 5, 2, 8, 8)).shape
        torch.Size([3, 5, 4, 8, 8])
    """

    time_aware = True

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        y, bt = fold(x)
        return unfold(self.module(y), bt)


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(value[0]), int(value[1])


@records_init_args
class SumPool2d(nn.Module):
    """Sum pooling over ``kernel_size`` windows, as in the spiking CNNs of the EXODUS paper and
    sinabs (a sum of spikes stays an integer count, unlike an average):
    ``y[c, i, j] = sum_{(p, q) in window(i, j)} x[c, p, q]``; zero padding.

    Takes ``(B, T, C, H, W)`` (time folded into the batch) or ``(N, C, H, W)``.

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import SumPool2d
        >>> SumPool2d(2)(torch.ones(1, 1, 1, 4, 4)).flatten().tolist()
        [4.0, 4.0, 4.0, 4.0]
    """

    time_aware = True

    def __init__(self, kernel_size: IntPair, stride: Union[IntPair, None] = None, padding: IntPair = 0) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"kernel_size and stride must be >= 1 and padding >= 0, got kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}"
            )
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding {self.padding} must be at most half of kernel_size {self.kernel_size}")

    def _pool(self, x: Tensor) -> Tensor:
        # divisor_override=1 turns the window mean into the window sum (padding counts as zeros).
        return TF.avg_pool2d(x, self.kernel_size, self.stride, self.padding, divisor_override=1)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 5:
            y, bt = fold(x)
            return unfold(self._pool(y), bt)
        if x.ndim == 4:
            return self._pool(x)
        raise ValueError(f"SumPool2d input must be (B, T, C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@records_init_args
class SpikingSequential(nn.Sequential):
    """``nn.Sequential`` for ``(B, T, ...)`` sequences: time-aware children (neurons,
    :class:`TimeDistributed`, :class:`SumPool2d`, anything with ``time_aware = True``) get the
    sequence as is; every other child (Conv2d, Linear, BatchNorm, Dropout, Flatten, …) sees time
    folded into the batch, ``(B*T, ...)``.

    Example:
        >>> import torch
        >>> from exodus_lightning.nn import IF, SpikingSequential, SumPool2d
        >>> net = SpikingSequential(torch.nn.Conv2d(2, 4, 3, padding=1), IF(), SumPool2d(2),
        ...                         torch.nn.Flatten(), torch.nn.Linear(64, 3))
        >>> net(torch.rand(2, 5, 2, 8, 8)).shape
        torch.Size([2, 5, 3])
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        check_input(x)
        for module in self:
            if is_time_aware(module):
                x = module(x)
            else:
                y, bt = fold(x)
                x = unfold(module(y), bt)
            if isinstance(x, tuple):
                raise TypeError(
                    f"{type(module).__name__} returned a tuple inside SpikingSequential; build neurons "
                    "with return_state=False here (use StatefulLIF for streaming)"
                )
        return x


__all__ = ["TimeDistributed", "SumPool2d", "SpikingSequential", "fold", "unfold", "is_time_aware"]
