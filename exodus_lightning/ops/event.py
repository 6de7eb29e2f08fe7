"""Custom ops of event-driven backpropagation (Zhu et al. 2022): ``exodus_event::srm_forward`` and
``exodus_event::srm_backward``, backed by native libraries with one plain C ABI
(``native/include/exodus/event_api.h``) through ctypes: ``libexodus_event`` for CPU tensors and
``libexodus_event_cuda`` for CUDA tensors (loaded lazily, the first time a CUDA tensor arrives; the
kernels run on the tensor's own device and on its current stream).

The ops take ``(B, T, N)`` tensors of any strides (handed to the kernels contiguous): float32/float64
on the CPU, and also float16/bfloat16 (with float32 state and arithmetic) on CUDA:

- :func:`srm_forward` — the SRM neuron of suppl. S14–S16 as a two-trace recurrence (see
  :mod:`exodus_lightning.algorithms.event_driven`), returning spikes, the discrete ``du/dt`` and the
  gradient trace ``g`` (the normaliser ``g(t_k)`` of S20 at spike times).
- :func:`srm_backward` — the per-neuron reverse scan of S11/S20/S21 returning the weight-path error
  ``e_w`` and the input-path error ``e_in``; the layer forms ``dL/dW = sum_t e_w^T s_in`` and
  ``dL/ds_in = (W^T e_in) * [s_in != 0]``.

The per-neuron arithmetic is shared by the CPU and the CUDA drivers (``event_neuron.h``); the CUDA
drivers compiled for the host (``libexodus_event_emulation``) let the tests run the GPU code path on
a CPU: route the CPU calls there by replacing :func:`for_device` (see ``tests/test_event_cuda.py``).
A missing library raises :class:`exodus_lightning._native.NativeLibraryError` saying how to get it.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Optional

import torch
from torch import Tensor

from exodus_lightning import _native
from exodus_lightning.ops._common import Pointers, float32_under_autocast

LIBRARY = "exodus_event"
CUDA_LIBRARY = "exodus_event_cuda"
EMULATION_LIBRARY = "exodus_event_emulation"
ABI_VERSION = 2
_PREFIXES = {LIBRARY: "exodus_event_", CUDA_LIBRARY: "exodus_event_cuda_", EMULATION_LIBRARY: "exodus_event_emu_"}
_CPU_DTYPES = {torch.float32: 0, torch.float64: 1}
_CUDA_DTYPES = {**_CPU_DTYPES, torch.float16: 2, torch.bfloat16: 3}
_i64, _i32, _f64, _p = ctypes.c_int64, ctypes.c_int32, ctypes.c_double, ctypes.c_void_p


class SRMForwardArgs(ctypes.Structure):
    _fields_ = [
        ("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32),
        ("current", _p), ("decay_m", _f64), ("decay_s", _f64), ("decay_g", _f64), ("kappa", _f64), ("theta", _f64),
        ("spikes", _p), ("du", _p), ("dug", _p), ("u", _p),
        ("device", _i32), ("stream", _p),
    ]


class SRMBackwardArgs(ctypes.Structure):
    _fields_ = [
        ("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32),
        ("grad_spikes", _p), ("spikes", _p), ("du", _p), ("dug", _p),
        ("decay_m", _f64), ("decay_s", _f64), ("decay_g", _f64), ("kappa", _f64), ("max_dudt_inv", _f64),
        ("e_w", _p), ("e_in", _p),
        ("device", _i32), ("stream", _p),
    ]


def _missing_message(name: str) -> str:
    where = ", ".join(str(d) for d in _native.candidate_dirs()) or "(no candidate folders)"
    fname = _native.library_filename(name)
    if name == CUDA_LIBRARY:
        return (f"exodus-lightning: a CUDA tensor reached event-driven backpropagation, but the native library "
                f"{fname} (its CUDA kernels) was not found (searched: {where}). It is built together with the "
                "core CUDA library when nvcc is found at install time: reinstall with a CUDA toolkit on PATH "
                "(EXODUS_REQUIRE_CUDA=1 pip install . makes a missing toolkit a build error), point "
                "$EXODUS_NATIVE_LIB at a folder holding it, or move the tensors to the CPU.")
    what = "event-driven backpropagation" if name == LIBRARY else "the event CUDA drivers compiled for the host, tests"
    return (f"exodus-lightning: native library {fname} ({what}) not found (searched: {where}). Rebuild the "
            "package from source (pip install -e . --no-build-isolation) so that native/src/event is compiled, "
            "or point $EXODUS_NATIVE_LIB at the folder holding the libraries.")


class _EventLibrary:
    """One loaded event library (CPU, CUDA or emulation) with checked entry points."""

    def __init__(self, name: str = LIBRARY) -> None:
        self.name = name
        prefix = _PREFIXES[name]
        path = _native.find_library(name)
        if path is None:
            raise _native.NativeLibraryError(_missing_message(name))
        try:
            self.dll = ctypes.CDLL(str(path))
        except OSError as e:
            raise _native.NativeLibraryError(f"exodus-lightning: {path} exists but cannot be loaded: {e}") from e
        abi = getattr(self.dll, prefix + "abi_version")
        abi.restype = _i32
        if abi() != ABI_VERSION:
            raise _native.NativeLibraryError(
                f"exodus-lightning: {path} has ABI version {abi()}, expected {ABI_VERSION}; the package and its "
                "native libraries come from different builds (rebuild or reinstall exodus-lightning)")
        self._last_error = getattr(self.dll, prefix + "last_error")
        self._last_error.restype = ctypes.c_char_p
        self._last_error.argtypes = []
        for fn_name, struct in (("srm_forward", SRMForwardArgs), ("srm_backward", SRMBackwardArgs)):
            fn = getattr(self.dll, prefix + fn_name)
            fn.restype = _i32
            fn.argtypes = [ctypes.POINTER(struct)]
            setattr(self, "_" + fn_name, fn)

    def call(self, name: str, args: ctypes.Structure) -> None:
        """Call the entry point ``name`` (``srm_forward`` / ``srm_backward``); ``RuntimeError`` with
        the native message when it fails."""
        rc = getattr(self, "_" + name)(ctypes.byref(args))
        if rc != 0:
            msg = (self._last_error() or b"").decode("utf-8", "replace")
            raise RuntimeError(f"exodus native error ({self.name}.{name}, code {rc}): {msg}")


_lock = threading.Lock()
_lib: Optional[_EventLibrary] = None
_other: dict[str, _EventLibrary] = {}


def library() -> _EventLibrary:
    """Load (once) and return the CPU library ``libexodus_event``; :class:`NativeLibraryError` if it is missing."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _EventLibrary(LIBRARY)
    return _lib


