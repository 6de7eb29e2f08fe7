"""``exodus-lightning bench sparse``: backward time and memory of the sparse (active-set, S3GD)
backward of one fused Linear+LIF layer against the dense native backward with the same truncated
surrogate plus ``torch.matmul`` for dW and dx, across activity levels and hidden sizes (the
paper's Fig. 20/21, on our kernels).

Like the paper's timing protocol, the timed layer is a hidden layer whose input is another hidden
layer (N_in = N_out = hidden): the input gradient is written at the input layer's active entries.
The membrane and the active sets are synthetic, with an exact fraction ``rho`` of active entries
in both layers, so the activity is controlled; the kernels are the ones the layer runs.  Sparse
and dense are timed round-robin in the same run (the machine is shared and noisy): the times are
medians over the rounds, and the speed-up is the median over the rounds of dense / sparse of the
same round (:func:`paired_speedup`), timed back to back, so that the slow swings of a shared
machine's load cancel in each ratio instead of landing on one side of it.  ``--isa avx2 avx512``
times those copies of the CPU kernels in the same rounds (a row each).

Memory (CPU: no allocator statistics, so bytes are counted from the tensors themselves):
"kept" = what each backend keeps from the forward for the backward (dense: membrane + input;
sparse: CSR active set + input trace); "bwd" = tensors the backward allocates (dense: delta,
dW, dx; sparse: errors at active entries, dW, dx and the workspace of the input gradient's path —
per-thread delta and W^T for dot products, per-thread lists of one sample's entries for products).
The weight is shared and not counted.  "saved" = 1 - sparse/dense of kept + bwd.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Optional

import torch

from exodus_lightning import _native
from exodus_lightning.ops import sparse as ops

HIDDEN = (200, 500, 1000)
ACTIVITY = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
B_TH = 0.2
BETA_S = 100.0


def _nbytes(*ts: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


def make_case(B: int, T: int, N: int, rho: float, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Synthetic layer state with a fraction ``rho`` of active entries in this and the input layer."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, T, N, generator=g) < rho
    inside = 1 + (torch.rand(B, T, N, generator=g) * 2 - 1) * (B_TH * 0.95)
    outside = 1 + B_TH + 0.05 + torch.rand(B, T, N, generator=g)
    v = torch.where(mask, inside, outside).to(dtype)
    f = torch.where(mask, 1 / (BETA_S * (v - 1).abs() + 1) ** 2, torch.zeros((), dtype=dtype))
    in_mask = torch.rand(B, T, N, generator=g) < rho
    x = (torch.rand(B, T, N, generator=g) < max(rho, 0.01)).to(dtype)
    return {
        "v": v, "x": x, "w": (torch.randn(N, N, generator=g) / N ** 0.5).to(dtype),
        "grad": torch.randn(B, T, N, generator=g).to(dtype),
        "active": ops.active_set_from_mask(mask, f, dtype), "in_active": ops.active_set_from_mask(in_mask, None, dtype),
        "trace": ops.input_trace(x, 0.9, True),
    }


def sparse_step(c: dict, alpha: float = 0.9) -> dict:
    return ops.sparse_backward(c["active"], c["grad"], alpha, 1.0, False, True, c["trace"], c["w"], 2, c["in_active"])


def dense_step(c: dict, alpha: float = 0.9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    delta = ops.dense_backward(c["v"], c["grad"], alpha, 1.0, 1.0, B_TH, BETA_S, False, True)
    N = delta.shape[2]
    grad_w = torch.matmul(delta.reshape(-1, N).t(), c["x"].reshape(-1, c["x"].shape[2]))
    grad_x = torch.matmul(delta, c["w"])
    return delta, grad_w, grad_x


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paired_speedup(dense_s: list[float], sparse_s: list[float]) -> float:
    """Median over rounds i of ``dense_s[i] / sparse_s[i]`` (both timed in round i).

    >>> paired_speedup([10.0, 30.0, 12.0], [1.0, 2.0, 1.0])
    12.0
    """
    if len(dense_s) != len(sparse_s) or not dense_s:
        raise ValueError(f"dense_s and sparse_s must be non-empty and of equal length, got "
                         f"{len(dense_s)} and {len(sparse_s)}")
    return statistics.median(d / s for d, s in zip(dense_s, sparse_s))


def run(B: int, T: int, hidden: tuple[int, ...], activity: tuple[float, ...], repeats: int,
        isas: tuple[Optional[str], ...] = (None,)) -> list[dict]:
    """Rows of the table: per hidden size, activity and copy of the CPU kernels (``isas``: names of
    :data:`exodus_lightning._native.ISAS`, ``None`` the best), every copy and the dense step timed in the same
    rounds, so the copies' times compare within a round as the speed-ups do."""
    lib = ops.library()
    before = lib.isa()
    names = [isa or lib.available_isas()[-1] for isa in isas]
    rows = []
    try:
        for N in hidden:
            for rho in activity:
                rows += _run_case(lib, make_case(B, T, N, rho), N, rho, names, repeats)
    finally:
        lib.set_isa(before)
    return rows


