"""``exodus-lightning bench lif``: forward+backward time and bytes saved for backward of the LIF
layer with the ``exodus``, ``slayer`` and ``bptt`` backends, and the memory-traffic floor.  The
row ``exodus+check`` is EXODUS with the NaN/Inf check of training on (the scan's flag,
:mod:`exodus_lightning.nonfinite`): its ``x exodus`` is the check's cost.

The floor is the time to move 24 bytes per element at the machine's measured copy bandwidth:
x read (4), spikes and v written (8) in the forward; grad read, v read, grad written (12) in the
backward (float32).  Backends are timed round-robin in one run, so the ratios share the machine's
state (this machine is shared and noisy); the median of the repeats is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Optional

import torch

from exodus_lightning.functional import lif
from exodus_lightning.nonfinite import recording_nonfinite
from exodus_lightning.neuron_parameters import LIFParameters

SHAPES = [(32, 500, 256), (16, 500, 4096)]
BACKENDS = ("exodus", "slayer", "bptt")
CHECKED = "exodus+check"  # EXODUS with the non-finite flag, as in a training step of the LightningModules
BYTES_PER_ELEMENT_FLOOR = 24


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def copy_bandwidth(device: torch.device, n_bytes: int = 256 << 20, repeats: int = 7) -> float:
    """Bytes per second moved by ``dst.copy_(src)`` (read + write counted), median of repeats."""
    src = torch.rand(n_bytes // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = [_time(lambda: dst.copy_(src), device) for _ in range(repeats)]
    return 2 * n_bytes / statistics.median(times)


def saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of distinct storages that autograd saves for backward while ``fn`` runs."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def _case(shape: tuple[int, int, int], device: torch.device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = (torch.rand(shape, generator=g) * 0.3).to(device).requires_grad_()
    grad = torch.randn(shape, generator=g).to(device)
    return x, grad


def run(shapes: list[tuple[int, int, int]], device: torch.device, repeats: int, bptt_repeats: int,
        tau_mem: float = 20.0) -> list[dict]:
    """Measure every backend on every shape; returns one row per (shape, backend)."""
    rows = []
    for shape in shapes:
        x, grad = _case(shape, device)
        tau_trained = torch.full(shape[2:], tau_mem, device=device, requires_grad=True)

        flag = torch.zeros(1, dtype=torch.int32, device=device)

        def call(backend: str, tau) -> torch.Tensor:
            if backend != CHECKED:
                return lif(x, LIFParameters(tau_mem=tau), backend=backend)
            with recording_nonfinite(flag):
                return lif(x, LIFParameters(tau_mem=tau), backend="exodus")

        def step(backend: str) -> None:
            torch.autograd.grad(call(backend, tau_mem), x, grad)

        timed = (*BACKENDS, CHECKED)
        times: dict[str, list[float]] = {b: [] for b in timed}
        for b in timed:  # warm-up (allocator, OpenMP pool, lazy library load)
            step(b)
        for r in range(repeats):
            for b in timed:
                if b == "bptt" and r >= bptt_repeats:
                    continue
                times[b].append(_time(lambda: step(b), device))
        if flag.item() != 0:
            raise RuntimeError("bench lif: the non-finite flag is set for finite input")
        elements = shape[0] * shape[1] * shape[2]
        for b in timed:
            rows.append({
                "shape": shape, "backend": b, "time": statistics.median(times[b]), "elements": elements,
                "saved": saved_bytes(lambda: call(b, tau_mem)),
                "saved_train_tau": saved_bytes(lambda: call(b, tau_trained)),
            })
    return rows


def report(rows: list[dict], bandwidth: float, device: torch.device) -> str:
    lines = [f"device {device}, float32, copy bandwidth {bandwidth / 1e9:.2f} GB/s "
             f"(floor = {BYTES_PER_ELEMENT_FLOOR} B/element / bandwidth), torch threads {torch.get_num_threads()}"]
    header = (f"{'(B, T, N)':>18} {'backend':>12} {'fwd+bwd ms':>11} {'x exodus':>9} {'x floor':>8} "
              f"{'saved (BTN tensors)':>20} {'saved, tau trained':>19}")
    lines.append(header)
    by_shape: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by_shape.setdefault(r["shape"], {})[r["backend"]] = r
    for shape, per in by_shape.items():
        ex = per["exodus"]
        floor = BYTES_PER_ELEMENT_FLOOR * ex["elements"] / bandwidth
        tensor_bytes = ex["elements"] * 4
        for b, r in per.items():
            lines.append(
                f"{str(shape):>18} {b:>12} {r['time'] * 1e3:11.2f} {r['time'] / ex['time']:9.2f} "
                f"{r['time'] / floor:8.2f} {r['saved'] / tensor_bytes:20.3f} {r['saved_train_tau'] / tensor_bytes:19.3f}"
            )
        lines.append(
            f"{'':>18} speed-up of exodus: {per['bptt']['time'] / ex['time']:.1f}x over bptt, "
            f"{per['slayer']['time'] / ex['time']:.2f}x over slayer; exodus / floor = {ex['time'] / floor:.2f} "
            f"(floor {floor * 1e3:.2f} ms); the NaN/Inf check costs x{per[CHECKED]['time'] / ex['time']:.3f}"
        )
    return "\n".join(lines)


def bench_lif(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench lif``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench lif", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats of exodus and slayer (median)")
    p.add_argument("--bptt-repeats", type=int, default=3, help="timed repeats of bptt (it is slow)")
    p.add_argument("--shape", action="append", default=None, metavar="B,T,N",
                   help="shape to run (repeatable); default: 32,500,256 and 16,500,4096")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.bptt_repeats < 1:
        p.error("--repeats and --bptt-repeats must be >= 1")
    shapes = SHAPES
    if args.shape:
        try:
            shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape]
        except ValueError:
            p.error(f"--shape must be B,T,N integers, got {args.shape}")
        if any(len(s) != 3 or min(s) < 1 for s in shapes):
            p.error(f"--shape must be three positive integers B,T,N, got {args.shape}")
    device = torch.device(args.device)
    bandwidth = copy_bandwidth(device)
    rows = run(shapes, device, args.repeats, min(args.bptt_repeats, args.repeats))
    print(report(rows, bandwidth, device))
    return 0
