"""``exodus-lightning bench ottt``: peak memory held by autograd for one training step of the same
network trained with OTTT (online, one backward per time step), BPTT (autograd through a time loop)
and EXODUS (native whole-sequence kernels), at T in {10, 50, 200, 1000}.

CPU: the peak over the step of the bytes of distinct tensor storages that autograd holds saved for
backward (``torch.autograd.graph.saved_tensors_hooks``; a storage counts while any graph node still
references it; the parameters and the input are excluded, they exist without autograd).  CUDA: the peak of
``torch.cuda.max_memory_allocated`` above the memory allocated before the step (parameters, input).
OTTT's graph lives for one time step, so its peak must not depend on T (paper §4.3, Fig. 3).
All methods run in one process, so the ratios share the machine's state.
"""

from __future__ import annotations

import argparse
import time
import weakref
from typing import Callable, Optional

import torch
from torch import Tensor, nn

DEFAULT_T = (10, 50, 200, 1000)
METHODS = ("ottt", "bptt", "exodus")


class SavedTensorTracker:
    """Context manager measuring the bytes autograd holds saved for backward, over time.

    Every tensor that autograd saves goes through ``pack``; its storage is counted from then until
    the last graph node that saved it is freed (tracked with a weak reference to the packed handle).
    ``peak`` is the largest number of bytes held at once, ``current`` the bytes still held.
    Storages in ``exclude`` (e.g. the parameters') are not counted.
    """

    def __init__(self, exclude: Optional[list[Tensor]] = None) -> None:
        self._exclude = {t.untyped_storage().data_ptr() for t in (exclude or [])}
        self._refs: dict[int, int] = {}
        self._bytes: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self._hooks: Optional[torch.autograd.graph.saved_tensors_hooks] = None

    class _Handle:
        __slots__ = ("tensor", "__weakref__")

        def __init__(self, tensor: Tensor) -> None:
            self.tensor = tensor

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.current -= self._bytes.pop(key)

    def _pack(self, t: Tensor) -> object:
        st = t.untyped_storage()
        key = st.data_ptr()
        if key in self._exclude or st.nbytes() == 0:
            return t
        if key not in self._refs:
            self._refs[key] = 0
            self._bytes[key] = st.nbytes()
            self.current += st.nbytes()
            self.peak = max(self.peak, self.current)
        self._refs[key] += 1
        handle = SavedTensorTracker._Handle(t)
        weakref.finalize(handle, self._release, key)
        return handle

    @staticmethod
    def _unpack(h: object) -> Tensor:
        return h.tensor if isinstance(h, SavedTensorTracker._Handle) else h  # type: ignore[return-value]

    def __enter__(self) -> "SavedTensorTracker":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._hooks is not None
        self._hooks.__exit__(*exc)


def make_step(method: str, architecture: str, num_classes: int, tau_mem: float, device: torch.device,
              seed: int = 0) -> tuple[nn.Module, Callable[[Tensor, Tensor], None]]:
    """The network and a function running one training step (forward + backward, no optimiser
    update) of ``method`` on ``(x (B, T, F), y)``."""
    torch.manual_seed(seed)
    if method == "ottt":
        from exodus_lightning.models.online import OnlineSpikingClassifier

        model = OnlineSpikingClassifier(architecture, num_classes, algorithm="ottt_a", tau_mem=tau_mem).to(device)

        def step(x: Tensor, y: Tensor) -> None:
            model.accumulate_gradients(x, y)

        return model, step
    if method not in ("bptt", "exodus"):
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    from exodus_lightning.losses import ce_mse_mix
    from exodus_lightning.nn import LIF, build_network

    net = build_network(architecture, neuron=LIF(tau_mem=tau_mem, decay="euler", backend=method), bias=True).to(device)

    def step(x: Tensor, y: Tensor) -> None:
        ce_mse_mix(net(x), y, 0.05).backward()

    return net, step


