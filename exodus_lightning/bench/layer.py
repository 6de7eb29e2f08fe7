"""``exodus-lightning bench layer``: the Open Neuromorphic layer benchmark, done carefully.

Protocol (open-neuromorphic.org "SNN library benchmarks"): one ``Linear(n, n)`` followed by one
LIF layer (tau = 10 steps, threshold 1), batch 16, T = 500, float32, ``loss = output.sum()``;
n in {4096, 8192, 16384} on a GPU.  On a CPU one 16384-wide Linear over 8000 rows is ~4 TFLOP per
iteration, so the CPU default is n <= 4096.  A ``lif`` variant times the neuron alone (input
straight into the LIF layer), where the implementations actually differ.

Unlike the original harness: forward and backward are timed separately with a synchronisation
(CUDA) around each, after a warm-up; every row is timed round-robin in the same process on the
same input values (each library gets them in its own layout, converted before timing), and the
median of the repeats is reported with ratios against our ``exodus`` row.  Memory: on CUDA the
peak ``torch.cuda.max_memory_allocated`` of one forward+backward (absolute, as the original);
on CPU the bytes autograd saves for backward (distinct storages, exact) and the peak RSS increase
during one forward+backward (sampled every ~1 ms, approximate).

Rows: our ``exodus`` / ``slayer`` / ``bptt`` backends and, when installed, snntorch (``Leaky``,
Python loop), norse (``LIFBoxCell``, Python loop), sinabs (``layers.LIF``, Python loop),
sinabs-exodus (CUDA only) and spikingjelly (``LIFNode``, multi-step) with each of its backends:
``spikingjelly`` (torch), ``spikingjelly-cupy`` and ``spikingjelly-triton`` (CUDA only).  A missing package gives a row with the reason.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from exodus_lightning.bench import _report
from exodus_lightning.functional import lif
from exodus_lightning.neuron_parameters import LIFParameters

TAU = 10.0
THRESHOLD = 1.0
OURS = ("exodus", "slayer", "bptt")
# spikingjelly's LIFNode once per backend: row name -> backend (cupy and triton on CUDA only)
SPIKINGJELLY = {"spikingjelly": "torch", "spikingjelly-cupy": "cupy", "spikingjelly-triton": "triton"}
PEERS = ("snntorch", "norse", "sinabs", "sinabs-exodus", *SPIKINGJELLY)
ROWS = OURS + PEERS
GPU_SIZES = (4096, 8192, 16384)
CPU_SIZES = (1024, 2048, 4096)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------- implementations


@dataclass
class Impl:
    """One row: ``neuron(x) -> spikes`` in the layout ``layout`` ("btn" or "tbn")."""

    name: str
    layout: str = "btn"
    neuron: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    skip: Optional[str] = None
    note: str = ""
    version: Optional[str] = None
    modules: list = field(default_factory=list)


def _version(pkg: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(pkg)
    except Exception:  # noqa: BLE001
        return None


def _missing(pkg: str) -> Optional[str]:
    if importlib.util.find_spec(pkg) is None:
        return f"{pkg} not installed (pip install {pkg}, keeping torch pinned)"
    return None


def _spikingjelly_backend(node: nn.Module, backend: str) -> Callable[[], None]:
    """What makes ``node`` run on ``backend`` at the next call.  spikingjelly <= 0.0.0.0.14 chooses per
    node (``node.backend``, torch or cupy); 2.x chooses per process among its CUDA implementations (cuda,
    triton, torch; ``SJ_LIF_CUDA_IMPLEMENTATION``, read once), so the row sets that choice before each
    call (rows run one after the other, each forward with its backward).  Raises when the backend is
    not there (the row is skipped with the reason)."""
    if hasattr(node, "supported_backends"):
        if backend not in node.supported_backends:
            raise RuntimeError(f"spikingjelly {_version('spikingjelly')} LIFNode has no {backend} backend "
                               f"(it has {', '.join(node.supported_backends)})")
        node.backend = backend
        return lambda: None
    from spikingjelly._ops.lif import _selection

    if backend not in ("torch", "triton", "cuda"):
        raise RuntimeError(f"spikingjelly {_version('spikingjelly')} has no {backend} backend "
                           f"(its CUDA implementations: cuda, triton, torch)")

    def select() -> None:
        if _selection._requested != backend:
            _selection._requested = backend
            _selection._selections.clear()

    return select


def make_impl(name: str, n: int, device: torch.device) -> Impl:
    """Build one row's neuron for n features on ``device``; never raises (a failure is a skip)."""
    try:
        return _make_impl(name, n, device)
    except Exception as e:  # noqa: BLE001 - a peer that fails to build is reported, not fatal
        return Impl(name, skip=f"failed to build: {type(e).__name__}: {e}"[:200])


