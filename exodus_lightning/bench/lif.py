"""``exodus-lightning bench lif``: forward+backward time and bytes saved for backward of the LIF
layer with the ``exodus``, ``slayer`` and ``bptt`` backends, and the memory-traffic floor.  The
row ``exodus+check`` is EXODUS with the NaN/Inf check of training on (the scan's flag,
:mod:`exodus_lightning.nonfinite`): its ``x exodus`` is the check's cost.

The floor is the time to move 24 bytes per element at the machine's measured copy bandwidth:
x read (4), spikes and v written (8) in the forward; grad read, v read, grad written (12) in the
backward (float32).  Backends are timed round-robin in one run, so the ratios share the machine's
state (this machine is shared and noisy), in a new (seeded) order every round; the median of the
repeats is reported.  The copy that
measures the bandwidth (``dst.copy_(src)`` of 256 MiB, read + write counted) is one more entry of each
shape's rounds, so the floor is measured at the same moments as the op (a copy timed once before the
run measured 41 and 77 GB/s on the same machine minutes apart).  Every call allocates
fresh outputs, as users call the op (the allocator settings of :mod:`exodus_lightning._allocator` apply).

The peer row ``spikingjelly`` (when installed) is its multi-step ``LIFNode`` (torch backend on the CPU)
with the same neuron: ``decay_input=False``, ``v_reset=None`` (subtractive reset), threshold 1 and
``tau = 1 / (1 - exp(-1 / tau_mem))``, so that its decay ``1 - 1/tau`` equals our ``exp(-1/tau_mem)``;
it gets the input in its own (T, B, N) layout, converted before timing.

``--contention`` times the EXODUS op with 1 and with 2 threads while a busy co-runner process spins on
one core (pinned there), interleaved in one run, and prints the ratio 2-thread / 1-thread (the work is
distributed dynamically, so a descheduled thread should never make 2 threads slower than 1).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Callable, Optional

import torch

from exodus_lightning.functional import lif
from exodus_lightning.nonfinite import recording_nonfinite
from exodus_lightning.neuron_parameters import LIFParameters

SHAPES = [(32, 500, 256), (16, 500, 1024), (16, 2048, 1024), (16, 500, 4096)]
BACKENDS = ("exodus", "slayer", "bptt")
PEER = "spikingjelly"
CHECKED = "exodus+check"  # EXODUS with the non-finite flag, as in a training step of the LightningModules
BYTES_PER_ELEMENT_FLOOR = 24
COPY_BYTES = 256 << 20  # the bandwidth copy: beyond any last-level cache
COPY = "copy"  # its entry in the rounds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


class _Copy:
    """``dst.copy_(src)`` of ``n_bytes`` (warmed up once): the copy whose bandwidth defines the floor."""

    def __init__(self, device: torch.device, n_bytes: int):
        self.device = device
        self.src = torch.rand(n_bytes // 4, device=device)
        self.dst = torch.empty_like(self.src)
        self.dst.copy_(self.src)

    def time(self) -> float:
        return _time(lambda: self.dst.copy_(self.src), self.device)

    def bandwidth(self, times: list[float]) -> float:
        """Bytes per second, read + write counted, over the median of ``times``."""
        return 2 * self.src.numel() * self.src.element_size() / statistics.median(times)


def copy_bandwidth(device: torch.device, n_bytes: int = 256 << 20, repeats: int = 7) -> float:
    """Bytes per second moved by ``dst.copy_(src)`` (read + write counted), median of repeats."""
    copy = _Copy(device, n_bytes)
    return copy.bandwidth([copy.time() for _ in range(repeats)])


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


def spikingjelly_step(x: torch.Tensor, grad: torch.Tensor, tau_mem: float) -> Optional[Callable[[], None]]:
    """Forward+backward of spikingjelly's multi-step LIFNode with our neuron (module docstring) on
    ``x`` and ``grad`` in its (T, B, N) layout, or None when spikingjelly is not installed."""
    try:
        from spikingjelly.activation_based import functional as sjf
        from spikingjelly.activation_based import neuron as sjn
    except ImportError:
        return None
    tau_sj = 1.0 / (1.0 - math.exp(-1.0 / tau_mem))
    node = sjn.LIFNode(tau=tau_sj, decay_input=False, v_threshold=1.0, v_reset=None, step_mode="m").to(x.device)
    x_tbn = x.detach().transpose(0, 1).contiguous().requires_grad_()
    grad_tbn = grad.transpose(0, 1).contiguous()

    def step() -> None:
        sjf.reset_net(node)
        torch.autograd.grad(node(x_tbn), x_tbn, grad_tbn)

    return step


def run(shapes: list[tuple[int, int, int]], device: torch.device, repeats: int, bptt_repeats: int,
        tau_mem: float = 20.0, peer: bool = True) -> list[dict]:
    """Measure every backend (and the peer, when installed) on every shape; one row per (shape, backend),
    with the copy bandwidth measured in the same rounds."""
    rows = []
    copy = _Copy(device, COPY_BYTES)
    for shape in shapes:
        x, grad = _case(shape, device)
        tau_trained = torch.full(shape[2:], tau_mem, device=device, requires_grad=True)
        peer_step = spikingjelly_step(x, grad, tau_mem) if peer else None

        flag = torch.zeros(1, dtype=torch.int32, device=device)

        def call(backend: str, tau) -> torch.Tensor:
            if backend != CHECKED:
                return lif(x, LIFParameters(tau_mem=tau), backend=backend)
            with recording_nonfinite(flag):
                return lif(x, LIFParameters(tau_mem=tau), backend="exodus")

        def step(backend: str) -> None:
            if backend == PEER:
                peer_step()
            else:
                torch.autograd.grad(call(backend, tau_mem), x, grad)

        timed = (*BACKENDS, CHECKED) + ((PEER,) if peer_step is not None else ())
        times: dict[str, list[float]] = {b: [] for b in timed}
        copy_times: list[float] = []
        for b in timed:  # warm-up (allocator, OpenMP pool, lazy library load)
            step(b)
        entries = [*timed, COPY]
        order = random.Random(0)
        for r in range(repeats):
            # a new order every round (seeded), so that no entry always follows the same one: what ran
            # before, a 256 MiB copy or a cache-sized op, changes what is left in the cache
            for b in order.sample(entries, len(entries)):
                if b == COPY:
                    copy_times.append(copy.time())
                elif b != "bptt" or r < bptt_repeats:
                    times[b].append(_time(lambda: step(b), device))
        bandwidth = copy.bandwidth(copy_times)
        if flag.item() != 0:
            raise RuntimeError("bench lif: the non-finite flag is set for finite input")
        elements = shape[0] * shape[1] * shape[2]
        for b in timed:
            ours = b != PEER
            rows.append({
                "shape": shape, "backend": b, "time": statistics.median(times[b]), "elements": elements,
                "bandwidth": bandwidth,
                "saved": saved_bytes(lambda: call(b, tau_mem)) if ours else float("nan"),
                "saved_train_tau": saved_bytes(lambda: call(b, tau_trained)) if ours else float("nan"),
            })
    return rows


def report(rows: list[dict], device: torch.device) -> str:
    from exodus_lightning import _allocator

    lines = [f"device {device}, float32, floor = {BYTES_PER_ELEMENT_FLOOR} B/element / copy bandwidth (a "
             f"{COPY_BYTES >> 20} MiB copy timed in each shape's rounds), torch threads {torch.get_num_threads()}",
             f"allocator: {_allocator.status}"]
    header = (f"{'(B, T, N)':>18} {'backend':>12} {'fwd+bwd ms':>11} {'x exodus':>9} {'x floor':>8} "
              f"{'saved (BTN tensors)':>20} {'saved, tau trained':>19}")
    lines.append(header)
    by_shape: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by_shape.setdefault(r["shape"], {})[r["backend"]] = r
    for shape, per in by_shape.items():
        ex = per["exodus"]
        floor = BYTES_PER_ELEMENT_FLOOR * ex["elements"] / ex["bandwidth"]
        tensor_bytes = ex["elements"] * 4
        for b, r in per.items():
            lines.append(
                f"{str(shape):>18} {b:>12} {r['time'] * 1e3:11.2f} {r['time'] / ex['time']:9.2f} "
                f"{r['time'] / floor:8.2f} {r['saved'] / tensor_bytes:20.3f} {r['saved_train_tau'] / tensor_bytes:19.3f}"
            )
        lines.append(
            f"{'':>18} speed-up of exodus: {per['bptt']['time'] / ex['time']:.1f}x over bptt, "
            f"{per['slayer']['time'] / ex['time']:.2f}x over slayer; exodus / floor = {ex['time'] / floor:.2f} "
            f"(floor {floor * 1e3:.2f} ms at {ex['bandwidth'] / 1e9:.1f} GB/s); the NaN/Inf check costs "
            f"x{per[CHECKED]['time'] / ex['time']:.3f}"
        )
        peer = (f"{PEER} / exodus = {per[PEER]['time'] / ex['time']:.2f}" if PEER in per
                else f"{PEER} not installed (pip install spikingjelly)")
        lines.append(f"{'':>18} ratios: exodus / floor = {ex['time'] / floor:.2f} (target <= 2), {peer} (target >= 6)")
    return "\n".join(lines)


_SPIN = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


def contention(shape: tuple[int, int, int], repeats: int, tau_mem: float = 20.0) -> str:
    """1-thread vs 2-thread EXODUS forward+backward, without and then with a busy co-runner process
    pinned to one core; rounds interleave the thread counts.  Returns the report's lines."""
    device = torch.device("cpu")
    x, grad = _case(shape, device)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    before = torch.get_num_threads()

    def step() -> None:
        torch.autograd.grad(lif(x, LIFParameters(tau_mem=tau_mem)), x, grad)

    def measure() -> dict[int, list[float]]:
        times: dict[int, list[float]] = {1: [], 2: []}
        for n in (1, 2):
            torch.set_num_threads(n)
            step()  # warm-up of this pool size
        for _ in range(repeats):
            for n in (1, 2):
                torch.set_num_threads(n)
                times[n].append(_time(step, device))
        return times

    try:
        quiet = measure()
        spinner = subprocess.Popen([sys.executable, "-c", _SPIN, str(cores[-1])])
        try:
            time.sleep(0.2)  # the co-runner is spinning
            busy = measure()
        finally:
            spinner.kill()
            spinner.wait()
    finally:
        torch.set_num_threads(before)
    lines = [f"contention: {shape}, EXODUS forward+backward, {repeats} interleaved rounds, co-runner pinned to core "
             f"{cores[-1]} of {len(cores)}",
             f"{'':>22} {'1 thread ms':>12} {'2 threads ms':>13} {'2 / 1 (median)':>15} {'2 / 1 (max)':>12}"]
    for name, t in (("quiet", quiet), ("busy co-runner", busy)):
        m1, m2 = statistics.median(t[1]), statistics.median(t[2])
        lines.append(f"{name:>22} {m1 * 1e3:12.2f} {m2 * 1e3:13.2f} {m2 / m1:15.2f} {max(t[2]) / max(t[1]):12.2f}")
    lines.append(f"{'':>22} target: 2 / 1 <= 1 with the busy co-runner")
    return "\n".join(lines)


def bench_lif(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench lif``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench lif", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats of exodus and slayer (median)")
    p.add_argument("--bptt-repeats", type=int, default=3, help="timed repeats of bptt (it is slow)")
    p.add_argument("--shape", action="append", default=None, metavar="B,T,N",
                   help="shape to run (repeatable); default: " + ", ".join(",".join(map(str, s)) for s in SHAPES))
    p.add_argument("--no-peer", action="store_true", help=f"leave out the {PEER} row even when it is installed")
    p.add_argument("--contention", action="store_true",
                   help="instead: 1 vs 2 threads with a busy co-runner on one core (CPU; the first --shape, "
                        "default 32,500,256)")
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
    if args.contention:
        if device.type != "cpu":
            p.error("--contention measures CPU threads: use --device cpu")
        print(contention(tuple(shapes[0]) if args.shape else SHAPES[0], max(args.repeats, 3)))
        return 0
    rows = run(shapes, device, args.repeats, min(args.bptt_repeats, args.repeats), peer=not args.no_peer)
    print(report(rows, device))
    return 0