def measure(method: str, T: int, batch: int, architecture: str, num_classes: int, tau_mem: float,
            device: torch.device) -> tuple[int, float]:
    """``(peak bytes, seconds)`` of one training step (module docstring)."""
    from exodus_lightning.nn import parse_input

    model, step = make_step(method, architecture, num_classes, tau_mem, device)
    features = parse_input(architecture, architecture.split("-")[0])
    g = torch.Generator().manual_seed(1)
    x = (torch.rand((batch, T, *features), generator=g) < 0.2).float().to(device)
    y = torch.randint(0, num_classes, (batch,), generator=g).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        step(x, y)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base, time.perf_counter() - t0
    # The input and the parameters exist without autograd; a saved slice x[:, t] would otherwise
    # count as the whole input storage (it is a view of it).
    tracker = SavedTensorTracker(exclude=[x, *model.parameters()])
    t0 = time.perf_counter()
    with tracker:
        step(x, y)
    return tracker.peak, time.perf_counter() - t0


def run(Ts: list[int], batch: int, architecture: str, num_classes: int, tau_mem: float, device: torch.device,
        methods: tuple[str, ...] = METHODS) -> list[dict]:
    rows = []
    for T in Ts:
        for m in methods:
            peak, secs = measure(m, T, batch, architecture, num_classes, tau_mem, device)
            rows.append({"T": T, "method": m, "peak": peak, "time": secs})
    return rows


def report(rows: list[dict], architecture: str, batch: int, device: torch.device) -> str:
    what = "max allocated above baseline" if device.type == "cuda" else "peak saved-tensor bytes (params, input excluded)"
    by_T: dict[int, dict[str, dict]] = {}
    for r in rows:
        by_T.setdefault(r["T"], {})[r["method"]] = r
    T0 = min(by_T)
    own = f"x own T={T0}"
    lines = [f"network {architecture}, batch {batch}, device {device}, float32; memory = {what}",
             f"{'T':>6} {'method':>7} {'peak MiB':>10} {'x OTTT':>8} {own:>12} {'step s':>8}"]
    for T, per in by_T.items():
        ref = per.get("ottt", {}).get("peak") or 0
        for m, r in per.items():
            base = by_T[T0].get(m, {}).get("peak") or 0
            rel = f"{r['peak'] / ref:8.2f}" if ref else f"{'-':>8}"
            grow = f"{r['peak'] / base:12.2f}" if base else f"{'-':>12}"
            lines.append(f"{T:>6} {m:>7} {r['peak'] / 2**20:10.3f} {rel} {grow} {r['time']:8.3f}")
    if "ottt" in by_T[T0] and len(by_T) > 1:
        Tmax = max(by_T)
        lines.append(f"OTTT peak at T={Tmax} / T={T0}: {by_T[Tmax]['ottt']['peak'] / by_T[T0]['ottt']['peak']:.3f} "
                     "(flat in T = 1.0)")
    return "\n".join(lines)


def bench_ottt(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench ottt``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench ottt", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--T", type=int, action="append", default=None, help="time steps (repeatable); default 10 50 200 1000")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--arch", default="100-256l-256l-20l", help="architecture string (F input)")
    p.add_argument("--tau-mem", type=float, default=2.0,
                   help="membrane time constant in steps of every method's neurons (Euler decay 1 - 1/tau, as OTTT)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of ottt,bptt,exodus")
    args = p.parse_args(argv)
    Ts = args.T or list(DEFAULT_T)
    if min(Ts) < 1 or args.batch < 1:
        p.error("--T and --batch must be >= 1")
    if not args.tau_mem >= 1.0:
        p.error(f"--tau-mem must be >= 1 (the Euler decay 1 - 1/tau lies in [0, 1]), got {args.tau_mem}")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods or any(m not in METHODS for m in methods):
        p.error(f"--methods must be a comma-separated subset of {','.join(METHODS)}, got {args.methods!r}")
    from exodus_lightning.nn import parse_input

    try:
        features = parse_input(args.arch, args.arch.split("-")[0])
    except ValueError as e:
        p.error(str(e))
    if len(features) != 1:
        p.error("--arch must start with a feature size F (e.g. 100-256l-20l)")
    num_classes = int(args.arch.split("-")[-1].rstrip("l"))
    device = torch.device(args.device)
    rows = run(sorted(Ts), args.batch, args.arch, num_classes, args.tau_mem, device, methods)
    print(report(rows, args.arch, args.batch, device))
    return 0
