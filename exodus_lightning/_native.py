"""The one loader and registry of the native runtime (``native/include/exodus/runtime.h``).

There is one library per device, each with the operations of every algorithm (the EXODUS core,
sparse spiking gradient descent, event-driven backpropagation): ``libexodus_native`` (CPU),
``libexodus_native_cuda`` (CUDA; loaded lazily, the first time a CUDA tensor reaches an op) and
``libexodus_cuda_emulation`` (the CUDA drivers compiled for the host, for the tests).  They are
plain C: no torch or Python ABI, so one build serves every torch and Python version.  They are
looked up, in order, at ``$EXODUS_NATIVE_LIB`` (a library file or the folder holding the libraries)
and in the ``_lib`` folder of the installed package (``importlib.resources``; every entry of the
package's ``__path__`` is tried, which covers editable installs).

Every entry point is declared once, in :data:`ENTRY_POINTS` (its argument struct and the pointer
fields the C code writes), and called through :meth:`NativeLibrary.call`, the one place where
tensors become raw pointers: inputs are made contiguous and every tensor is held until the call
returns, so no kernel reads a freed temporary or a strided tensor as if it were dense.
:func:`dtype_tag` and :func:`device_and_stream` are the one dtype map and the one stream helper.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

import exodus_lightning

CPU_LIBRARY = "exodus_native"
CUDA_LIBRARY = "exodus_native_cuda"
EMULATION_LIBRARY = "exodus_cuda_emulation"
# One version for the whole C ABI (EXODUS_ABI_VERSION in runtime.h; 6: one library per device;
# 7: sparse_backward_plan; 8: the CPU library's streaming-store threshold).
ABI_VERSION = 8
# The environment variable that selects the CPU library's copy of the kernels (read once, at load).
ISA_ENV = "EXODUS_ISA"
ISAS = ("baseline", "avx2", "avx512")  # EXODUS_ISA_* of runtime.h, slowest first

# Exported-symbol infix of each library: exodus_<family><infix><operation>, e.g. exodus_lif_forward,
# exodus_cuda_lif_forward, exodus_sparse_emu_backward.
_INFIX = {CPU_LIBRARY: "", CUDA_LIBRARY: "cuda_", EMULATION_LIBRARY: "emu_"}
_KIND = {CPU_LIBRARY: "cpu", CUDA_LIBRARY: "cuda", EMULATION_LIBRARY: "emulation"}

# dtype tags of the C ABI (exodus::DType in common.h); the CPU drivers take the first two.
DTYPE_TAGS = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_CPU_DTYPES = (torch.float32, torch.float64)

_c_void_p = ctypes.c_void_p
_i64 = ctypes.c_int64
_i32 = ctypes.c_int32
_f64 = ctypes.c_double
_p = _c_void_p


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


# ---- sparse spiking gradient descent (sparse_api.h): every struct ends with the device and the stream
_WHERE = [("device", _i32), ("stream", _p)]


class SparseForwardArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("h", _p),
                ("alpha", _f64), ("theta", _f64), ("reset_scale", _f64), ("b_th", _f64), ("beta_s", _f64),
                ("delay", _i32), ("strict", _i32), ("spikes", _p), ("v", _p), ("counts", _p)] + _WHERE


class SparseCollectArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("v", _p),
                ("theta", _f64), ("b_th", _f64), ("beta_s", _f64), ("offsets", _p), ("times", _p),
                ("fvals", _p)] + _WHERE


class SparseTraceArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("x", _p), ("alpha", _f64),
                ("delay", _i32), ("trace", _p)] + _WHERE


class SparseBackwardArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N_out", _i64), ("N_in", _i64), ("dtype", _i32),
                ("alpha", _f64), ("reset_scale", _f64), ("exact", _i32), ("delay", _i32),
                ("offsets", _p), ("times", _p), ("fvals", _p), ("grad_spikes", _p), ("e", _p),
                ("trace", _p), ("grad_w", _p), ("input_mode", _i32), ("delta", _p), ("w_t", _p),
                ("in_offsets", _p), ("in_times", _p), ("workspace", _p), ("n_workspaces", _i64),
                ("grad_x", _p)] + _WHERE + [
                ("powers", _p), ("need_offsets", _p), ("need_times", _p), ("need_index", _p), ("w", _p),
                ("delta_needed", _p)]


class SparseBackwardPlanArgs(ctypes.Structure):
    # inputs, then what the library decides (input_mode ... workspace_bytes): no pointers
    _fields_ = [("B", _i64), ("T", _i64), ("N_out", _i64), ("N_in", _i64), ("dtype", _i32), ("input_path", _i32),
                ("out_active", _i64), ("in_active", _i64), ("needed", _i64),
                ("input_mode", _i32), ("zero_grad_x", _i32), ("n_workspaces", _i64), ("workspace", _i64),
                ("powers", _i64), ("delta_needed", _i64), ("workspace_bytes", _i64)] + _WHERE


class SparseDenseBackwardArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("v", _p), ("grad_spikes", _p),
                ("alpha", _f64), ("theta", _f64), ("reset_scale", _f64), ("b_th", _f64), ("beta_s", _f64),
                ("exact", _i32), ("delay", _i32), ("delta", _p)] + _WHERE


# ---- event-driven backpropagation (event_api.h)
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


@dataclass(frozen=True)
class EntryPoint:
    """One C operation: its symbol family (``""`` core, ``"sparse_"``, ``"event_"``), its argument
    struct (passed by pointer, returning an EXODUS_ERR_* code) and the pointer fields it writes
    (those must be contiguous: a copy would receive the results and be thrown away)."""

    family: str
    args: type
    outputs: tuple[str, ...]

    def symbol(self, name: str, library: str) -> str:
        """The exported name of operation ``name`` in ``library``."""
        return _symbol(self.family, name, library)


def _symbol(family: str, name: str, library: str) -> str:
    # exodus_<family><infix><name without the family>: exodus_sparse_cuda_forward for sparse_forward
    return "exodus_" + family + _INFIX[library] + name[len(family):]


ENTRY_POINTS: dict[str, EntryPoint] = {
    "lif_forward": EntryPoint("", LifForwardArgs, ("spikes", "v", "v_final", "i_final", "i_trace", "nonfinite")),
    "lif_backward": EntryPoint("", LifBackwardArgs, ("grad_x", "grad_v0", "grad_i0", "grad_alpha")),
    "leaky_forward": EntryPoint("", LeakyForwardArgs, ("out",)),
    "leaky_backward": EntryPoint("", LeakyBackwardArgs, ("grad_x", "grad_v0", "grad_alpha")),
    "sparse_forward": EntryPoint("sparse_", SparseForwardArgs, ("spikes", "v", "counts")),
    # collect reads the offsets the caller computed and writes its status element after the times
    "sparse_collect": EntryPoint("sparse_", SparseCollectArgs, ("offsets", "times", "fvals")),
    "sparse_trace": EntryPoint("sparse_", SparseTraceArgs, ("trace",)),
    "sparse_backward": EntryPoint("sparse_", SparseBackwardArgs, (
        "e", "grad_w", "delta", "grad_x", "workspace", "powers", "delta_needed")),
    "sparse_dense_backward": EntryPoint("sparse_", SparseDenseBackwardArgs, ("delta",)),
    # the library chooses backward's input-gradient path and sizes its workspaces (fields of the struct)
    "sparse_backward_plan": EntryPoint("sparse_", SparseBackwardPlanArgs, ()),
    "event_srm_forward": EntryPoint("event_", SRMForwardArgs, ("spikes", "du", "dug", "u")),
    "event_srm_backward": EntryPoint("event_", SRMBackwardArgs, ("e_w", "e_in")),
}

# Library-level functions: (symbol family, argument types, result type, libraries that export it).
_ALL = (CPU_LIBRARY, CUDA_LIBRARY, EMULATION_LIBRARY)
FUNCTIONS: dict[str, tuple[str, list, Any, tuple[str, ...]]] = {
    "abi_version": ("", [], _i32, _ALL),
    "last_error": ("", [], ctypes.c_char_p, _ALL),
    "build_info": ("", [], ctypes.c_char_p, _ALL),
    "isa": ("", [], _i32, (CPU_LIBRARY,)),
    "isa_available": ("", [_i32], _i32, (CPU_LIBRARY,)),
    "set_isa": ("", [_i32], _i32, (CPU_LIBRARY,)),
    "stream_threshold": ("", [], _i64, (CPU_LIBRARY,)),
    "set_stream_threshold": ("", [_i64], _i32, (CPU_LIBRARY,)),
    "sparse_max_threads": ("sparse_", [], _i32, (CPU_LIBRARY,)),
    "runtime_version": ("", [], _i32, (CUDA_LIBRARY,)),
    "driver_version": ("", [], _i32, (CUDA_LIBRARY,)),
    "device_count": ("", [], _i32, (CUDA_LIBRARY,)),
}


class NativeLibraryError(RuntimeError):
    """A native library is missing, cannot be loaded, or reported an error."""


class UnsupportedDeviceError(NativeLibraryError, NotImplementedError):
    """A tensor on a device no native library serves (only CPU and CUDA have one)."""


def library_filename(name: str) -> str:
    """The file name of library ``name`` on this platform."""
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
    """Where library ``name`` is (``$EXODUS_NATIVE_LIB`` may name the CPU library's file), or None."""
    fname = library_filename(name)
    env = os.environ.get("EXODUS_NATIVE_LIB")
    if env and name == CPU_LIBRARY and Path(env).is_file():
        return Path(env)
    for d in candidate_dirs():
        if (d / fname).is_file():
            return d / fname
    return None


class NativeLibrary:
    """One loaded library of the runtime with every entry point of :data:`ENTRY_POINTS` and
    :data:`FUNCTIONS` it exports bound to its declared signature; its ABI version is checked once,
    at load."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = path
        self.kind = _KIND[name]
        try:
            self.dll = ctypes.CDLL(str(path))
        except OSError as e:
            if "undefined symbol" in str(e) and ("GOMP_" in str(e) or "omp_" in str(e)):
                raise NativeLibraryError(
                    f"exodus-lightning: {path} uses the OpenMP runtime that torch loads, and none is loaded "
                    f"in this process ({e}). Install a torch built with OpenMP, or the system's libgomp "
                    "(e.g. apt-get install libgomp1)."
                ) from e
            raise NativeLibraryError(
                f"exodus-lightning: the native library {path} exists but cannot be loaded: {e}. "
                "Reinstall the package (pip install --force-reinstall exodus-lightning) or rebuild "
                "it from source (pip install .)."
            ) from e
        # the ABI first: a library of another version may lack the other symbols
        abi_symbol = _symbol("", "abi_version", name)
        abi = int(self._bind(abi_symbol, [], _i32)()) if hasattr(self.dll, abi_symbol) else "unknown (none exported)"
        if abi != ABI_VERSION:
            raise NativeLibraryError(
                f"exodus-lightning: {path} has ABI version {abi}, the Python package expects {ABI_VERSION}; "
                "the package and its native libraries come from different builds. Reinstall exodus-lightning "
                "(or rebuild it from source: pip install .)."
            )
        self._functions = {fn_name: self._bind(_symbol(family, fn_name, name), argtypes, restype)
                           for fn_name, (family, argtypes, restype, libraries) in FUNCTIONS.items()
                           if name in libraries}
        self._entries = {entry: self._bind(ep.symbol(entry, name), [ctypes.POINTER(ep.args)], _i32)
                         for entry, ep in ENTRY_POINTS.items()}

    def _bind(self, symbol: str, argtypes: list, restype: Any):
        try:
            fn = getattr(self.dll, symbol)
        except AttributeError:
            raise NativeLibraryError(
                f"exodus-lightning: {self.path} does not export {symbol} although it reports ABI version "
                f"{ABI_VERSION}: it was built from other sources. Reinstall exodus-lightning.") from None
        fn.argtypes = argtypes
        fn.restype = restype
        return fn

    @property
    def device_drivers(self) -> bool:
        """Whether the library runs the CUDA drivers (the CUDA library and its host emulation)."""
        return self.kind != "cpu"

    def call(self, entry: str, args: Optional[ctypes.Structure] = None, /, **fields: Any) -> None:
        """Run the operation ``entry`` (a key of :data:`ENTRY_POINTS`) with its struct built from
        ``fields``; a tensor field becomes its pointer: an input made contiguous, an output (declared
        in the entry point) required to be contiguous, NULL when absent or empty, and every tensor held
        until the call returns.  ``args``: a ready struct, passed as it is (tests of the C checks).
        A failure raises ``RuntimeError`` with the library's message."""
        ep = ENTRY_POINTS[entry]
        held: list[torch.Tensor] = []
        if args is None:
            values = {}
            for field_name, value in fields.items():
                if isinstance(value, torch.Tensor):
                    value = _pointer(value, field_name, field_name in ep.outputs, held)
                values[field_name] = value
            args = ep.args(**values)
        elif fields:
            raise TypeError(f"call({entry!r}): pass either a ready {ep.args.__name__} or its fields, not both")
        rc = self._entries[entry](ctypes.byref(args))
        del held  # the tensors behind the pointers live until here
        if rc != 0:
            raise RuntimeError(f"exodus native error ({self.name}.{entry}, code {rc}): {self.last_error()}")

    def last_error(self) -> str:
        """The calling thread's last error message of this library."""
        return (self._functions["last_error"]() or b"").decode("utf-8", "replace")

    def build_info(self) -> str:
        """How the library was built: toolchain, OpenMP and the kernel copies (CPU:
        ``isa baseline+avx2+avx512 (using avx512)``), toolkit and architectures (CUDA)."""
        return (self._functions["build_info"]() or b"").decode()

    def function(self, name: str) -> Any:
        """The library-level function ``name`` of :data:`FUNCTIONS`, as bound at load."""
        if name not in self._functions:
            raise NotImplementedError(f"{self.name} does not export {name} (a function of "
                                      f"{', '.join(FUNCTIONS[name][3])})")
        return self._functions[name]

    def max_threads(self) -> int:
        """OpenMP threads of the CPU library (1 for the others: they need no per-thread workspace)."""
        return int(self._functions["sparse_max_threads"]()) if self.kind == "cpu" else 1

    # ---- the CPU library's one instruction-set selection
    def _cpu_function(self, name: str) -> Any:
        if self.kind != "cpu":
            raise NotImplementedError(f"{self.name} has one copy of its kernels and no streaming stores; {name}() is a "
                                      "CPU-library function")
        return self._functions[name]

    def available_isas(self) -> list[str]:
        """The copies of the kernels this CPU and this build can run, slowest first."""
        available = self._cpu_function("isa_available")
        return [isa for i, isa in enumerate(ISAS) if available(i)]

    def isa(self) -> str:
        """The copy of the kernels in use: the best available one unless :meth:`set_isa` or
        ``$EXODUS_ISA`` chose another."""
        return ISAS[self._cpu_function("isa")()]

    def set_isa(self, isa: Optional[str]) -> None:
        """Run the kernels' ``isa`` copy (one of :data:`ISAS`; ``None``: the best available) from now
        on, for every thread and every algorithm.  The copies give the same bits (no FMA, sums over a
        fixed lane layout); for tests and benchmarks: not safe while another thread runs them."""
        if isa is not None and isa not in ISAS:
            raise ValueError(f"set_isa: isa must be one of {', '.join(ISAS)} or None (the best), got {isa!r}")
        if self._cpu_function("set_isa")(-1 if isa is None else ISAS.index(isa)) != 0:
            raise ValueError(f"set_isa: {self.last_error()} (available: {', '.join(self.available_isas())})")

    # ---- the CPU library's streaming stores
    def stream_threshold(self) -> int:
        """Bytes a CPU scan must write before it writes them with streaming (non-temporal) stores,
        which skip the cache: by default the last-level cache's size, so that smaller outputs stay in
        the cache for the op that reads them next."""
        return int(self._cpu_function("stream_threshold")())

    def set_stream_threshold(self, n_bytes: Optional[int]) -> None:
        """Set :meth:`stream_threshold` for the process (``None``: back to the default; 0: stream every
        64-byte-aligned output).  Results are the same bits either way; for tests and benchmarks."""
        if n_bytes is not None and (isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 0):
            raise ValueError(f"set_stream_threshold: n_bytes must be an int >= 0 or None (the default), got {n_bytes!r}")
        self._cpu_function("set_stream_threshold")(-1 if n_bytes is None else n_bytes)


def _pointer(t: torch.Tensor, name: str, output: bool, held: list[torch.Tensor]) -> Optional[int]:
    """The pointer the C code gets for tensor field ``name``: NULL for an empty tensor (its
    ``data_ptr()`` is 0, or for an empty view an address nothing may be read at), an input's
    contiguous copy when it is strided (transposed, sliced with a step, expanded with stride 0),
    appended to ``held`` so that it outlives the call."""
    if output and not t.is_contiguous():
        raise RuntimeError(f"exodus-lightning internal error: output {name} of shape {tuple(t.shape)} with strides "
                           f"{t.stride()} is not contiguous")
    t = t.contiguous()
    held.append(t)
    return t.data_ptr() if t.numel() else None


def dtype_tag(t: torch.Tensor, name: str) -> int:
    """The C ABI's dtype tag of ``t`` (named ``name`` in the error): float32/float64 on the CPU, also
    float16/bfloat16 on CUDA."""
    if t.device.type == "cuda" and t.dtype in DTYPE_TAGS:
        return DTYPE_TAGS[t.dtype]
    if t.device.type != "cuda" and t.dtype in _CPU_DTYPES:
        return DTYPE_TAGS[t.dtype]
    if t.device.type == "cuda":
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {t.dtype}")
    short = str(t.dtype).replace("torch.", "")
    half = (f": {short} is supported on CUDA only (float16 and bfloat16 run on CUDA only)"
            if t.dtype in DTYPE_TAGS else "")
    raise TypeError(f"{name} must be float32 or float64 on the CPU, got {t.dtype}{half}")


def device_and_stream(t: torch.Tensor) -> tuple[int, Optional[int]]:
    """The device index and the stream the CUDA drivers run ``t``'s call on: the caller's current
    stream of the tensor's own device (multi-GPU safe); ``(0, None)`` off CUDA."""
    if t.device.type != "cuda":
        return 0, None
    index = t.device.index if t.device.index is not None else torch.cuda.current_device()
    return index, torch.cuda.current_stream(index).cuda_stream


_lock = threading.Lock()
_loaded: dict[str, NativeLibrary] = {}

_PURPOSE = {CPU_LIBRARY: "CPU kernels", CUDA_LIBRARY: "CUDA kernels",
            EMULATION_LIBRARY: "CUDA drivers compiled for the host, tests"}


def _missing_message(name: str) -> str:
    where = ", ".join(str(d) for d in candidate_dirs()) or "(no candidate folders)"
    hint = (
        "It is built when nvcc is found at install time: reinstall with a CUDA toolkit on PATH "
        "(EXODUS_REQUIRE_CUDA=ON pip install . makes a missing toolkit a build error), point $EXODUS_NATIVE_LIB "
        "at a folder holding it, or move the tensors to the CPU."
        if name == CUDA_LIBRARY
        else "Reinstall the package (pip install --force-reinstall exodus-lightning), build it from source "
        "(pip install .), or point $EXODUS_NATIVE_LIB at the folder holding the libraries."
    )
    return (f"exodus-lightning: native library {library_filename(name)} not found (searched: {where}); it holds "
            f"the {_PURPOSE[name]}. {hint}")


def _warn_unmet_isa_request(lib: NativeLibrary) -> None:
    # The C side ignores an unknown or unavailable $EXODUS_ISA and runs the best copy.
    asked = os.environ.get(ISA_ENV, "")
    if asked and lib.isa() != asked:
        warnings.warn(f"${ISA_ENV}={asked!r} is not a kernel copy this CPU and build run "
                      f"(available: {', '.join(lib.available_isas())}); using {lib.isa()}", RuntimeWarning,
                      stacklevel=4)


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
            if name == CPU_LIBRARY:
                # its OpenMP symbols bind to torch's runtime: one runtime, one pool per process
                from exodus_lightning._openmp import share_torch_runtime

                share_torch_runtime()
            lib = NativeLibrary(name, path)
            if lib.kind == "cpu":
                _warn_unmet_isa_request(lib)
            _loaded[name] = lib
        return _loaded[name]


def cpu() -> NativeLibrary:
    """The CPU library."""
    return load(CPU_LIBRARY)


def cuda() -> NativeLibrary:
    """The CUDA library (loaded on the first CUDA tensor)."""
    return load(CUDA_LIBRARY)


def emulation() -> NativeLibrary:
    """The CUDA drivers compiled for the host (tests route CPU calls to it by replacing a
    ``for_device``)."""
    return load(EMULATION_LIBRARY)


def for_device(device_type: str) -> NativeLibrary:
    """The library serving tensors of ``device_type`` (``"cpu"`` or ``"cuda"``)."""
    if device_type == "cpu":
        return cpu()
    if device_type == "cuda":
        return cuda()
    raise UnsupportedDeviceError(
        f"exodus-lightning: the native kernels run on CPU and CUDA tensors, not on {device_type!r}")
