"""The sparse spiking gradient descent kernels (S3GD; Perez-Nieves & Goodman, NeurIPS 2021) of the
native libraries — see ``native/include/exodus/sparse_api.h`` for the C ABI.

The kernels work on one fused Linear+LIF layer ``h = x W^T`` (``W`` of shape ``(N_out, N_in)``):

* :func:`lif_forward` — the neuron scan of suppl. E.2 eq. (17)-(19) (options: one-step delay,
  reset scale, strict threshold) and the per-(b, j) count of active entries ``|V - V_th| < B_th``;
* :func:`collect_active` — the active set as a CSR over (b, j) of ascending times with the
  truncated surrogate ``f(V) = 1/(beta_s |V - V_th| + 1)^2`` (suppl. E.5 eq. 20) at each entry;
* :func:`input_trace` — ``tr[t] = alpha tr[t-1] + x[t-1]`` (= dV[t]/dW with the reset ignored);
* :func:`sparse_backward` — Prop. 1 memoised delta walk, ``dW = sum_active e * trace`` and the
  input gradient written only at the input layer's active entries (suppl. B, C);
* :func:`dense_backward` — the dense reverse scan with the same truncated surrogate (baseline).

Each of them is a ``torch.library`` custom op (``exodus_sparse::lif_forward``, ``collect_active``,
``input_trace``, ``sparse_backward``, ``dense_backward``) with a fake implementation, so networks built
on them compile with ``torch.compile(fullgraph=True)``; the size of the active set is data-dependent
(an unbacked size in the fake).  :class:`ActiveSet` is a Python view of ``collect_active``'s tensors.
The library that runs a backward also plans it (:func:`backward_plan`, one C call): it chooses the
input-gradient path by its cost model and reports the workspaces to allocate, so no driver layout
is mirrored here.

float32 / float64 on CPU and CUDA tensors, through the registry of :mod:`exodus_lightning._native`:
the CPU library (OpenMP), the CUDA library (loaded lazily, the first time a CUDA tensor arrives; the
kernels run on the caller's current stream of the tensors' own device) and the emulation library (the
CUDA drivers compiled for the host; the tests route CPU calls to it by replacing :func:`for_device`).
The sums are deterministic on both devices (no atomics: every output element is written by one thread
in a fixed order).  The workspaces are allocated here with the torch allocator on the tensors'
device, as the library's plan (:func:`backward_plan`) asks; the CUDA drivers also take the needed
times of the input layer per sample (:func:`needed_times`).

The CPU library holds copies of its kernels for several instruction sets (baseline x86-64 / the
build's target, AVX2, AVX-512; the same source at different vector widths, giving the same bits) and
runs the best one the CPU has; :meth:`~exodus_lightning._native.NativeLibrary.set_isa` or
``$EXODUS_ISA`` picks another (tests, benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from exodus_lightning import _native
from exodus_lightning._native import SparseBackwardArgs as BackwardArgs
from exodus_lightning._native import SparseBackwardPlanArgs as BackwardPlanArgs
from exodus_lightning._native import SparseCollectArgs as CollectArgs
from exodus_lightning._native import SparseDenseBackwardArgs as DenseBackwardArgs
from exodus_lightning._native import SparseForwardArgs as ForwardArgs
from exodus_lightning._native import SparseTraceArgs as TraceArgs
# The ops look for_device up in this module at each call: the tests replace it to route CPU tensors
# to emulation_library, the CUDA drivers compiled for the host.
from exodus_lightning._native import cpu as library, cuda as cuda_library, emulation as emulation_library, for_device


def _launch(t: Tensor) -> tuple[_native.NativeLibrary, int, Optional[int]]:
    """(library, device index, stream) for a call on ``t``'s device."""
    return (for_device(t.device.type),) + _native.device_and_stream(t)


