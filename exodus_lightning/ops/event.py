"""Custom ops of event-driven backpropagation (Zhu et al. 2022): ``exodus_event::srm_forward`` and
``exodus_event::srm_backward``, backed by the native library ``libexodus_event`` (plain C ABI,
``native/include/exodus/event_api.h``) through ctypes.

The ops see ``(B, T, N)`` contiguous float32/float64 CPU tensors:

- :func:`srm_forward` — the SRM neuron of suppl. S14–S16 as a two-trace recurrence (see
  :mod:`exodus_lightning.algorithms.event_driven`), returning spikes, the discrete ``du/dt`` and the
  gradient trace ``g`` (the normaliser ``g(t_k)`` of S20 at spike times).
- :func:`srm_backward` — the per-neuron reverse scan of S11/S20/S21 returning the weight-path error
  ``e_w`` and the input-path error ``e_in``; the layer forms ``dL/dW = sum_t e_w^T s_in`` and
  ``dL/ds_in = (W^T e_in) * [s_in != 0]``.

The library is loaded on first use; a missing library raises :class:`exodus_lightning._native.NativeLibraryError`.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Optional

import torch
from torch import Tensor

from exodus_lightning import _native

LIBRARY = "exodus_event"
ABI_VERSION = 1
_i64, _i32, _f64, _p = ctypes.c_int64, ctypes.c_int32, ctypes.c_double, ctypes.c_void_p


class SRMForwardArgs(ctypes.Structure):
    _fields_ = [
        ("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32),
        ("current", _p), ("decay_m", _f64), ("decay_s", _f64), ("decay_g", _f64), ("kappa", _f64), ("theta", _f64),
        ("spikes", _p), ("du", _p), ("dug", _p), ("u", _p),
    ]


class SRMBackwardArgs(ctypes.Structure):
    _fields_ = [
        ("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32),
        ("grad_spikes", _p), ("spikes", _p), ("du", _p), ("dug", _p),
        ("decay_m", _f64), ("decay_s", _f64), ("decay_g", _f64), ("kappa", _f64), ("max_dudt_inv", _f64),
        ("e_w", _p), ("e_in", _p),
    ]


class _EventLibrary:
    """The loaded ``libexodus_event`` with checked entry points."""

    def __init__(self) -> None:
        path = _native.find_library(LIBRARY)
        if path is None:
            where = ", ".join(str(d) for d in _native.candidate_dirs())
            raise _native.NativeLibraryError(
                f"exodus-lightning: native library {_native.library_filename(LIBRARY)} (event-driven "
                f"backpropagation) not found (searched: {where}). Rebuild the package from source "
                "(pip install -e . --no-build-isolation) so that native/src/event is compiled, or point "
                "$EXODUS_NATIVE_LIB at the folder holding the libraries."
            )
        try:
            self.dll = ctypes.CDLL(str(path))
        except OSError as e:
            raise _native.NativeLibraryError(f"exodus-lightning: {path} exists but cannot be loaded: {e}") from e
        self.dll.exodus_event_abi_version.restype = _i32
        if self.dll.exodus_event_abi_version() != ABI_VERSION:
            raise _native.NativeLibraryError(
                f"exodus-lightning: {path} has ABI version {self.dll.exodus_event_abi_version()}, expected "
                f"{ABI_VERSION}; the package and its native libraries come from different builds")
        self.dll.exodus_event_last_error.restype = ctypes.c_char_p
        for name, struct in (("srm_forward", SRMForwardArgs), ("srm_backward", SRMBackwardArgs)):
            fn = getattr(self.dll, "exodus_event_" + name)
            fn.restype = _i32
            fn.argtypes = [ctypes.POINTER(struct)]
            setattr(self, "_" + name, fn)

    def call(self, name: str, args: ctypes.Structure) -> None:
        rc = getattr(self, "_" + name)(ctypes.byref(args))
        if rc != 0:
            msg = (self.dll.exodus_event_last_error() or b"").decode("utf-8", "replace")
            raise RuntimeError(f"exodus native error ({LIBRARY}.{name}, code {rc}): {msg}")


_lock = threading.Lock()
_lib: Optional[_EventLibrary] = None


def library() -> _EventLibrary:
    """Load (once) and return ``libexodus_event``; :class:`NativeLibraryError` if it is missing."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _EventLibrary()
    return _lib