def _load_other(name: str) -> _EventLibrary:
    lib = _other.get(name)
    if lib is None:
        with _lock:
            if name not in _other:
                _other[name] = _EventLibrary(name)
            lib = _other[name]
    return lib


def cuda_library() -> _EventLibrary:
    """Load (once, on the first CUDA tensor) and return ``libexodus_event_cuda``."""
    return _load_other(CUDA_LIBRARY)


def emulation_library() -> _EventLibrary:
    """Load (once) and return ``libexodus_event_emulation``, the CUDA drivers compiled for the host."""
    return _load_other(EMULATION_LIBRARY)


def for_device(device_type: str) -> _EventLibrary:
    """The library serving tensors of ``device_type`` (``"cpu"`` or ``"cuda"``)."""
    if device_type == "cpu":
        return library()
    if device_type == "cuda":
        return cuda_library()
    raise _native.NativeLibraryError(
        f"exodus-lightning: event-driven backpropagation runs on CPU and CUDA tensors, not on {device_type!r}")


def _dtype_tag(x: Tensor, name: str) -> int:
    if x.device.type == "cuda":
        tag = _CUDA_DTYPES.get(x.dtype)
        if tag is None:
            raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {x.dtype}")
        return tag
    if x.device.type != "cpu":
        raise _native.NativeLibraryError(
            f"exodus-lightning: event-driven backpropagation runs on CPU and CUDA tensors; {name} is on {x.device}")
    tag = _CPU_DTYPES.get(x.dtype)
    if tag is None:
        half = " (float16 and bfloat16 run on CUDA only)" if x.dtype in _CUDA_DTYPES else ""
        raise TypeError(f"{name} must be float32 or float64 on the CPU{half}, got {x.dtype}")
    return tag