def _make_impl(name: str, n: int, device: torch.device) -> Impl:
    if name in OURS:
        return Impl(name, "btn", lambda x, b=name: lif(x, LIFParameters(tau_mem=TAU, threshold=THRESHOLD), backend=b),
                    note={"exodus": "native scan, exact gradient", "slayer": "native scan, reset ignored in gradient",
                          "bptt": "PyTorch loop, autograd"}[name], version="this package")
    if name == "snntorch":
        if (why := _missing("snntorch")):
            return Impl(name, skip=why)
        import snntorch as snn

        cell = snn.Leaky(beta=math.exp(-1 / TAU), threshold=THRESHOLD, reset_mechanism="subtract").to(device)

        def f(x: torch.Tensor) -> torch.Tensor:
            mem = cell.init_leaky()
            out = []
            for t in range(x.shape[0]):
                spk, mem = cell(x[t], mem)
                out.append(spk)
            return torch.stack(out)

        return Impl(name, "tbn", f, note="snn.Leaky, Python loop over T, atan surrogate",
                    version=_version("snntorch"), modules=[cell])
    if name == "norse":
        if (why := _missing("norse")):
            return Impl(name, skip=why)
        import norse.torch as nt

        # dt = 1 ms, tau_mem_inv = 100/s: decay 1 - dt/tau = 0.9 per step, tau = 10 steps (Euler).
        cell = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(1000.0 / TAU),
                                                 v_th=torch.tensor(THRESHOLD))).to(device)

        def f(x: torch.Tensor) -> torch.Tensor:
            state, out = None, []
            for t in range(x.shape[0]):
                z, state = cell(x[t], state)
                out.append(z)
            return torch.stack(out)

        return Impl(name, "tbn", f, note="LIFBoxCell, Python loop over T, reset to 0, input x dt/tau",
                    version=_version("norse"), modules=[cell])
    if name == "sinabs":
        if (why := _missing("sinabs")):
            return Impl(name, skip=why)
        import sinabs.layers as sl
        from sinabs.activation import SingleSpike

        layer = sl.LIF(tau_mem=TAU, spike_threshold=THRESHOLD, spike_fn=SingleSpike, norm_input=False).to(device)

        def f(x: torch.Tensor) -> torch.Tensor:
            layer.reset_states()
            return layer(x)

        return Impl(name, "btn", f, note="layers.LIF (pure PyTorch loop), norm_input=False", version=_version("sinabs"),
                    modules=[layer])
    if name == "sinabs-exodus":
        spec = importlib.util.find_spec("sinabs") and (importlib.util.find_spec("sinabs.exodus")
                                                        or importlib.util.find_spec("sinabs_exodus"))
        if not spec:
            return Impl(name, skip="sinabs-exodus not installed (CUDA-only extension, needs a CUDA toolkit to build)")
        if device.type != "cuda":
            return Impl(name, skip="sinabs-exodus runs on CUDA only")
        from sinabs.exodus.layers import LIF as ExoLIF

        layer = ExoLIF(tau_mem=TAU, spike_threshold=THRESHOLD, norm_input=False).to(device)

        def f(x: torch.Tensor) -> torch.Tensor:
            layer.reset_states()
            return layer(x)

        return Impl(name, "btn", f, note="sinabs.exodus.layers.LIF (CUDA)", version=_version("sinabs-exodus"),
                    modules=[layer])
    if name in SPIKINGJELLY:
        backend = SPIKINGJELLY[name]
        if (why := _missing("spikingjelly")):
            return Impl(name, skip=why)
        if backend != "torch" and device.type != "cuda":
            return Impl(name, skip=f"spikingjelly's {backend} backend runs on CUDA only")
        from spikingjelly.activation_based import functional as sjf
        from spikingjelly.activation_based import neuron as sjn

        node = sjn.LIFNode(tau=TAU, decay_input=False, v_threshold=THRESHOLD, v_reset=None, step_mode="m").to(device)
        select = _spikingjelly_backend(node, backend)

        def f(x: torch.Tensor) -> torch.Tensor:
            select()
            sjf.reset_net(node)
            return node(x)

        return Impl(name, "tbn", f, note=f"LIFNode multi-step, {backend} backend, soft reset",
                    version=_version("spikingjelly"), modules=[node])
    raise ValueError(f"unknown row {name!r}; choose from {', '.join(ROWS)}")