def _dtype_tag(x: Tensor, name: str) -> int:
    if x.device.type != "cpu":
        # The CUDA kernels of this algorithm are not written yet: say so instead of crashing.
        raise _native.NativeLibraryError(
            f"exodus-lightning: event-driven backpropagation runs on the CPU only; {name} is on {x.device}")
    if x.dtype == torch.float32:
        return 0
    if x.dtype == torch.float64:
        return 1
    raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None or t.numel() == 0 else t.data_ptr()


@torch.library.custom_op("exodus_event::srm_forward", mutates_args=())
def srm_forward(current: Tensor, decay_m: float, decay_s: float, decay_g: float, kappa: float, theta: float,
                return_u: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """SRM forward scan on ``current`` ``(B, T, N)``: returns (spikes, du, g trace, u or empty)."""
    if current.ndim != 3:
        raise ValueError(f"current must have shape (B, T, N), got {tuple(current.shape)}")
    tag = _dtype_tag(current, "current")
    B, T, N = current.shape
    current = current.contiguous()
    spikes, du, dug = torch.empty_like(current), torch.empty_like(current), torch.empty_like(current)
    u = torch.empty_like(current) if return_u else current.new_empty((0,))
    args = SRMForwardArgs(B=B, T=T, N=N, dtype=tag, current=_ptr(current), decay_m=decay_m, decay_s=decay_s,
                          decay_g=decay_g, kappa=kappa, theta=theta, spikes=_ptr(spikes), du=_ptr(du),
                          dug=_ptr(dug), u=_ptr(u))
    library().call("srm_forward", args)
    return spikes, du, dug, u


@srm_forward.register_fake
def _(current, decay_m, decay_s, decay_g, kappa, theta, return_u):
    u = torch.empty_like(current) if return_u else current.new_empty((0,))
    return torch.empty_like(current), torch.empty_like(current), torch.empty_like(current), u


@torch.library.custom_op("exodus_event::srm_backward", mutates_args=())
def srm_backward(grad_spikes: Tensor, spikes: Tensor, du: Tensor, dug: Tensor, decay_m: float, decay_s: float,
                 decay_g: float, kappa: float, max_dudt_inv: float) -> tuple[Tensor, Tensor]:
    """Reverse scan per neuron (S11, S20, S21): returns ``(e_w, e_in)``, each ``(B, T, N)``.
    ``max_dudt_inv <= 0`` disables the clipping of ``-1/(du/dt)``."""
    for name, t in (("grad_spikes", grad_spikes), ("du", du), ("dug", dug)):
        if t.shape != spikes.shape:
            raise ValueError(f"{name} must have the shape of spikes {tuple(spikes.shape)}, got {tuple(t.shape)}")
    if spikes.ndim != 3:
        raise ValueError(f"spikes must have shape (B, T, N), got {tuple(spikes.shape)}")
    tag = _dtype_tag(spikes, "spikes")
    B, T, N = spikes.shape
    grad_spikes, spikes, du, dug = (t.to(spikes.dtype).contiguous() for t in (grad_spikes, spikes, du, dug))
    e_w, e_in = torch.empty_like(spikes), torch.empty_like(spikes)
    args = SRMBackwardArgs(B=B, T=T, N=N, dtype=tag, grad_spikes=_ptr(grad_spikes), spikes=_ptr(spikes),
                           du=_ptr(du), dug=_ptr(dug), decay_m=decay_m, decay_s=decay_s, decay_g=decay_g,
                           kappa=kappa, max_dudt_inv=max_dudt_inv, e_w=_ptr(e_w), e_in=_ptr(e_in))
    library().call("srm_backward", args)
    return e_w, e_in


@srm_backward.register_fake
def _(grad_spikes, spikes, du, dug, decay_m, decay_s, decay_g, kappa, max_dudt_inv):
    return torch.empty_like(spikes), torch.empty_like(spikes)


__all__ = ["srm_forward", "srm_backward", "library", "SRMForwardArgs", "SRMBackwardArgs"]
