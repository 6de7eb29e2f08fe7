"""Helpers shared by the custom ops: pointers, dtype tags and streams for the native C ABI."""

from __future__ import annotations

from typing import Optional

import torch

from exodus_lightning import _native

_DTYPE_TAG = {
    torch.float32: _native.DTYPE_TAGS["float32"],
    torch.float64: _native.DTYPE_TAGS["float64"],
    torch.float16: _native.DTYPE_TAGS["float16"],
    torch.bfloat16: _native.DTYPE_TAGS["bfloat16"],
}


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """State and parameter dtype of the kernels: float64 for float64 data, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class Pointers:
    """Raw pointers of the tensors of one native call, as the C ABIs read them: contiguous, and NULL
    for an absent or empty tensor (an empty tensor's ``data_ptr()`` is 0, or, for an empty view,
    an address nothing may be read at).

    An input that is not contiguous (transposed, sliced with a step, expanded with stride 0, ...)
    is copied, and every tensor handed out is held until the ``with`` block ends: the pointer of a
    temporary (``t.contiguous().data_ptr()``) would outlive its memory, and the kernel would read
    freed memory.  Use one per call, around the call::

        with Pointers() as ptr:
            lib.leaky_forward(LeakyForwardArgs(x=ptr(x), out=ptr.out(out), ...))
    """

    def __init__(self) -> None:
        self._held: list[torch.Tensor] = []

    def __enter__(self) -> "Pointers":
        return self

    def __exit__(self, *exc: object) -> None:
        self._held.clear()

    def __call__(self, t: Optional[torch.Tensor]) -> Optional[int]:
        """Pointer to an input (a contiguous copy of it when it is strided)."""
        if t is None:
            return None
        return self._hold(t.contiguous())

    def out(self, t: Optional[torch.Tensor]) -> Optional[int]:
        """Pointer to an output the op allocated: it must be contiguous, since a copy would receive
        the results and be thrown away."""
        if t is None:
            return None
        if not t.is_contiguous():
            raise RuntimeError(f"exodus-lightning internal error: an output of shape {tuple(t.shape)} with strides "
                               f"{t.stride()} is not contiguous")
        return self._hold(t)

    def _hold(self, t: torch.Tensor) -> Optional[int]:
        self._held.append(t)
        return t.data_ptr() if t.numel() else None


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
    dev = x.device
    lib = _native.for_device(dev.type)
    if dev.type == "cpu" and x.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"exodus-lightning: {x.dtype} is supported on CUDA only; on the CPU use float32 or float64"
        )
    stream = None
    index = 0
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        # The caller's current stream of the tensor's own device (multi-GPU safe).
        stream = torch.cuda.current_stream(index).cuda_stream
    return lib, _DTYPE_TAG[x.dtype], index, stream


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