# ----------------------------------------------------------------------------------- measuring


_PAGE = 4096
try:
    import os as _os

    _PAGE = _os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):
    pass


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RSSPeak:
    """Peak resident set size above the level at entry, sampled by a thread every ``period`` s."""

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.peak = 0

    def __enter__(self) -> "RSSPeak":
        _trim()
        self.base = _rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.period)

    def __exit__(self, *exc) -> None:
        self.peak = max(self.peak, _rss())
        self._stop.set()
        self._t.join()

    @property
    def increase(self) -> int:
        return self.peak - self.base


@dataclass
class Case:
    """Inputs of one (variant, n, T): the same values for every row, in both layouts."""

    variant: str
    n: int
    T: int
    batch: int
    device: torch.device
    x_btn: torch.Tensor
    x_tbn: torch.Tensor
    linear: Optional[nn.Module]


def make_case(variant: str, n: int, T: int, batch: int, device: torch.device, seed: int = 0) -> Case:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, T, n, generator=g).to(device)
    linear = None
    if variant == "linear":
        torch.manual_seed(seed)
        linear = nn.Linear(n, n).to(device)
    return Case(variant, n, T, batch, device, x, x.transpose(0, 1).contiguous(), linear)


def _forward(impl: Impl, case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (input tensor that requires grad, output spikes)."""
    x = (case.x_btn if impl.layout == "btn" else case.x_tbn).detach()
    if case.linear is None:
        x = x.requires_grad_()
        return x, impl.neuron(x)
    return x, impl.neuron(case.linear(x))


def _zero(case: Case, x: torch.Tensor) -> None:
    if case.linear is not None:
        case.linear.zero_grad(set_to_none=True)
    x.grad = None


def time_once(impl: Impl, case: Case) -> tuple[float, float, float]:
    """(forward s, backward s, output spike rate) of one iteration."""
    dev = case.device
    _sync(dev)
    t0 = time.perf_counter()
    x, out = _forward(impl, case)
    _sync(dev)
    t1 = time.perf_counter()
    out.sum().backward()
    _sync(dev)
    t2 = time.perf_counter()
    rate = float(out.detach().float().mean())
    _zero(case, x)
    return t1 - t0, t2 - t1, rate


def warmup_with_memory(impl: Impl, case: Case) -> dict:
    """The untimed warm-up iteration, which also measures memory: CUDA peak allocated, bytes saved
    for backward (saved-tensor hooks) and, on CPU, the sampled peak RSS increase."""
    dev = case.device
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    mem: dict = {}
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    rss = RSSPeak() if dev.type == "cpu" else None
    if rss is not None:
        rss.__enter__()
    t0 = time.perf_counter()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            x, out = _forward(impl, case)
        out.sum().backward()
        _sync(dev)
    finally:
        if rss is not None:
            rss.__exit__(None, None, None)
    mem["warmup_s"] = time.perf_counter() - t0
    mem["saved"] = sum(storages.values())
    if rss is not None:
        mem["peak_rss"] = rss.increase
    if dev.type == "cuda":
        mem["peak_alloc"] = torch.cuda.max_memory_allocated(dev)
    _zero(case, x)
    return mem


def run_case(case: Case, rows: list[str], repeats: int, slow_repeats: Optional[int] = None) -> list[dict]:
    """Time every row round-robin on ``case``; one result dict per row (skipped rows included).

    Rows whose warm-up took more than 5x exodus's (Python loops over T) get ``slow_repeats``
    timed iterations (default: ``repeats``)."""
    impls = [make_impl(r, case.n, case.device) for r in rows]
    live = [i for i in impls if i.skip is None]
    failed: dict[str, str] = {}
    mems: dict[str, dict] = {}
    for impl in live:  # warm-up (allocator, thread pools, lazy imports, first-call compilation) + memory
        try:
            mems[impl.name] = warmup_with_memory(impl, case)
        except Exception as e:  # noqa: BLE001
            failed[impl.name] = f"failed to run: {type(e).__name__}: {e}"[:200]
    live = [i for i in live if i.name not in failed]
    times: dict[str, list[tuple[float, float]]] = {i.name: [] for i in live}
    rates: dict[str, float] = {}
    ex_warm = mems.get("exodus", {}).get("warmup_s")
    n_rep = {i.name: repeats for i in live}
    if slow_repeats is not None and ex_warm:
        for i in live:
            if mems[i.name]["warmup_s"] > 5 * ex_warm:
                n_rep[i.name] = min(repeats, slow_repeats)
    for r in range(repeats):
        for impl in live:
            if r >= n_rep[impl.name]:
                continue
            f, b, rate = time_once(impl, case)
            times[impl.name].append((f, b))
            rates[impl.name] = rate
    out = []
    for impl in impls:
        base = {"variant": case.variant, "n": case.n, "T": case.T, "batch": case.batch, "device": str(case.device),
                "row": impl.name, "version": impl.version, "note": impl.note}
        why = impl.skip or failed.get(impl.name)
        if why:
            out.append({**base, "skipped": why})
            continue
        ts = times[impl.name]
        res = {**base, "forward": statistics.median(t[0] for t in ts), "backward": statistics.median(t[1] for t in ts),
               "total": statistics.median(t[0] + t[1] for t in ts), "repeats": len(ts), "rate": rates[impl.name],
               **mems[impl.name]}
        out.append(res)
    ex = next((r for r in out if r["row"] == "exodus" and "skipped" not in r), None)
    for r in out:
        if ex is None or "skipped" in r:
            continue
        for k in ("forward", "backward", "total", "saved", "peak_rss", "peak_alloc"):
            if k in r and ex.get(k):
                r[f"{k}_x"] = r[k] / ex[k]
    return out


# ----------------------------------------------------------------------------------- report


def _ms(v) -> str:
    return "–" if v is None else f"{v * 1e3:.1f}"


def _mb(v) -> str:
    return "–" if v is None else f"{v / 2**20:.0f}"


def _x(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def table(results: list[dict], device: torch.device) -> str:
    cols = [("row", "row", ""), ("repeats", "runs", "d"), ("forward", "fwd ms", _ms), ("backward", "bwd ms", _ms), ("total", "total ms", _ms),
            ("total_x", "total × exodus", _x), ("forward_x", "fwd ×", _x), ("backward_x", "bwd ×", _x)]
    if device.type == "cuda":
        cols += [("peak_alloc", "peak alloc MB", _mb), ("peak_alloc_x", "mem ×", _x)]
    cols += [("saved", "saved for bwd MB", _mb), ("saved_x", "saved ×", _x)]
    if device.type == "cpu":
        cols += [("peak_rss", "peak RSS + MB", _mb)]
    cols += [("rate", "spike rate", lambda v: "–" if v is None else f"{v:.3f}"), ("note", "implementation / skipped", "")]
    parts = []
    keys = []
    for r in results:
        k = (r["variant"], r["n"], r["T"], r["batch"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        rs = [dict(r, note=r.get("skipped") or r["note"]) for r in results if (r["variant"], r["n"], r["T"], r["batch"]) == k]
        head = ("Linear(n,n) + LIF" if k[0] == "linear" else "LIF only") + f", n = {k[1]}, T = {k[2]}, batch {k[3]}"
        parts.append(f"**{head}**\n\n" + _report.markdown_table(rs, cols))
    return "\n\n".join(parts)


def figure(results: list[dict], title: str):
    plt = _report.pyplot()
    keys = []
    for r in results:
        k = (r["variant"], r["n"], r["T"])
        if k not in keys:
            keys.append(k)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        rs = [r for r in results if (r["variant"], r["n"], r["T"]) == k and "skipped" not in r]
        names = [r["row"] for r in rs]
        fw = [r["forward"] * 1e3 for r in rs]
        bw = [r["backward"] * 1e3 for r in rs]
        y = range(len(rs))
        colors = ["C0" if n == "exodus" else "C1" if n in OURS else "C7" for n in names]
        ax.barh(list(y), fw, color=colors, alpha=0.55, label="forward")
        ax.barh(list(y), bw, left=fw, color=colors, alpha=1.0, label="backward")
        for i, r in enumerate(rs):
            ax.text(fw[i] + bw[i], i, f" {r['total_x']:.1f}×" if r.get("total_x") else "", va="center", fontsize=8)
        ax.set_yticks(list(y))
        ax.set_yticklabels(names)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("ms per iteration (light: forward, dark: backward)")
        ax.set_title(("Linear+LIF" if k[0] == "linear" else "LIF only") + f", n={k[1]}, T={k[2]}", fontsize=9)
        ax.grid(alpha=0.3, axis="x", which="both")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def scaling_figure(scaling: list[dict], title: str):
    plt = _report.pyplot()
    axes_keys = [k for k in ("T", "n") if any(r["scan"] == k for r in scaling)]
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(5.2 * len(axes_keys), 4), squeeze=False)
    for ax, key in zip(axes[0], axes_keys):
        rs = [r for r in scaling if r["scan"] == key and "skipped" not in r]
        for j, name in enumerate(dict.fromkeys(r["row"] for r in rs)):
            rr = sorted((r for r in rs if r["row"] == name), key=lambda r: r[key])
            ax.plot([r[key] for r in rr], [r["total"] * 1e3 for r in rr], marker="o",
                    lw=2.5 if name == "exodus" else 1.2, ls="-" if name in OURS else "--", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel("forward + backward ms")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def breakdown(case: Case, repeats: int) -> str:
    """Where the time of our exodus row goes in one forward+backward of ``case``
    (:func:`exodus_lightning.bench.breakdown.profile_steps`)."""
    from exodus_lightning.bench.breakdown import profile_steps

    impl = make_impl("exodus", case.n, case.device)
    for _ in range(2):
        time_once(impl, case)
    fwd = bwd = 0.0

    def step() -> None:
        nonlocal fwd, bwd
        f, b, _ = time_once(impl, case)
        fwd, bwd = fwd + f, bwd + b

    lines = profile_steps(step, repeats)
    head = (f"breakdown of the exodus row, {case.variant} variant, n {case.n}, T {case.T}, batch {case.batch}, "
            f"{repeats} steps (profiled): forward {fwd / repeats * 1e3:.2f} ms, backward {bwd / repeats * 1e3:.2f} ms "
            f"per step")
    return "\n".join([head] + lines)


def _ints(p: argparse.ArgumentParser, s: Optional[str], flag: str) -> Optional[list[int]]:
    if s is None:
        return None
    try:
        v = [int(t) for t in s.split(",") if t.strip()]
    except ValueError:
        p.error(f"{flag} must be comma-separated integers, got {s!r}")
    if not v or min(v) < 1:
        p.error(f"{flag} must be positive integers, got {s!r}")
    return v


def bench_layer(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench layer``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench layer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true",
                   help="one size (n=1024 on CPU, 4096 on CUDA), 2 repeats: under 3 minutes on a CPU")
    p.add_argument("--n", default=None, help=f"comma-separated widths (default GPU {GPU_SIZES}, CPU {CPU_SIZES})")
    p.add_argument("--T", type=int, default=500, help="time steps (default 500)")
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--repeats", type=int, default=None, help="timed iterations per row (median; default 5, --quick 2)")
    p.add_argument("--slow-repeats", type=int, default=None,
                   help="timed iterations of rows whose warm-up took > 5x exodus's (default --repeats; --quick 1)")
    p.add_argument("--variants", default="linear,lif", help="linear (Linear+LIF, the protocol) and/or lif (LIF only)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"rows to run (default all: {','.join(ROWS)})")
    p.add_argument("--scale-T", default=None, metavar="T1,T2,...",
                   help="also a scaling curve over T (e.g. 128,256,512,1024,2048,4096) at n = --scale-at-n")
    p.add_argument("--scale-n", default=None, metavar="N1,N2,...", help="also a scaling curve over n at T = --T")
    p.add_argument("--scale-at-n", type=int, default=1024, help="n of the T scaling curve (default 1024)")
    p.add_argument("--scale-variant", choices=("lif", "linear"), default="lif", help="variant of the scaling curves")
    p.add_argument("--scale-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--out", default=None, help="directory for layer.md/.json/.png (default: print only)")
    p.add_argument("--breakdown", action="store_true",
                   help="instead: where the exodus row's time goes (GEMMs, LIF forward/backward, allocation, "
                        "page faults) for each --variants and --n, profiled over --repeats steps")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad or "exodus" not in rows:
        p.error(f"--rows must include exodus and come from {', '.join(ROWS)}; got {args.rows!r}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in ("linear", "lif") for v in variants):
        p.error(f"--variants must be linear and/or lif, got {args.variants!r}")
    sizes = _ints(p, args.n, "--n")
    if sizes is None:
        sizes = ([4096] if device.type == "cuda" else [1024]) if args.quick else list(
            GPU_SIZES if device.type == "cuda" else CPU_SIZES)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    slow_repeats = args.slow_repeats if args.slow_repeats is not None else (1 if args.quick else None)
    if repeats < 1 or args.T < 1 or args.batch < 1:
        p.error("--repeats, --T and --batch must be >= 1")
    scale_T = _ints(p, args.scale_T, "--scale-T")
    scale_n = _ints(p, args.scale_n, "--scale-n")

    if args.breakdown:
        for variant in variants:
            for n in sizes:
                print(breakdown(make_case(variant, n, args.T, args.batch, device), repeats))
        return 0

    t_start = time.perf_counter()
    results: list[dict] = []
    for variant in variants:
        for n in sizes:
            case = make_case(variant, n, args.T, args.batch, device)
            results += run_case(case, rows, repeats, slow_repeats)
            del case
            _trim()
    scaling: list[dict] = []
    for key, values in (("T", scale_T), ("n", scale_n)):
        for v in values or []:
            n, T = (args.scale_at_n, v) if key == "T" else (v, args.T)
            case = make_case(args.scale_variant, n, T, args.batch, device)
            scaling += [dict(r, scan=key) for r in run_case(case, rows, args.scale_repeats, slow_repeats)]
            del case
            _trim()
    elapsed = time.perf_counter() - t_start

    machine = _report.machine_info(device)
    text = table(results, device)
    print(f"device {device}, float32, tau {TAU:g}, threshold {THRESHOLD:g}, torch threads {torch.get_num_threads()}, "
          f"repeats {repeats} (median), {elapsed:.0f} s")
    print(text)
    sections = [text]
    figures = [("layer.png", figure(results, f"Open Neuromorphic protocol on {device}, float32, batch {args.batch}"))]
    if scaling:
        sc_cols = [("scan", "scan", ""), ("n", "n", "d"), ("T", "T", "d"), ("row", "row", ""), ("total", "fwd+bwd ms", _ms),
                   ("total_x", "× exodus", _x), ("saved", "saved MB", _mb), ("skipped", "skipped", "")]
        sc = _report.markdown_table(scaling, sc_cols)
        print(sc)
        sections += [f"**Scaling ({args.scale_variant} variant, batch {args.batch})**", sc]
        figures.append(("layer_scaling.png", scaling_figure(
            scaling, f"{'LIF only' if args.scale_variant == 'lif' else 'Linear+LIF'} scaling on {device}, batch {args.batch}")))
    paths = _report.write_results(
        args.out, "layer", "Layer benchmark vs peers (Open Neuromorphic protocol)",
        _report.command_line("exodus-lightning bench layer", argv), machine, sections,
        {"config": {**vars(args), "sizes": sizes, "repeats": repeats, "tau": TAU, "threshold": THRESHOLD},
         "elapsed_s": elapsed, "results": results, "scaling": scaling},
        figures,
        notes=["Timings: median of the repeats, rows interleaved round-robin in one process on the same input "
               "values (each library in its own layout, converted before timing); forward and backward timed "
               "separately (synchronised on CUDA). Ratios are against our exodus row in the same run. "
               "Memory on CPU: bytes autograd saves for backward (distinct storages, includes the Linear's saved "
               "input) and the sampled peak RSS increase during one forward+backward. Peers use their own LIF "
               "variants (see the note column: reset, input scaling and surrogate differ), so spike rates differ."],
    )
    _report.print_paths(paths)
    return 0
