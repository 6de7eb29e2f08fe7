"""Helpers shared by the core custom ops (LIF, leaky): operand checks, the launch context of a call
(library, dtype tag, device, stream; from :mod:`exodus_lightning._native`) and autocast registration."""

from __future__ import annotations

from typing import Optional

import torch

from exodus_lightning import _native


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """State and parameter dtype of the kernels: float64 for float64 data, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


Named = tuple[tuple[str, Optional[torch.Tensor]], ...]


def check_operands(x: torch.Tensor, params: Named, states: Named = (), traces: Named = ()) -> None:
    """What the kernels read through the pointers of a call on ``x`` ``(B, T, N)``: the named
    ``params`` ``(1,)`` or ``(N,)`` in the accumulation dtype, ``states`` ``(B, N)`` and ``traces``
    ``(B, T, N)`` in ``x``'s dtype, all on ``x``'s device (None: absent).  Otherwise a ValueError or
    TypeError naming the argument, instead of a kernel reading past a tensor's end."""
    B, T, N = x.shape
    for group, numels, dtype in ((params, (1, N), accumulation_dtype(x.dtype)), (states, (B * N,), x.dtype),
                                 (traces, (B * T * N,), x.dtype)):
        for name, t in group:
            if t is None:
                continue
            if t.numel() not in numels:
                raise ValueError(f"{name} must have {' or '.join(map(str, sorted(set(numels))))} elements "
                                 f"for (B, T, N) = {(B, T, N)}, got shape {tuple(t.shape)}")
            if t.dtype != dtype:
                raise TypeError(f"{name} must be {dtype} for {x.dtype} data, got {t.dtype}")
            if t.device != x.device:
                raise ValueError(f"{name} is on {t.device}, expected {x.device} like the other tensors of the call")


def launch_context(x: torch.Tensor) -> tuple[_native.NativeLibrary, int, int, Optional[int]]:
    """(library, dtype tag, device index, stream) for a call on ``x``'s device."""
    lib = _native.for_device(x.device.type)
    device, stream = _native.device_and_stream(x)
    return lib, _native.dtype_tag(x, "x"), device, stream


def float32_under_autocast(op: str, device_types: tuple[str, ...] = ("cpu",)) -> None:
    """Under autocast on ``device_types`` the forward op ``op`` gets its floating inputs as float32,
    and its float32 outputs flow on into the next autocast layer.  The CPU kernels compute in
    float32 or float64 only (``bf16-mixed``; ``16-mixed``, which Lightning turns into bf16 on the
    CPU).  On CUDA the LIF and leaky kernels read float16/bfloat16 themselves (state and arithmetic
    in float32), so they are registered for the CPU only."""
    register = getattr(torch.library, "register_autocast", None)  # torch >= 2.5
    if register is not None:
        for device_type in device_types:
            register(op, device_type, torch.float32)
