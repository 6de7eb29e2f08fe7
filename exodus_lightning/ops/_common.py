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


def ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    if t is None or t.numel() == 0:
        return None
    return t.data_ptr()


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