def check_tensor(t: Tensor, name: str, ndim: int = 3) -> None:
    """A CPU or CUDA float32/float64 tensor of ``ndim`` dimensions, else TypeError/ValueError/
    NotImplementedError naming ``name``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64 for the sparse kernels, got {t.dtype}")
    if t.device.type not in ("cpu", "cuda"):
        raise NotImplementedError(
            f"{name} is on {t.device}: the sparse-SGD kernels run on CPU and CUDA tensors only")
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")


def check_device(t: Tensor, name: str, device: torch.device) -> None:
    """ValueError naming ``name`` unless ``t`` is on ``device`` (the kernels take raw pointers)."""
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected {device} like the other tensors of the call")


@dataclass
class ActiveSet:
    """Active entries ``|V - V_th| < B_th`` of a ``(B, T, N)`` layer, as a CSR over (b, j).

    ``offsets[b * N + j] : offsets[b * N + j + 1]`` index ``times`` (int32, ascending) and
    ``fvals`` (the truncated surrogate there).  The three tensors live on the layer's device and are
    not modified after construction.  Memory: 8 (B N + 1) + (4 + dtype size) |A| bytes instead of
    the dense membrane's B T N dtype size."""

    offsets: Tensor
    times: Tensor
    fvals: Tensor
    shape: tuple[int, int, int]
    # |A| once known (the constructors know it): each read of offsets[-1] is a tensor op, and on
    # CUDA a synchronisation, which the backward would otherwise pay several times per call.
    _count: Optional[int] = field(default=None, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return self.offsets.device

    @property
    def count(self) -> int:
        """Number of active entries (synchronises with a CUDA device the first time)."""
        if self._count is None:
            self._count = int(self.offsets[-1])
        return self._count

    @property
    def fraction(self) -> float:
        """Fraction of active (b, t, j) entries (the paper's rho)."""
        B, T, N = self.shape
        return self.count / max(1, B * T * N)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.offsets, self.times, self.fvals))

    def mask(self) -> Tensor:
        """Dense ``(B, T, N)`` bool mask on the set's device (tests and plots)."""
        B, T, N = self.shape
        K = self.count
        dev = self.device
        bj = torch.repeat_interleave(torch.arange(B * N, device=dev), self.offsets[1:] - self.offsets[:-1])
        m = torch.zeros(B, T, N, dtype=torch.bool, device=dev)
        if K:
            m[bj // N, self.times[:K].long(), bj % N] = True
        return m


# ----------------------------------------------------------------------------- custom ops
#
# Each C entry point is a custom op of namespace ``exodus_sparse`` with a fake implementation, so that
# ``torch.compile`` traces through them; the active set's size |A| is data-dependent, and the fake
# of ``collect_active`` gives it an unbacked size.  The ops check their arguments in the fake too,
# so a bad call fails at trace time naming the argument.


def _check_lif_forward(h: Tensor) -> None:
    check_tensor(h, "h")


@torch.library.custom_op("exodus_sparse::lif_forward", mutates_args=())
def lif_forward(h: Tensor, alpha: float, theta: float, reset_scale: float, b_th: float, beta_s: float,
                delay: bool, strict: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Neuron scan of suppl. E.2 eq. (17)-(19) on ``h = x W^T``: returns ``(spikes, V, counts (B*N,) int64)``,
    ``counts`` the active entries ``|V - V_th| < B_th`` per (b, j)."""
    _check_lif_forward(h)
    B, T, N = h.shape
    spikes, v = h.new_empty((B, T, N)), h.new_empty((B, T, N))
    counts = torch.zeros(B * N, dtype=torch.int64, device=h.device)
    lib, device, stream = _launch(h)
    lib.call("sparse_forward", B=B, T=T, N=N, dtype=_native.DTYPE_TAGS[h.dtype], h=h, alpha=alpha, theta=theta,
             reset_scale=reset_scale, b_th=b_th, beta_s=beta_s, delay=int(delay), strict=int(strict), spikes=spikes,
             v=v, counts=counts, device=device, stream=stream)
    return spikes, v, counts


@lif_forward.register_fake
def _(h, alpha, theta, reset_scale, b_th, beta_s, delay, strict):
    _check_lif_forward(h)
    B, T, N = h.shape
    return h.new_empty((B, T, N)), h.new_empty((B, T, N)), h.new_empty((B * N,), dtype=torch.int64)


def _check_collect(v: Tensor, counts: Tensor) -> None:
    check_tensor(v, "v")
    check_device(counts, "counts", v.device)
    B, T, N = v.shape
    if counts.dtype != torch.int64 or counts.numel() != B * N:
        raise ValueError(f"counts must be int64 with B * N = {B * N} elements (from lif_forward), "
                         f"got {counts.dtype} of shape {tuple(counts.shape)}")


@torch.library.custom_op("exodus_sparse::collect_active", mutates_args=())
def _collect_active(v: Tensor, counts: Tensor, theta: float, b_th: float,
                    beta_s: float) -> tuple[Tensor, Tensor, Tensor]:
    """The CSR ``(offsets (B N + 1,) int64, times (|A| + 1,) int32, fvals (max(|A|, 1),))`` of the active set
    (suppl. E.5 eq. 20 at each entry); ``times[|A|]`` is a status element."""
    _check_collect(v, counts)
    B, T, N = v.shape
    offsets = torch.zeros(B * N + 1, dtype=torch.int64, device=v.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    K = int(offsets[-1])
    # the K times, then the status element the library sets to -1 when v does not match counts
    times = torch.empty(K + 1, dtype=torch.int32, device=v.device)
    times[K] = 0
    fvals = torch.empty(max(K, 1), dtype=v.dtype, device=v.device)
    lib, device, stream = _launch(v)
    lib.call("sparse_collect", B=B, T=T, N=N, dtype=_native.DTYPE_TAGS[v.dtype], v=v, theta=theta, b_th=b_th,
             beta_s=beta_s, offsets=offsets, times=times, fvals=fvals, device=device, stream=stream)
    if int(times[K]) < 0:
        raise ValueError("counts do not match the active entries of v: pass the counts lif_forward returned "
                         "with this v")
    return offsets, times, fvals


@_collect_active.register_fake
def _(v, counts, theta, b_th, beta_s):
    _check_collect(v, counts)
    B, T, N = v.shape
    # |A| + 1 and max(|A|, 1), known only once the kernel ran; one unbacked size each, since torch.compile
    # binds an unbacked size only where it is an output's size itself (not u0 + 1)
    ctx = torch.library.get_ctx()
    return (v.new_empty((B * N + 1,), dtype=torch.int64),
            v.new_empty((ctx.new_dynamic_size(min=1),), dtype=torch.int32), v.new_empty((ctx.new_dynamic_size(min=1),)))


def collect_active(v: Tensor, counts: Tensor, theta: float, b_th: float, beta_s: float) -> ActiveSet:
    """The active set of membrane ``v`` as a CSR (``counts`` from :func:`lif_forward` on this ``v``; other
    counts are a ValueError), on ``v``'s device (op ``exodus_sparse::collect_active``)."""
    offsets, times, fvals = _collect_active(v, counts, theta, b_th, beta_s)
    return ActiveSet(offsets, times, fvals, tuple(v.shape))


def active_set_from_mask(mask: Tensor, fvals: Optional[Tensor] = None, dtype: torch.dtype = torch.float64) -> ActiveSet:
    """An :class:`ActiveSet` from a dense ``(B, T, N)`` bool mask (``fvals``: dense ``(B, T, N)``
    surrogate values, or ones), on the mask's device.  Bookkeeping in PyTorch, for tests and the benchmark."""
    if mask.ndim != 3:
        raise ValueError(f"mask must be (B, T, N), got shape {tuple(mask.shape)}")
    B, T, N = mask.shape
    dev = mask.device
    idx = mask.permute(0, 2, 1).nonzero()  # sorted by (b, j, t)
    counts = torch.bincount(idx[:, 0] * N + idx[:, 1], minlength=B * N)
    offsets = torch.zeros(B * N + 1, dtype=torch.int64, device=dev)
    torch.cumsum(counts, 0, out=offsets[1:])
    K = idx.shape[0]
    times = torch.zeros(max(K, 1), dtype=torch.int32, device=dev)
    times[:K] = idx[:, 2].to(torch.int32)
    fv = torch.ones(max(K, 1), dtype=dtype, device=dev)
    if fvals is not None:
        fv[:K] = fvals[idx[:, 0], idx[:, 2], idx[:, 1]].to(dtype)
    return ActiveSet(offsets, times, fv, (B, T, N), K)


@torch.library.custom_op("exodus_sparse::input_trace", mutates_args=())
def input_trace(x: Tensor, alpha: float, delay: bool) -> Tensor:
    """Presynaptic trace ``tr[t] = alpha tr[t-1] + x[t - delay]`` (suppl. B: dV[t]/dW, reset ignored)."""
    check_tensor(x, "x")
    B, T, N = x.shape
    tr = x.new_empty((B, T, N))
    lib, device, stream = _launch(x)
    lib.call("sparse_trace", B=B, T=T, N=N, dtype=_native.DTYPE_TAGS[x.dtype], x=x, alpha=alpha, delay=int(delay),
             trace=tr, device=device, stream=stream)
    return tr


@input_trace.register_fake
def _(x, alpha, delay):
    check_tensor(x, "x")
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def needed_times(input_active: ActiveSet) -> tuple[Tensor, Tensor, Tensor]:
    """The times at which each sample needs delta for the sparse input gradient: those at which any
    input neuron of sample b is active.  Returns ``(need_offsets (B + 1,) int64, need_times int32
    (ascending per sample, at least one element), need_index (B * T,) int32)`` with ``need_index[b * T + t]``
    the position of t in sample b's list or -1.  Torch ops on the set's device (the CUDA drivers'
    bookkeeping; the CPU library builds the same lists per thread)."""
    B, T, N_in = input_active.shape
    dev = input_active.device
    K = input_active.count
    mark = torch.zeros(B, T, dtype=torch.bool, device=dev)
    if K and N_in:
        # The CSR is ordered by (b, i): sample b's entries are one contiguous run.
        bounds = input_active.offsets[::N_in]
        sample = torch.repeat_interleave(torch.arange(B, device=dev), bounds[1:] - bounds[:-1], output_size=K)
        mark[sample, input_active.times[:K].long()] = True  # duplicates all store True: deterministic
    pos = torch.cumsum(mark, 1, dtype=torch.int32) - 1
    need_index = torch.where(mark, pos, torch.full_like(pos, -1)).reshape(-1).contiguous()
    need_offsets = torch.zeros(B + 1, dtype=torch.int64, device=dev)
    torch.cumsum(mark.sum(1), 0, out=need_offsets[1:])
    times = mark.nonzero()[:, 1].to(torch.int32)  # row-major: by sample, then ascending t
    if times.numel() == 0:
        times = torch.zeros(1, dtype=torch.int32, device=dev)
    return need_offsets, times.contiguous(), need_index


# input_path of sparse_backward and the backward_plan code the libraries take for it
INPUT_PATHS = {"auto": 0, "dots": 1, "products": 2}
# The path the layers' backward asks for (tests force one path through a whole network).
DEFAULT_INPUT_PATH = "auto"


def backward_plan(lib: _native.NativeLibrary, B: int, T: int, N_out: int, N_in: int, dtype: torch.dtype, out_active: int,
                  in_active: int, needed: int = 0, input_path: str = "auto") -> BackwardPlanArgs:
    """What ``lib`` needs for a backward with the sparse input gradient (suppl. C): the input_mode it
    chooses (2: dot products of delta at the needed times with rows of ``W^T``; 3: products with rows
    of ``W`` and a reverse scan — its cost model decides for ``"auto"``), and its workspace sizes
    (``exodus_sparse_backward_plan``, ``sparse_api.h``).  ``needed``: the (b, t) pairs where the CUDA
    drivers need delta."""
    if input_path not in INPUT_PATHS:
        raise ValueError(f"input_path must be one of {tuple(INPUT_PATHS)}, got {input_path!r}")
    plan = BackwardPlanArgs(B=B, T=T, N_out=N_out, N_in=N_in, dtype=_native.DTYPE_TAGS[dtype],
                            input_path=INPUT_PATHS[input_path], out_active=out_active, in_active=in_active,
                            needed=needed)
    lib.call("sparse_backward_plan", plan)
    return plan


def products_are_cheaper(B: int, T: int, N_out: int, N_in: int, out_active: int, in_active: int) -> bool:
    """Whether the CPU library computes the sparse input gradient of these sizes by products (a row of
    ``W`` per active output entry, then a reverse scan) rather than by dot products (a row of ``W^T``
    per active input entry, delta at the needed times, the transpose of ``W``): its cost model
    (``products_are_cheaper`` in ``native/src/sparse/sparse_cpu.cpp``), asked through
    :func:`backward_plan`."""
    return backward_plan(library(), B, T, N_out, N_in, torch.float32, out_active, in_active).input_mode == 3


def _check_backward(offsets: Tensor, times: Tensor, fvals: Tensor, grad_spikes: Tensor, trace: Optional[Tensor],
                    weight: Optional[Tensor], input_mode: int, in_offsets: Optional[Tensor],
                    in_times: Optional[Tensor], input_path: str) -> int:
    """Checks of :func:`sparse_backward`'s arguments; returns N_in (0 without trace and weight)."""
    if input_path not in INPUT_PATHS:
        raise ValueError(f"input_path must be one of {tuple(INPUT_PATHS)}, got {input_path!r}")
    check_tensor(grad_spikes, "grad_spikes")
    B, T, N = grad_spikes.shape
    dev = grad_spikes.device
    for name, t in [("active.offsets", offsets), ("active.times", times), ("active.fvals", fvals)]:
        check_device(t, name, dev)
    if offsets.numel() != B * N + 1:
        raise ValueError(f"active.offsets must have B * N + 1 = {B * N + 1} elements for grad_spikes of shape "
                         f"{(B, T, N)}, got {offsets.numel()}")
    if fvals.dtype != grad_spikes.dtype:
        raise TypeError(f"active.fvals is {fvals.dtype}, grad_spikes is {grad_spikes.dtype}: the dtypes must match")
    N_in = 0
    if trace is not None:
        check_tensor(trace, "trace")
        check_device(trace, "trace", dev)
        if tuple(trace.shape[:2]) != (B, T):
            raise ValueError(f"trace must have shape {(B, T)} + (N_in,), got {tuple(trace.shape)}")
        N_in = trace.shape[2]
    if input_mode == 2:
        if weight is None or in_offsets is None or in_times is None:
            raise ValueError("input_mode 2 needs weight and input_active")
        check_device(weight, "weight", dev)
        check_device(in_offsets, "input_active", dev)
        if weight.ndim != 2 or weight.shape[0] != N or (trace is not None and weight.shape[1] != N_in):
            raise ValueError(f"weight must have shape (N_out={N}, N_in{'=' + str(N_in) if trace is not None else ''}),"
                             f" got {tuple(weight.shape)}")
        N_in = weight.shape[1]
        if in_offsets.numel() != B * N_in + 1:
            raise ValueError(f"input_active has {in_offsets.numel() - 1} (b, i) pairs, expected B * N_in = {B * N_in}")
    elif input_mode not in (0, 1):
        raise ValueError(f"input_mode must be 0, 1 or 2, got {input_mode!r}")
    return N_in


@torch.library.custom_op("exodus_sparse::sparse_backward", mutates_args=())
def _sparse_backward(offsets: Tensor, times: Tensor, fvals: Tensor, grad_spikes: Tensor, alpha: float,
                     reset_scale: float, exact: bool, delay: bool, trace: Optional[Tensor], weight: Optional[Tensor],
                     input_mode: int, in_offsets: Optional[Tensor], in_times: Optional[Tensor],
                     input_path: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(e, grad_w, delta, grad_x, workspace_bytes)`` of :func:`sparse_backward`, the absent ones empty."""
    N_in = _check_backward(offsets, times, fvals, grad_spikes, trace, weight, input_mode, in_offsets, in_times,
                           input_path)
    B, T, N = grad_spikes.shape
    dev, dt = grad_spikes.device, grad_spikes.dtype
    lib, device, stream = _launch(grad_spikes)
    e = torch.empty_like(fvals)  # max(|A|, 1) elements: one per active entry
    grad_w, delta, grad_x = (grad_spikes.new_empty((0,)) for _ in range(3))  # distinct: outputs may not alias
    workspace_bytes = torch.zeros((), dtype=torch.int64)
    # the registry's call holds every tensor handed to the library until the call returns
    args = dict(B=B, T=T, N_out=N, N_in=N_in, dtype=_native.DTYPE_TAGS[dt], alpha=alpha, reset_scale=reset_scale,
                exact=int(exact), delay=int(delay), offsets=offsets, times=times, fvals=fvals,
                grad_spikes=grad_spikes, e=e, input_mode=input_mode, device=device, stream=stream)
    if lib.device_drivers:  # alpha^n: the CUDA drivers' only workspace outside the sparse input gradient
        args["powers"] = torch.empty(T + 1, dtype=dt, device=dev)
    if trace is not None:
        grad_w = torch.empty(N, N_in, dtype=dt, device=dev)
        args["trace"], args["grad_w"] = trace.to(dt), grad_w
    if input_mode == 1:
        delta = torch.empty(B, T, N, dtype=dt, device=dev)
        args["delta"] = delta
    elif input_mode == 2:
        needed = 0
        if lib.device_drivers:
            # needed_times reads the input set's offsets and times only (fvals: a placeholder)
            input_active = ActiveSet(in_offsets, in_times, fvals, (B, T, N_in))
            need_offsets, need_times, need_index = needed_times(input_active)
            needed = int(need_offsets[-1])
            args.update(need_offsets=need_offsets, need_times=need_times, need_index=need_index)
            out_active = in_active = 0  # the device drivers have one path: no cost model, no sync
        else:
            out_active, in_active = int(offsets[-1]), int(in_offsets[-1])
        plan = backward_plan(lib, B, T, N, N_in, dt, out_active, in_active, needed, input_path)
        args["input_mode"], args["n_workspaces"] = plan.input_mode, plan.n_workspaces
        grad_x = (torch.zeros if plan.zero_grad_x else torch.empty)(B, T, N_in, dtype=dt, device=dev)
        args.update(grad_x=grad_x, in_offsets=in_offsets, in_times=in_times, w=weight.detach().to(dt))
        for name in ("workspace", "powers", "delta_needed"):
            if getattr(plan, name):
                args[name] = torch.empty(getattr(plan, name), dtype=dt, device=dev)
        workspace_bytes.fill_(plan.workspace_bytes)
    lib.call("sparse_backward", **args)
    # Freeing the workspaces while the kernels run is safe: they were allocated on the stream the
    # kernels run on, and the caching allocator reuses a block only in that stream's order.
    return e, grad_w, delta, grad_x, workspace_bytes


@_sparse_backward.register_fake
def _(offsets, times, fvals, grad_spikes, alpha, reset_scale, exact, delay, trace, weight, input_mode, in_offsets,
      in_times, input_path):
    N_in = _check_backward(offsets, times, fvals, grad_spikes, trace, weight, input_mode, in_offsets, in_times,
                           input_path)
    B, T, N = grad_spikes.shape
    return (torch.empty_like(fvals), grad_spikes.new_empty((N, N_in) if trace is not None else (0,)),
            grad_spikes.new_empty((B, T, N) if input_mode == 1 else (0,)),
            grad_spikes.new_empty((B, T, N_in) if input_mode == 2 else (0,)), torch.empty((), dtype=torch.int64))


def sparse_backward(active: ActiveSet, grad_spikes: Tensor, alpha: float, reset_scale: float, exact: bool,
                    delay: bool, trace: Optional[Tensor], weight: Optional[Tensor], input_mode: int,
                    input_active: Optional[ActiveSet] = None, input_path: Optional[str] = None) -> dict[str, Tensor]:
    """Active-set backward of one fused Linear+LIF layer (suppl. B, C; op ``exodus_sparse::sparse_backward``),
    on the device of ``grad_spikes``.

    Returns a dict with ``e`` (the error at the active entries; e-hat for ``exact``), ``grad_w``
    (when ``trace`` is given), and for ``input_mode`` 1 ``delta`` (dense dL/dh, ``(B, T, N_out)``)
    or for ``input_mode`` 2 ``grad_x`` (dL/dx written only at ``input_active``'s entries, zero
    elsewhere — exact for the upstream gradient because the layer below multiplies by its own
    truncated surrogate, zero off its active set) and ``workspace_bytes`` (a CPU scalar: the bytes of
    the kernels' workspace as the library reports them in its plan).

    ``input_path`` picks how the CPU library computes the sparse input gradient (the CUDA drivers
    always use dot products): ``"dots"`` — delta at the times the input layer needs, then one dot
    product with a row of ``W^T`` per active input entry (suppl. C); ``"products"`` — since every
    neuron decays by the same alpha, ``sum_j W[j, i] g_v[b, t, j]`` obeys the same reverse scan as
    ``g_v``, so it is accumulated from one row of ``W`` per active *output* entry (no delta, no
    transposed weight); ``"auto"`` — the cheaper of the two by the library's cost model
    (:func:`products_are_cheaper`); None (default): :data:`DEFAULT_INPUT_PATH`.  Both give the same
    gradient up to float rounding.
    """
    check_tensor(grad_spikes, "grad_spikes")
    if tuple(grad_spikes.shape) != tuple(active.shape):
        raise ValueError(f"grad_spikes must have shape {active.shape}, got {tuple(grad_spikes.shape)}")
    if input_mode == 2 and input_active is not None and weight is not None and weight.ndim == 2:
        B, T, _ = active.shape
        if tuple(input_active.shape) != (B, T, weight.shape[1]):
            raise ValueError(f"input_active has shape {input_active.shape}, expected {(B, T, weight.shape[1])}")
    e, grad_w, delta, grad_x, workspace_bytes = _sparse_backward(
        active.offsets, active.times, active.fvals, grad_spikes, alpha, reset_scale, exact, delay, trace, weight,
        input_mode, None if input_active is None else input_active.offsets,
        None if input_active is None else input_active.times,
        DEFAULT_INPUT_PATH if input_path is None else input_path)
    out: dict[str, Tensor] = {"e": e}
    if trace is not None:
        out["grad_w"] = grad_w
    if input_mode == 1:
        out["delta"] = delta
    elif input_mode == 2:
        out["grad_x"], out["workspace_bytes"] = grad_x, workspace_bytes
    return out


def _check_dense_backward(v: Tensor, grad_spikes: Tensor) -> None:
    check_tensor(v, "v")
    check_tensor(grad_spikes, "grad_spikes")
    check_device(grad_spikes, "grad_spikes", v.device)
    if grad_spikes.shape != v.shape:
        raise ValueError(f"grad_spikes must have shape {tuple(v.shape)}, got {tuple(grad_spikes.shape)}")


@torch.library.custom_op("exodus_sparse::dense_backward", mutates_args=())
def dense_backward(v: Tensor, grad_spikes: Tensor, alpha: float, theta: float, reset_scale: float, b_th: float,
                   beta_s: float, exact: bool, delay: bool) -> Tensor:
    """Dense reverse scan with the truncated surrogate (the baseline of suppl. B): ``delta = dL/dh`` of
    shape ``(B, T, N)``."""
    _check_dense_backward(v, grad_spikes)
    B, T, N = v.shape
    delta = v.new_empty((B, T, N))
    lib, device, stream = _launch(v)
    lib.call("sparse_dense_backward", B=B, T=T, N=N, dtype=_native.DTYPE_TAGS[v.dtype], v=v,
             grad_spikes=grad_spikes.to(v.dtype), alpha=alpha, theta=theta, reset_scale=reset_scale, b_th=b_th,
             beta_s=beta_s, exact=int(exact), delay=int(delay), delta=delta, device=device, stream=stream)
    return delta


@dense_backward.register_fake
def _(v, grad_spikes, alpha, theta, reset_scale, b_th, beta_s, exact, delay):
    _check_dense_backward(v, grad_spikes)
    return torch.empty_like(v, memory_format=torch.contiguous_format)
