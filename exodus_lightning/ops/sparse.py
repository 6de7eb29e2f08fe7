"""ctypes binding of ``libexodus_sparse`` (sparse spiking gradient descent, S3GD; Perez-Nieves &
Goodman, NeurIPS 2021) — see ``native/include/exodus/sparse_api.h`` for the C ABI.

The kernels work on one fused Linear+LIF layer ``h = x W^T`` (``W`` of shape ``(N_out, N_in)``):

* :func:`lif_forward` — the neuron scan of suppl. E.2 eq. (17)-(19) (options: one-step delay,
  reset scale, strict threshold) and the per-(b, j) count of active entries ``|V - V_th| < B_th``;
* :func:`collect_active` — the active set as a CSR over (b, j) of ascending times with the
  truncated surrogate ``f(V) = 1/(beta_s |V - V_th| + 1)^2`` (suppl. E.5 eq. 20) at each entry;
* :func:`input_trace` — ``tr[t] = alpha tr[t-1] + x[t-1]`` (= dV[t]/dW with the reset ignored);
* :func:`sparse_backward` — Prop. 1 memoised delta walk, ``dW = sum_active e * trace`` and the
  input gradient written only at the input layer's active entries (suppl. B, C);
* :func:`dense_backward` — the dense reverse scan with the same truncated surrogate (baseline).

CPU only (float32 / float64); the sums are deterministic (no atomics: threads own output rows).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from exodus_lightning import _native

LIBRARY = "exodus_sparse"
ABI_VERSION = 1

_vp = ctypes.c_void_p
_i64 = ctypes.c_int64
_i32 = ctypes.c_int32
_f64 = ctypes.c_double
_pi64 = ctypes.POINTER(ctypes.c_int64)
_pi32 = ctypes.POINTER(ctypes.c_int32)


class ForwardArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("h", _vp),
                ("alpha", _f64), ("theta", _f64), ("reset_scale", _f64), ("b_th", _f64), ("beta_s", _f64),
                ("delay", _i32), ("strict", _i32), ("spikes", _vp), ("v", _vp), ("counts", _vp)]


class CollectArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("v", _vp),
                ("theta", _f64), ("b_th", _f64), ("beta_s", _f64), ("offsets", _vp), ("times", _vp),
                ("fvals", _vp)]


class TraceArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("x", _vp), ("alpha", _f64),
                ("delay", _i32), ("trace", _vp)]


class BackwardArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N_out", _i64), ("N_in", _i64), ("dtype", _i32),
                ("alpha", _f64), ("reset_scale", _f64), ("exact", _i32), ("delay", _i32),
                ("offsets", _vp), ("times", _vp), ("fvals", _vp), ("grad_spikes", _vp), ("e", _vp),
                ("trace", _vp), ("grad_w", _vp), ("input_mode", _i32), ("delta", _vp), ("w_t", _vp),
                ("in_offsets", _vp), ("in_times", _vp), ("workspace", _vp), ("n_workspaces", _i64),
                ("grad_x", _vp)]


class DenseBackwardArgs(ctypes.Structure):
    _fields_ = [("B", _i64), ("T", _i64), ("N", _i64), ("dtype", _i32), ("v", _vp), ("grad_spikes", _vp),
                ("alpha", _f64), ("theta", _f64), ("reset_scale", _f64), ("b_th", _f64), ("beta_s", _f64),
                ("exact", _i32), ("delay", _i32), ("delta", _vp)]


_DTYPES = {torch.float32: 0, torch.float64: 1}


class SparseLibrary:
    """The loaded ``libexodus_sparse`` with checked entry points."""

    def __init__(self, path) -> None:
        try:
            self.dll = ctypes.CDLL(str(path))
        except OSError as e:
            raise _native.NativeLibraryError(
                f"exodus-lightning: the sparse-SGD library {path} exists but cannot be loaded: {e}. "
                "Rebuild the package (pip install -e . / pip install .)."
            ) from e
        self.dll.exodus_sparse_last_error.restype = ctypes.c_char_p
        self.dll.exodus_sparse_abi_version.restype = _i32
        self.dll.exodus_sparse_max_threads.restype = _i32
        abi = self.dll.exodus_sparse_abi_version()
        if abi != ABI_VERSION:
            raise _native.NativeLibraryError(
                f"exodus-lightning: {path} has sparse ABI version {abi}, expected {ABI_VERSION}; "
                "the package and its native libraries come from different builds. Reinstall exodus-lightning."
            )
        for name, struct in [("forward", ForwardArgs), ("collect", CollectArgs), ("trace", TraceArgs),
                             ("backward", BackwardArgs), ("dense_backward", DenseBackwardArgs)]:
            fn = getattr(self.dll, "exodus_sparse_" + name)
            fn.restype = _i32
            fn.argtypes = [ctypes.POINTER(struct)]
            setattr(self, name, self._checked(fn, name))

    def _checked(self, fn, name: str):
        def call(args) -> None:
            rc = fn(ctypes.byref(args))
            if rc != 0:
                msg = (self.dll.exodus_sparse_last_error() or b"").decode("utf-8", "replace")
                raise RuntimeError(f"exodus sparse native error ({name}, code {rc}): {msg}")

        return call

    def max_threads(self) -> int:
        return int(self.dll.exodus_sparse_max_threads())


_lock = threading.Lock()
_lib: Optional[SparseLibrary] = None


def library() -> SparseLibrary:
    """Load (once) ``libexodus_sparse``; raise :class:`NativeLibraryError` with a clear message if missing."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                path = _native.find_library(LIBRARY)
                if path is None:
                    where = ", ".join(str(d) for d in _native.candidate_dirs()) or "(no candidate folders)"
                    raise _native.NativeLibraryError(
                        f"exodus-lightning: native library {_native.library_filename(LIBRARY)} (sparse spiking "
                        f"gradient descent) not found (searched: {where}). It is built from native/src/sparse by "
                        "the package build: reinstall (pip install --force-reinstall exodus-lightning) or rebuild "
                        "from source (pip install .), or point $EXODUS_NATIVE_LIB at the folder holding it."
                    )
                _lib = SparseLibrary(path)
    return _lib


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def check_tensor(t: Tensor, name: str, ndim: int = 3) -> None:
    """CPU float32/float64 of ``ndim`` dimensions, else TypeError/ValueError naming ``name``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name} must be float32 or float64 for the sparse kernels, got {t.dtype}")
    if t.device.type != "cpu":
        raise NotImplementedError(
            f"{name} is on {t.device}: the sparse-SGD kernels are CPU only (no CUDA kernels yet); "
            "use backend='dense' or move the tensors to the CPU")
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")


@dataclass
class ActiveSet:
    """Active entries ``|V - V_th| < B_th`` of a ``(B, T, N)`` layer, as a CSR over (b, j).

    ``offsets[b * N + j] : offsets[b * N + j + 1]`` index ``times`` (int32, ascending) and
    ``fvals`` (the truncated surrogate there).  Memory: 8 (B N + 1) + (4 + dtype size) |A| bytes
    instead of the dense membrane's B T N dtype size."""

    offsets: Tensor
    times: Tensor
    fvals: Tensor
    shape: tuple[int, int, int]

    @property
    def count(self) -> int:
        return int(self.offsets[-1])

    @property
    def fraction(self) -> float:
        """Fraction of active (b, t, j) entries (the paper's rho)."""
        B, T, N = self.shape
        return self.count / max(1, B * T * N)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.offsets, self.times, self.fvals))

    def mask(self) -> Tensor:
        """Dense ``(B, T, N)`` bool mask (tests and plots)."""
        B, T, N = self.shape
        K = self.count
        bj = torch.repeat_interleave(torch.arange(B * N), self.offsets[1:] - self.offsets[:-1])
        m = torch.zeros(B, T, N, dtype=torch.bool)
        if K:
            m[bj // N, self.times[:K].long(), bj % N] = True
        return m


def lif_forward(h: Tensor, alpha: float, theta: float, reset_scale: float, b_th: float, beta_s: float,
                delay: bool, strict: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Neuron scan of suppl. E.2 on ``h = x W^T``: returns ``(spikes, V, counts (B*N,) int64)``."""
    check_tensor(h, "h")
    h = h.contiguous()
    B, T, N = h.shape
    spikes, v = torch.empty_like(h), torch.empty_like(h)
    counts = torch.zeros(B * N, dtype=torch.int64)
    library().forward(ForwardArgs(B=B, T=T, N=N, dtype=_DTYPES[h.dtype], h=_ptr(h), alpha=alpha, theta=theta,
                                  reset_scale=reset_scale, b_th=b_th, beta_s=beta_s, delay=int(delay),
                                  strict=int(strict), spikes=_ptr(spikes), v=_ptr(v), counts=_ptr(counts)))
    return spikes, v, counts


def collect_active(v: Tensor, counts: Tensor, theta: float, b_th: float, beta_s: float) -> ActiveSet:
    """The active set of membrane ``v`` as a CSR (``counts`` from :func:`lif_forward`)."""
    check_tensor(v, "v")
    v = v.contiguous()
    B, T, N = v.shape
    offsets = torch.zeros(B * N + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=offsets[1:])
    K = int(offsets[-1])
    # At least one element: a valid pointer even when nothing is active.
    times = torch.empty(max(K, 1), dtype=torch.int32)
    fvals = torch.empty(max(K, 1), dtype=v.dtype)
    library().collect(CollectArgs(B=B, T=T, N=N, dtype=_DTYPES[v.dtype], v=_ptr(v), theta=theta, b_th=b_th,
                                  beta_s=beta_s, offsets=_ptr(offsets), times=_ptr(times), fvals=_ptr(fvals)))
    return ActiveSet(offsets, times, fvals, (B, T, N))


def active_set_from_mask(mask: Tensor, fvals: Optional[Tensor] = None, dtype: torch.dtype = torch.float64) -> ActiveSet:
    """An :class:`ActiveSet` from a dense ``(B, T, N)`` bool mask (``fvals``: dense ``(B, T, N)``
    surrogate values, or ones).  Bookkeeping in PyTorch, for tests and the benchmark."""
    if mask.ndim != 3:
        raise ValueError(f"mask must be (B, T, N), got shape {tuple(mask.shape)}")
    B, T, N = mask.shape
    idx = mask.permute(0, 2, 1).nonzero()  # sorted by (b, j, t)
    counts = torch.bincount(idx[:, 0] * N + idx[:, 1], minlength=B * N)
    offsets = torch.zeros(B * N + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=offsets[1:])
    K = idx.shape[0]
    times = torch.zeros(max(K, 1), dtype=torch.int32)
    times[:K] = idx[:, 2].to(torch.int32)
    fv = torch.ones(max(K, 1), dtype=dtype)
    if fvals is not None:
        fv[:K] = fvals[idx[:, 0], idx[:, 2], idx[:, 1]].to(dtype)
    return ActiveSet(offsets, times, fv, (B, T, N))


def input_trace(x: Tensor, alpha: float, delay: bool) -> Tensor:
    """Presynaptic trace ``tr[t] = alpha tr[t-1] + x[t - delay]`` (suppl. B: dV[t]/dW, reset ignored)."""
    check_tensor(x, "x")
    x = x.contiguous()
    B, T, N = x.shape
    tr = torch.empty_like(x)
    library().trace(TraceArgs(B=B, T=T, N=N, dtype=_DTYPES[x.dtype], x=_ptr(x), alpha=alpha, delay=int(delay),
                              trace=_ptr(tr)))
    return tr


def sparse_backward(active: ActiveSet, grad_spikes: Tensor, alpha: float, reset_scale: float, exact: bool,
                    delay: bool, trace: Optional[Tensor], weight: Optional[Tensor], input_mode: int,
                    input_active: Optional[ActiveSet] = None) -> dict[str, Tensor]:
    """Active-set backward of one fused Linear+LIF layer.

    Returns a dict with ``e`` (the error at the active entries; e-hat for ``exact``), ``grad_w``
    (when ``trace`` is given), and for ``input_mode`` 1 ``delta`` (dense dL/dh, ``(B, T, N_out)``)
    or for ``input_mode`` 2 ``grad_x`` (dL/dx written only at ``input_active``'s entries, zero
    elsewhere — exact for the upstream gradient because the layer below multiplies by its own
    truncated surrogate, zero off its active set).
    """
    check_tensor(grad_spikes, "grad_spikes")
    B, T, N = active.shape
    if tuple(grad_spikes.shape) != (B, T, N):
        raise ValueError(f"grad_spikes must have shape {(B, T, N)}, got {tuple(grad_spikes.shape)}")
    dt = grad_spikes.dtype
    if active.fvals.dtype != dt:
        raise TypeError(f"active.fvals is {active.fvals.dtype}, grad_spikes is {dt}: the dtypes must match")
    grad_spikes = grad_spikes.contiguous()
    N_in = 0
    if trace is not None:
        check_tensor(trace, "trace")
        trace = trace.contiguous().to(dt)
        N_in = trace.shape[2]
    if input_mode == 2:
        if weight is None or input_active is None:
            raise ValueError("input_mode 2 needs weight and input_active")
        N_in = weight.shape[1]
        if input_active.shape != (B, T, N_in):
            raise ValueError(f"input_active has shape {input_active.shape}, expected {(B, T, N_in)}")
    elif input_mode not in (0, 1):
        raise ValueError(f"input_mode must be 0, 1 or 2, got {input_mode!r}")
    lib = library()
    e = torch.empty(max(active.count, 1), dtype=dt)
    out: dict[str, Tensor] = {"e": e}
    args = BackwardArgs(B=B, T=T, N_out=N, N_in=N_in, dtype=_DTYPES[dt], alpha=alpha, reset_scale=reset_scale,
                        exact=int(exact), delay=int(delay), offsets=_ptr(active.offsets), times=_ptr(active.times),
                        fvals=_ptr(active.fvals), grad_spikes=_ptr(grad_spikes), e=_ptr(e), input_mode=input_mode)
    if trace is not None:
        grad_w = torch.empty(N, N_in, dtype=dt)
        args.trace, args.grad_w = _ptr(trace), _ptr(grad_w)
        out["grad_w"] = grad_w
    keep = []
    if input_mode == 1:
        delta = torch.empty(B, T, N, dtype=dt)
        args.delta = _ptr(delta)
        out["delta"] = delta
    elif input_mode == 2:
        w_t = weight.detach().to(dt).t().contiguous()  # rows of W^T: contiguous dot products over j
        n_ws = max(1, min(lib.max_threads(), B))
        workspace = torch.empty(n_ws, T * N, dtype=dt)
        grad_x = torch.zeros(B, T, N_in, dtype=dt)
        args.w_t, args.workspace, args.n_workspaces, args.grad_x = _ptr(w_t), _ptr(workspace), n_ws, _ptr(grad_x)
        args.in_offsets, args.in_times = _ptr(input_active.offsets), _ptr(input_active.times)
        keep = [w_t, workspace]
        out["grad_x"] = grad_x
        out["workspace_bytes"] = torch.tensor(workspace.numel() * workspace.element_size() + w_t.numel() * w_t.element_size())
    lib.backward(args)
    del keep
    return out


def dense_backward(v: Tensor, grad_spikes: Tensor, alpha: float, theta: float, reset_scale: float, b_th: float,
                   beta_s: float, exact: bool, delay: bool) -> Tensor:
    """Dense reverse scan with the truncated surrogate: ``delta = dL/dh`` of shape ``(B, T, N)``."""
    check_tensor(v, "v")
    check_tensor(grad_spikes, "grad_spikes")
    v, grad_spikes = v.contiguous(), grad_spikes.contiguous().to(v.dtype)
    B, T, N = v.shape
    delta = torch.empty_like(v)
    library().dense_backward(DenseBackwardArgs(
        B=B, T=T, N=N, dtype=_DTYPES[v.dtype], v=_ptr(v), grad_spikes=_ptr(grad_spikes), alpha=alpha, theta=theta,
        reset_scale=reset_scale, b_th=b_th, beta_s=beta_s, exact=int(exact), delay=int(delay), delta=_ptr(delta)))
    return delta