def _device_and_stream(x: Tensor) -> tuple[int, Optional[int]]:
    """The device index and the current stream the CUDA kernels must run on (0, None on the CPU)."""
    if x.device.type != "cuda":
        return 0, None
    return x.device.index, torch.cuda.current_stream(x.device).cuda_stream


@torch.library.custom_op("exodus_event::srm_forward", mutates_args=())
def srm_forward(current: Tensor, decay_m: float, decay_s: float, decay_g: float, kappa: float, theta: float,
                return_u: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """SRM forward scan on ``current`` ``(B, T, N)``: returns (spikes, du, g trace, u or empty), on
    ``current``'s device and in its dtype."""
    if current.ndim != 3:
        raise ValueError(f"current must have shape (B, T, N), got {tuple(current.shape)}")
    tag = _dtype_tag(current, "current")
    B, T, N = current.shape
    spikes, du, dug = (current.new_empty((B, T, N)) for _ in range(3))
    u = current.new_empty((B, T, N)) if return_u else current.new_empty((0,))
    lib = for_device(current.device.type)
    device, stream = _device_and_stream(current)
    with Pointers() as ptr:
        lib.call("srm_forward", SRMForwardArgs(
            B=B, T=T, N=N, dtype=tag, current=ptr(current), decay_m=decay_m, decay_s=decay_s, decay_g=decay_g,
            kappa=kappa, theta=theta, spikes=ptr.out(spikes), du=ptr.out(du), dug=ptr.out(dug), u=ptr.out(u),
            device=device, stream=stream))
    return spikes, du, dug, u


@srm_forward.register_fake
def _(current, decay_m, decay_s, decay_g, kappa, theta, return_u):
    u = torch.empty_like(current) if return_u else current.new_empty((0,))
    return torch.empty_like(current), torch.empty_like(current), torch.empty_like(current), u


# on CUDA too: an event layer's next layer takes float32 or float64 spikes
float32_under_autocast("exodus_event::srm_forward", ("cpu", "cuda"))


@torch.library.custom_op("exodus_event::srm_backward", mutates_args=())
def srm_backward(grad_spikes: Tensor, spikes: Tensor, du: Tensor, dug: Tensor, decay_m: float, decay_s: float,
                 decay_g: float, kappa: float, max_dudt_inv: float) -> tuple[Tensor, Tensor]:
    """Reverse scan per neuron (S11, S20, S21): returns ``(e_w, e_in)``, each ``(B, T, N)``.
    ``max_dudt_inv <= 0`` disables the clipping of ``-1/(du/dt)``. All inputs must be on one device."""
    for name, t in (("grad_spikes", grad_spikes), ("du", du), ("dug", dug)):
        if t.shape != spikes.shape:
            raise ValueError(f"{name} must have the shape of spikes {tuple(spikes.shape)}, got {tuple(t.shape)}")
        if t.device != spikes.device:
            raise ValueError(f"{name} is on {t.device} but spikes is on {spikes.device}")
    if spikes.ndim != 3:
        raise ValueError(f"spikes must have shape (B, T, N), got {tuple(spikes.shape)}")
    tag = _dtype_tag(spikes, "spikes")
    B, T, N = spikes.shape
    grad_spikes, du, dug = (t.to(spikes.dtype) for t in (grad_spikes, du, dug))
    e_w, e_in = spikes.new_empty((B, T, N)), spikes.new_empty((B, T, N))
    lib = for_device(spikes.device.type)
    device, stream = _device_and_stream(spikes)
    with Pointers() as ptr:
        lib.call("srm_backward", SRMBackwardArgs(
            B=B, T=T, N=N, dtype=tag, grad_spikes=ptr(grad_spikes), spikes=ptr(spikes), du=ptr(du), dug=ptr(dug),
            decay_m=decay_m, decay_s=decay_s, decay_g=decay_g, kappa=kappa, max_dudt_inv=max_dudt_inv,
            e_w=ptr.out(e_w), e_in=ptr.out(e_in), device=device, stream=stream))
    return e_w, e_in


@srm_backward.register_fake
def _(grad_spikes, spikes, du, dug, decay_m, decay_s, decay_g, kappa, max_dudt_inv):
    return torch.empty_like(spikes), torch.empty_like(spikes)


__all__ = ["srm_forward", "srm_backward", "library", "cuda_library", "emulation_library", "for_device",
           "SRMForwardArgs", "SRMBackwardArgs"]
