"""Finds and loads the native EXODUS libraries through ctypes.

The libraries are plain C (``native/include/exodus/c_api.h``): no torch or Python ABI, so one
build serves every torch and Python version.  They are looked up, in order, at
``$EXODUS_NATIVE_LIB`` (a library file or the folder holding the libraries) and in the ``_lib``
folder of the installed package (``importlib.resources``; every entry of the package's
``__path__`` is tried, which covers editable installs).  The CPU library is loaded on first use;
the CUDA library is loaded lazily, the first time a CUDA tensor reaches an op.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import os
import sys
import threading
from pathlib import Path

import exodus_lightning

CPU_LIBRARY = "exodus_native"
CUDA_LIBRARY = "exodus_native_cuda"
EMULATION_LIBRARY = "exodus_cuda_emulation"
ABI_VERSION = 2  # 2: LifForwardArgs.nonfinite

DTYPE_TAGS = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}

_c_void_p = ctypes.c_void_p
_i64 = ctypes.c_int64
_i32 = ctypes.c_int32
_f64 = ctypes.c_double


class LifForwardArgs(ctypes.Structure):
    _fields_ = [
        ("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("device", _i32), ("stream", _c_void_p),
        ("x", _c_void_p), ("alpha", _c_void_p), ("theta", _c_void_p), ("beta", _c_void_p),
        ("alpha_per_neuron", _i32), ("theta_per_neuron", _i32), ("beta_per_neuron", _i32),
        ("v0", _c_void_p), ("i0", _c_void_p),
        ("reset_mode", _i32), ("max_spikes", _i64), ("has_clamp", _i32), ("v_min", _f64), ("norm_input", _i32),
        ("spikes", _c_void_p), ("v", _c_void_p), ("v_final", _c_void_p), ("i_final", _c_void_p),
        ("i_trace", _c_void_p), ("nonfinite", _c_void_p),
    ]


class LifBackwardArgs(ctypes.Structure):
    _fields_ = [
        ("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("device", _i32), ("stream", _c_void_p),
        ("grad_spikes", _c_void_p), ("grad_v", _c_void_p), ("grad_v_final", _c_void_p),
        ("grad_i_final", _c_void_p), ("v", _c_void_p), ("surrogate", _c_void_p),
        ("surrogate_id", _i32), ("surrogate_p0", _f64), ("surrogate_p1", _f64), ("surrogate_p2", _f64),
        ("alpha", _c_void_p), ("theta", _c_void_p), ("beta", _c_void_p),
        ("alpha_per_neuron", _i32), ("theta_per_neuron", _i32), ("beta_per_neuron", _i32),
        ("v0", _c_void_p), ("i_trace", _c_void_p),
        ("reset_mode", _i32), ("max_spikes", _i64), ("has_clamp", _i32), ("v_min", _f64), ("norm_input", _i32),
        ("backward_mode", _i32),
        ("grad_x", _c_void_p), ("grad_v0", _c_void_p), ("grad_i0", _c_void_p), ("grad_alpha", _c_void_p),
    ]


class LeakyForwardArgs(ctypes.Structure):
    _fields_ = [
        ("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("device", _i32), ("stream", _c_void_p),
        ("x", _c_void_p), ("alpha", _c_void_p), ("alpha_per_neuron", _i32), ("v0", _c_void_p),
        ("norm_input", _i32), ("out", _c_void_p),
    ]


class LeakyBackwardArgs(ctypes.Structure):
    _fields_ = [
        ("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("device", _i32), ("stream", _c_void_p),
        ("grad_out", _c_void_p), ("alpha", _c_void_p), ("alpha_per_neuron", _i32), ("v0", _c_void_p),
        ("out", _c_void_p), ("x", _c_void_p), ("norm_input", _i32),
        ("grad_x", _c_void_p), ("grad_v0", _c_void_p), ("grad_alpha", _c_void_p),
    ]


class NativeLibraryError(RuntimeError):
    """A native library is missing, cannot be loaded, or reported an error."""


def library_filename(name: str) -> str:
    if sys.platform == "darwin":
        return f"lib{name}.dylib"
    if sys.platform == "win32":
        return f"{name}.dll"
    return f"lib{name}.so"


def candidate_dirs() -> list[Path]:
    """Folders searched for the libraries, in order."""
    dirs: list[Path] = []
    env = os.environ.get("EXODUS_NATIVE_LIB")
    if env:
        p = Path(env)
        dirs.append(p.parent if p.is_file() else p)
    try:
        # joinpath (not str of the root): an editable install's root is a multiplexed path.
        dirs.append(Path(os.fspath(importlib.resources.files("exodus_lightning").joinpath("_lib"))))
    except (ModuleNotFoundError, TypeError, NotADirectoryError):
        pass
    for entry in getattr(exodus_lightning, "__path__", []):
        d = Path(entry) / "_lib"
        if d not in dirs:
            dirs.append(d)
    # Running from a source checkout (``python -m pytest`` in the repository puts the source
    # package first on sys.path) while the built libraries sit in the installed distribution.
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        d = Path(os.fspath(distribution("exodus-lightning").locate_file("exodus_lightning/_lib")))
        if d not in dirs:
            dirs.append(d)
    except (PackageNotFoundError, TypeError, ValueError):
        pass
    return dirs


def find_library(name: str) -> Path | None:
    fname = library_filename(name)
    env = os.environ.get("EXODUS_NATIVE_LIB")
    if env and name == CPU_LIBRARY and Path(env).is_file():
        return Path(env)
    for d in candidate_dirs():
        if (d / fname).is_file():
            return d / fname
    return None


_SIGNATURES = {
    CPU_LIBRARY: ("exodus_", ("lif_forward", LifForwardArgs), ("lif_backward", LifBackwardArgs),
                  ("leaky_forward", LeakyForwardArgs), ("leaky_backward", LeakyBackwardArgs)),
    CUDA_LIBRARY: ("exodus_cuda_", ("lif_forward", LifForwardArgs), ("lif_backward", LifBackwardArgs),
                   ("leaky_forward", LeakyForwardArgs), ("leaky_backward", LeakyBackwardArgs)),
    EMULATION_LIBRARY: ("exodus_emu_", ("lif_forward", LifForwardArgs), ("lif_backward", LifBackwardArgs),
                        ("leaky_forward", LeakyForwardArgs), ("leaky_backward", LeakyBackwardArgs)),
}


class NativeLibrary:
    """A loaded native library with typed entry points ``lif_forward(args)`` etc."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = path
        try:
            self.dll = ctypes.CDLL(str(path))
        except OSError as e:
            raise NativeLibraryError(
                f"exodus-lightning: the native library {path} exists but cannot be loaded: {e}. "
                "Reinstall the package (pip install --force-reinstall exodus-lightning) or rebuild "
                "it from source (pip install .)."
            ) from e
        prefix = _SIGNATURES[name][0]
        err = getattr(self.dll, prefix + "last_error")
        err.restype = ctypes.c_char_p
        err.argtypes = []
        self._last_error = err
        for fn_name, struct in _SIGNATURES[name][1:]:
            fn = getattr(self.dll, prefix + fn_name)
            fn.restype = _i32
            fn.argtypes = [ctypes.POINTER(struct)]
            setattr(self, fn_name, self._checked(fn))
        abi_fn = getattr(self.dll, prefix + "abi_version", None)
        if abi_fn is not None:
            abi_fn.restype = _i32
            if abi_fn() != ABI_VERSION:
                raise NativeLibraryError(
                    f"exodus-lightning: {path} has ABI version {abi_fn()}, the Python package expects "
                    f"{ABI_VERSION}; the package and its native libraries come from different builds. "
                    "Reinstall exodus-lightning."
                )

    def _checked(self, fn):
        def call(args):
            rc = fn(ctypes.byref(args))
            if rc != 0:
                msg = (self._last_error() or b"").decode("utf-8", "replace")
                raise RuntimeError(f"exodus native error ({self.name}, code {rc}): {msg}")

        return call

    def build_info(self) -> str:
        prefix = "exodus_cuda_" if self.name == CUDA_LIBRARY else "exodus_"
        fn = getattr(self.dll, prefix + "build_info", None)
        if fn is None:
            return ""
        fn.restype = ctypes.c_char_p
        return fn().decode()