def _run_case(lib: _native.NativeLibrary, c: dict, N: int, rho: float, isas: list[str], repeats: int) -> list[dict]:
    # Warm-up, round-robin like the timed runs: library load, OpenMP pool, and the allocator's
    # adaptive thresholds (the first large allocations fault their pages in).
    for _ in range(2):
        for isa in isas:
            lib.set_isa(isa)
            out = sparse_step(c)
        d = dense_step(c)
    # Each copy's sparse step right after a dense step of its own: every copy starts from the
    # caches the dense step leaves (a copy timed after another would find the operands warm).
    ts, td = {isa: [] for isa in isas}, {isa: [] for isa in isas}
    for _ in range(repeats):
        for isa in isas:
            lib.set_isa(isa)
            td[isa].append(_time(lambda: dense_step(c)))
            ts[isa].append(_time(lambda: sparse_step(c)))
    kept_dense = _nbytes(c["v"], c["x"])
    kept_sparse = c["active"].nbytes() + _nbytes(c["trace"])
    bwd_dense = _nbytes(*d)
    bwd_sparse = _nbytes(out["e"], out["grad_w"], out["grad_x"]) + int(out["workspace_bytes"])
    # the input-gradient path the library's cost model chose for the sparse step
    B, T, _ = c["active"].shape
    plan = ops.backward_plan(lib, B, T, N, N, c["grad"].dtype, c["active"].count, c["in_active"].count)
    path = "products" if plan.input_mode == 3 else "dots"
    return [{"N": N, "rho": rho, "isa": isa, "measured_rho": c["active"].fraction, "path": path,
             "sparse": statistics.median(ts[isa]), "dense": statistics.median(td[isa]),
             "speedup": paired_speedup(td[isa], ts[isa]), "kept_dense": kept_dense, "kept_sparse": kept_sparse,
             "bwd_dense": bwd_dense, "bwd_sparse": bwd_sparse} for isa in isas]


def report(rows: list[dict], B: int, T: int) -> str:
    lines = [f"sparse vs dense backward of one Linear+LIF layer (N_in = N_out = hidden), B={B}, T={T}, float32, "
             f"B_th={B_TH}, CPU, torch threads {torch.get_num_threads()}",
             f"{'hidden':>6} {'active %':>8} {'dense ms':>9} {'sparse ms':>9} {'speed-up':>8} "
             f"{'kept MB d/s':>13} {'bwd MB d/s':>13} {'dx path':>8} {'mem saved':>9} {'kernels':>8}"]
    for r in rows:
        tot_d, tot_s = r["kept_dense"] + r["bwd_dense"], r["kept_sparse"] + r["bwd_sparse"]
        lines.append(
            f"{r['N']:>6} {100 * r['measured_rho']:8.2f} {1e3 * r['dense']:9.2f} {1e3 * r['sparse']:9.2f} "
            f"{r['speedup']:7.1f}x {r['kept_dense'] / 2**20:6.1f}/{r['kept_sparse'] / 2**20:<6.1f} "
            f"{r['bwd_dense'] / 2**20:6.1f}/{r['bwd_sparse'] / 2**20:<6.1f} {r['path']:>8} "
            f"{100 * (1 - tot_s / tot_d):8.1f}% {r['isa']:>8}")
    return "\n".join(lines)


def bench_sparse(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench sparse``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench sparse", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32, help="batch size B (default 32)")
    p.add_argument("--steps", type=int, default=100, help="time steps T (default 100)")
    p.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN), help="hidden sizes (default 200 500 1000)")
    p.add_argument("--activity", type=float, nargs="+", default=list(ACTIVITY),
                   help="fractions of active entries (default 0.005 ... 0.5)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    p.add_argument("--isa", nargs="+", default=None, choices=_native.ISAS,
                   help="copies of the CPU kernels to time, each in the same rounds (default: the best "
                        "this CPU runs; `exodus-lightning info` lists the build's)")
    args = p.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.repeats < 1 or min(args.hidden) < 1:
        p.error("--batch, --steps, --repeats and --hidden must be >= 1")
    if not all(0 < a <= 1 for a in args.activity):
        p.error("--activity values must lie in (0, 1]")
    if args.isa:
        missing = [isa for isa in args.isa if isa not in ops.library().available_isas()]
        if missing:
            p.error(f"--isa {' '.join(missing)}: not available on this CPU or build "
                    f"(available: {' '.join(ops.library().available_isas())})")
    rows = run(args.batch, args.steps, tuple(args.hidden), tuple(args.activity), args.repeats,
               tuple(args.isa) if args.isa else (None,))
    print(report(rows, args.batch, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(bench_sparse())
