"""``exodus-lightning bench event``: operations and time of the event-driven backward (Zhu et al.
2022) against BPTT on one fully connected layer (M inputs, N outputs, T steps), across input
firing rates — the complexity argument of suppl. C: ``O(T (alpha M N + beta M))`` vs ``O(T M N)``.

Rows per firing rate alpha (the layer is calibrated so that its outputs fire at about the same rate):

- ``ops event``: multiply-adds of the event-driven backward counted over events: every input spike
  meets the N output errors twice (dW and ds_in), plus the T N reverse scan;
- ``ops bptt``: two dense (B T) x M x N products plus the T N scan;
- ``event dense``: the layer's backward as implemented (native reverse scan + dense products);
- ``event sparse``: the same scan with dW and ds_in computed only at input spikes (index ops);
- ``bptt``: a linear layer + LIF with the framework's ``bptt`` backend (autograd through time).

Times are medians of repeats run round-robin in one process (shared, noisy machine); the table
reports them relative to BPTT.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Optional

import torch

from exodus_lightning.algorithms.event_driven import EventDrivenSNN
from exodus_lightning.functional import lif
from exodus_lightning.ops.event import srm_backward
from exodus_lightning.neuron_parameters import LIFParameters

RATES = (0.01, 0.03, 0.1, 0.3)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _sparse_event_backward(x: torch.Tensor, w: torch.Tensor, saved: tuple, grad: torch.Tensor, cfg) -> None:
    """dW and ds_in from the reverse scan, touching only the input spikes (nnz x N each)."""
    spikes, du, dug = saved
    am, as_, ag, kappa = cfg.op_args()
    e_w, e_in = srm_backward(grad, spikes, du, dug, am, as_, ag, kappa, 0.0)
    B, T, M = x.shape
    N = w.shape[0]
    bt, j = (x.reshape(B * T, M) != 0).nonzero(as_tuple=True)
    ew = e_w.reshape(B * T, N)[bt]                                  # nnz x N
    dW = torch.zeros(M, N, dtype=x.dtype).index_add_(0, j, ew)      # (dL/dW)^T
    ds = (e_in.reshape(B * T, N)[bt] * w.t()[j]).sum(1)             # one value per input spike
    del dW, ds


def run(B: int, T: int, M: int, N: int, rates: tuple[float, ...], repeats: int) -> list[dict]:
    rows = []
    for alpha in rates:
        torch.manual_seed(0)
        x = (torch.rand(B, T, M) < alpha).float()
        net = EventDrivenSNN(f"{M}-{N}l", tau_mem=8.0, tau_syn=4.0, tau_grad=3.0)
        layer = net.layers[0]
        net.calibrate(x, max(alpha * T, 0.5))
        w = layer.weight().detach()
        cfg = layer.cfg
        with torch.no_grad():
            out = layer(x)
        beta = out.mean().item()
        grad = torch.randn(B, T, N)
        # saved forward state for the sparse variant
        from exodus_lightning.ops.event import srm_forward
        am, as_, ag, kappa = cfg.op_args()
        s, du, dug, _ = srm_forward(x @ w.t(), am, as_, ag, kappa, cfg.theta, False)
        xg = x.clone().requires_grad_(True)
        lin = torch.nn.Linear(M, N, bias=False)

        def event_dense() -> None:
            xg.grad = None
            layer.zero_grad(set_to_none=True)
            y = layer(xg)
            y.backward(grad)

        def event_dense_fwd() -> None:
            with torch.no_grad():
                layer(x)

        def event_sparse() -> None:
            _sparse_event_backward(x, w, (s, du, dug), grad, cfg)

        def bptt() -> None:
            xg.grad = None
            lin.zero_grad(set_to_none=True)
            y = lif(lin(xg), LIFParameters(tau_mem=8.0), backend="bptt")
            y.backward(grad)

        def bptt_fwd() -> None:
            with torch.no_grad():
                lif(lin(x), LIFParameters(tau_mem=8.0), backend="bptt")

        fns = {"event_dense": event_dense, "event_dense_fwd": event_dense_fwd, "event_sparse": event_sparse,
               "bptt": bptt, "bptt_fwd": bptt_fwd}
        times: dict[str, list[float]] = {k: [] for k in fns}
        for fn in fns.values():
            fn()  # warm-up
        for _ in range(repeats):
            for k, fn in fns.items():
                times[k].append(_timed(fn))
        med = {k: statistics.median(v) for k, v in times.items()}
        nnz = int((x != 0).sum())
        rows.append(dict(
            alpha=alpha, beta=beta,
            ops_event=2 * nnz * N + B * T * N, ops_bptt=2 * B * T * M * N + B * T * N,
            t_event_dense=max(med["event_dense"] - med["event_dense_fwd"], 1e-9),
            t_event_sparse=med["event_sparse"],
            t_bptt=max(med["bptt"] - med["bptt_fwd"], 1e-9),
        ))
    return rows


def report(rows: list[dict], shape: tuple[int, int, int, int]) -> str:
    B, T, M, N = shape
    lines = [f"event-driven backward vs BPTT, one layer B={B} T={T} M={M} N={N} (CPU, float32); times are "
             "backward only (forward+backward minus forward), relative to BPTT",
             f"{'alpha':>6} {'beta':>6} {'ops event':>12} {'ops bptt':>12} {'ops ratio':>9} "
             f"{'bptt ms':>8} {'event dense':>11} {'event sparse':>12}"]
    for r in rows:
        lines.append(
            f"{r['alpha']:>6.2f} {r['beta']:>6.3f} {r['ops_event']:>12.3g} {r['ops_bptt']:>12.3g} "
            f"{r['ops_event'] / r['ops_bptt']:>9.3f} {1e3 * r['t_bptt']:>8.1f} "
            f"{r['t_event_dense'] / r['t_bptt']:>11.3f} {r['t_event_sparse'] / r['t_bptt']:>12.3f}")
    return "\n".join(lines)


def bench_event(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench event``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench event", description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="16,100,512,512", metavar="B,T,M,N", help="layer shape (default 16,100,512,512)")
    p.add_argument("--rates", default=",".join(str(r) for r in RATES), help="input firing rates, comma separated")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    args = p.parse_args(argv)
    try:
        shape = tuple(int(v) for v in args.shape.split(","))
        rates = tuple(float(v) for v in args.rates.split(","))
    except ValueError:
        p.error(f"--shape must be B,T,M,N integers and --rates floats, got {args.shape!r}, {args.rates!r}")
    if len(shape) != 4 or min(shape) < 1:
        p.error(f"--shape must be four positive integers B,T,M,N, got {args.shape!r}")
    if not rates or not all(0 < r <= 1 for r in rates):
        p.error(f"--rates must lie in (0, 1], got {args.rates!r}")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    rows = run(*shape, rates=rates, repeats=args.repeats)
    print(report(rows, shape))
    return 0


if __name__ == "__main__":
    raise SystemExit(bench_event())