_lock = threading.Lock()
_loaded: dict[str, NativeLibrary] = {}


def _missing_message(name: str) -> str:
    where = ", ".join(str(d) for d in candidate_dirs()) or "(no candidate folders)"
    hint = (
        "The CUDA library is built when nvcc is found at install time: reinstall with a CUDA toolkit on PATH "
        "(EXODUS_REQUIRE_CUDA=1 pip install . makes a missing toolkit a build error), or move the tensors to the CPU."
        if name == CUDA_LIBRARY
        else "Reinstall the package (pip install --force-reinstall exodus-lightning), build it from source "
        "(pip install .), or point $EXODUS_NATIVE_LIB at the folder holding the libraries."
    )
    return f"exodus-lightning: native library {library_filename(name)} not found (searched: {where}). {hint}"


def load(name: str) -> NativeLibrary:
    """Load (once) and return the native library ``name``; raise a clear error if it is missing."""
    lib = _loaded.get(name)
    if lib is not None:
        return lib
    with _lock:
        if name not in _loaded:
            path = find_library(name)
            if path is None:
                raise NativeLibraryError(_missing_message(name))
            _loaded[name] = NativeLibrary(name, path)
        return _loaded[name]


def cpu() -> NativeLibrary:
    return load(CPU_LIBRARY)


def cuda() -> NativeLibrary:
    return load(CUDA_LIBRARY)


def emulation() -> NativeLibrary:
    return load(EMULATION_LIBRARY)


def for_device(device_type: str) -> NativeLibrary:
    if device_type == "cpu":
        return cpu()
    if device_type == "cuda":
        return cuda()
    raise NativeLibraryError(f"exodus-lightning: no native library for device type {device_type!r} (cpu and cuda only)")
