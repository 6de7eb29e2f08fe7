"""Gradient fidelity of EXODUS and SLAYER against BPTT (EXODUS paper, Fig. S2) and the gradient-scale
sensitivity of the weight gradients (Fig. 2, centre column).

``exodus-lightning bench fidelity``: the SSC network of the paper's Table 2
(``100-128l-128l-35l``, IF neurons between the weight layers, max-over-time cross-entropy) in
float64, one batch of SpikePatterns data shaped like SSC (100 channels, 250 steps, 35 classes);
the same initial weights are run with the ``bptt``, ``exodus`` and ``slayer`` backends and the
weight gradients of the first iteration are compared per layer: cosine similarity
``g.h / (|g| |h|)`` and norm ratio ``|g| / |h|`` against BPTT.  EXODUS must be 1 on every layer;
SLAYER (reset ignored in the gradient) drifts toward the input.

``exodus-lightning bench grad-scale``: the mean 2-norm of every layer's weight gradient over the
first steps of training (Adam, lr 1e-3), for a range of surrogate ``grad_scale`` values, with
EXODUS and SLAYER from the same initial weights.
"""

from __future__ import annotations

import argparse
import copy
import math
from typing import Optional

import torch
from torch import nn

from exodus_lightning.backend import use_backend
from exodus_lightning.bench import _report
from exodus_lightning.data.spike_patterns import SpikePatternsDataset
from exodus_lightning.losses import max_over_time_cross_entropy
from exodus_lightning.nn import IF, build_network
from exodus_lightning.surrogate import SingleExponential

DEFAULT_ARCH = "100-128l-128l-35l"  # paper Table 2, SSC ("4-layer": input + 3 weight layers)
DEFAULT_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def _arch_sizes(arch: str) -> tuple[int, int]:
    tokens = arch.split("-")
    return int(tokens[0]), int(tokens[-1].rstrip("l"))


def pattern_timing(time_steps: int) -> dict:
    """SpikePatterns' default shift (15) and jitter (3), shrunk so that short test sequences are valid."""
    return {"max_shift_steps": min(15, max(0, (time_steps - 4) // 4 - 6)),
            "jitter_steps": 3.0 if time_steps >= 60 else 0.0}


def make_batch(arch: str, batch: int, time_steps: int, seed: int, dtype: torch.dtype,
               noise_prob: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of SpikePatterns data shaped for ``arch``: ``x (B, T, C)`` 0/1 spikes, labels ``(B,)``."""
    n_in, n_classes = _arch_sizes(arch)
    ds = SpikePatternsDataset(batch, split="train", seed=seed, n_channels=n_in, n_classes=n_classes,
                              n_time_steps=time_steps, noise_prob=noise_prob, **pattern_timing(time_steps))
    xs, ys = zip(*(ds[i] for i in range(batch)))
    return torch.stack([torch.as_tensor(x) for x in xs]).to(dtype), torch.as_tensor(ys, dtype=torch.long)


def make_network(arch: str, seed: int, grad_width: float = 0.5, grad_scale: float = 1.0,
                 dtype: torch.dtype = torch.float64, threshold: float = 1.0) -> nn.Module:
    torch.manual_seed(seed)
    net = build_network(arch, neuron=IF(threshold=threshold, surrogate=SingleExponential(grad_width, grad_scale)))
    return net.to(dtype)


def weight_params(net: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Weight matrices/kernels from input to output (biases and trained taus excluded)."""
    return [(n, p) for n, p in net.named_parameters() if n.endswith("weight") and p.ndim >= 2]


def first_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor, backend: str) -> tuple[list[torch.Tensor], dict]:
    """Weight gradients of ``max_over_time_cross_entropy(net(x), y)`` with ``backend``, plus activity."""
    net = copy.deepcopy(net)
    net.zero_grad(set_to_none=True)
    rates = []
    hooks = [m.register_forward_hook(lambda m, i, o: rates.append(float(o.detach().mean())))
             for m in net.modules() if isinstance(m, IF)]
    with use_backend(backend):
        loss = max_over_time_cross_entropy(net(x), y)
    loss.backward()
    for h in hooks:
        h.remove()
    return [p.grad.detach().clone() for _, p in weight_params(net)], {"loss": loss.item(), "rates": rates}


def compare(g: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(cosine similarity, norm ratio |g| / |ref|), computed in float64."""
    g, ref = g.double().flatten(), ref.double().flatten()
    ng, nr = g.norm(), ref.norm()
    cos = float(g @ ref / (ng * nr)) if ng > 0 and nr > 0 else float("nan")
    ratio = float(ng / nr) if nr > 0 else float("nan")
    return cos, ratio


def run_fidelity(arch: str = DEFAULT_ARCH, batch: int = 32, time_steps: int = 250, seeds=(0,),
                 dtype: torch.dtype = torch.float64, grad_width: float = 0.5, grad_scale: float = 1.0) -> dict:
    """One row per (seed, backend, layer) with cos-sim and norm ratio to BPTT; activity per seed."""
    rows, activity = [], []
    for seed in seeds:
        net = make_network(arch, seed, grad_width, grad_scale, dtype)
        x, y = make_batch(arch, batch, time_steps, seed, dtype)
        ref, info = first_gradients(net, x, y, "bptt")
        activity.append({"seed": seed, "input_rate": float(x.mean()), "hidden_rates": info["rates"],
                         "loss_bptt": info["loss"]})
        names = [n for n, _ in weight_params(net)]
        for backend in ("exodus", "slayer"):
            grads, _ = first_gradients(net, x, y, backend)
            for i, (g, r) in enumerate(zip(grads, ref)):
                cos, ratio = compare(g, r)
                rows.append({"seed": seed, "backend": backend, "layer": i + 1, "name": names[i],
                             "cos_sim": cos, "norm_ratio": ratio, "one_minus_cos": 1.0 - cos,
                             "bptt_norm": float(r.norm())})
    return {"rows": rows, "activity": activity}


def _summary(rows: list[dict]) -> list[dict]:
    """Per (backend, layer): worst cos-sim and the norm ratio farthest from 1 over the seeds."""
    out = {}
    for r in rows:
        k = (r["backend"], r["layer"])
        s = out.setdefault(k, {"backend": r["backend"], "layer": r["layer"], "name": r["name"],
                               "cos_sim": 1.0, "norm_ratio": 1.0, "min_norm_ratio": math.inf,
                               "max_norm_ratio": -math.inf, "seeds": 0})
        s["cos_sim"] = min(s["cos_sim"], r["cos_sim"])
        if abs(r["norm_ratio"] - 1) >= abs(s["norm_ratio"] - 1):
            s["norm_ratio"] = r["norm_ratio"]
        s["min_norm_ratio"] = min(s["min_norm_ratio"], r["norm_ratio"])
        s["max_norm_ratio"] = max(s["max_norm_ratio"], r["norm_ratio"])
        s["seeds"] += 1
        s["one_minus_cos"] = 1.0 - s["cos_sim"]
        s["ratio_err"] = abs(s["norm_ratio"] - 1.0)
    return list(out.values())


def fidelity_figure(summary: list[dict], rows: list[dict], title: str):
    plt = _report.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for backend, style in (("exodus", dict(marker="o", color="C0")), ("slayer", dict(marker="s", ls="--", color="C1"))):
        rs = [r for r in rows if r["backend"] == backend]
        seeds = sorted({r["seed"] for r in rs})
        for j, seed in enumerate(seeds):
            rr = sorted((r for r in rs if r["seed"] == seed), key=lambda r: r["layer"])
            kw = dict(style, label=backend if j == 0 else None, alpha=1.0 if len(seeds) == 1 else 0.6)
            axes[0].plot([r["layer"] for r in rr], [r["cos_sim"] for r in rr], **kw)
            axes[1].plot([r["layer"] for r in rr], [r["norm_ratio"] for r in rr], **kw)
    layers = sorted({s["layer"] for s in summary})
    for ax, lab in ((axes[0], "cosine similarity to BPTT"), (axes[1], "|grad| / |grad BPTT|")):
        ax.set_xticks(layers)
        ax.set_xticklabels([f"{l}" + (" (in)" if l == layers[0] else " (out)" if l == layers[-1] else "") for l in layers])
        ax.set_xlabel("weight layer")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def bench_fidelity(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench fidelity``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench fidelity",
                                description="EXODUS/SLAYER weight gradients vs BPTT per layer (paper Fig. S2)")
    p.add_argument("--arch", default=DEFAULT_ARCH, help=f"architecture string (default {DEFAULT_ARCH}, paper Table 2 SSC)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--time-steps", type=int, default=250)
    p.add_argument("--seeds", type=int, default=3, help="independent networks and batches (default 3)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--grad-width", type=float, default=0.5)
    p.add_argument("--grad-scale", type=float, default=1.0)
    p.add_argument("--name", default="fidelity", help="file name stem of the results (default fidelity)")
    p.add_argument("--out", default=None, help="directory for <name>.md/.json/.png (default: print only)")
    args = p.parse_args(argv)
    if args.batch < 1 or args.time_steps < 1 or args.seeds < 1:
        p.error("--batch, --time-steps and --seeds must be >= 1")
    dtype = getattr(torch, args.dtype)
    res = run_fidelity(args.arch, args.batch, args.time_steps, tuple(range(args.seeds)), dtype,
                       args.grad_width, args.grad_scale)
    summary = _summary(res["rows"])
    table = _report.markdown_table(summary, [
        ("backend", "backend", ""), ("layer", "layer (1 = input)", "d"), ("name", "parameter", ""),
        ("cos_sim", "cos-sim to BPTT (worst seed)", ".6f"), ("one_minus_cos", "1 - cos-sim", ".1e"),
        ("norm_ratio", "norm ratio (farthest from 1)", ".6g"), ("ratio_err", "abs(ratio - 1)", ".1e"),
        ("min_norm_ratio", "min ratio", ".6g"), ("max_norm_ratio", "max ratio", ".6g"),
    ])
    act = _report.markdown_table(res["activity"], [
        ("seed", "seed", "d"), ("input_rate", "input spikes / step / channel", ".4f"),
        ("hidden_rates", "hidden spike rates (per IF layer)", lambda v: ", ".join(f"{x:.4f}" for x in v)),
        ("loss_bptt", "loss", ".4f"),
    ])
    ex = [s for s in summary if s["backend"] == "exodus"]
    ok = all(s["cos_sim"] >= 0.999999 and abs(s["norm_ratio"] - 1) <= 1e-5 for s in ex)
    verdict = (f"EXODUS acceptance (cos-sim >= 0.999999, |ratio - 1| <= 1e-5 on every layer, {args.dtype}): "
               f"{'PASS' if ok else 'FAIL'}")
    print(table)
    print()
    print(act)
    print(verdict)
    title = (f"Fig. S2: first-iteration weight gradients vs BPTT, {args.arch}, IF, B={args.batch}, "
             f"T={args.time_steps}, {args.dtype}, {args.seeds} seed(s)")
    fig = fidelity_figure(summary, res["rows"], title)
    paths = _report.write_results(
        args.out, args.name, "Gradient fidelity to BPTT (EXODUS paper Fig. S2)",
        _report.command_line("exodus-lightning bench fidelity", argv), _report.machine_info("cpu"),
        [table, "Activity of the runs (same forward for every backend):", act, verdict],
        {"config": vars(args), "summary": summary, "rows": res["rows"], "activity": res["activity"], "pass": ok},
        [(f"{args.name}.png", fig)],
        notes=[f"Network `{args.arch}` (paper Table 2, SSC), IF neurons (threshold 1, subtract reset, "
               f"SingleExponential surrogate width {args.grad_width}, scale {args.grad_scale}), "
               "max-over-time cross-entropy, one batch of SpikePatterns data shaped like SSC "
               "(100 channels, 35 classes). Same initial weights and batch for every backend; gradients "
               "after the first backward. Layer 1 is the input layer."],
    )
    _report.print_paths(paths)
    return 0 if ok else 1


# ----------------------------------------------------------------------------------- grad scale


def run_grad_scale(arch: str = DEFAULT_ARCH, scales=DEFAULT_SCALES, steps: int = 10, batch: int = 32,
                   time_steps: int = 250, seed: int = 0, lr: float = 1e-3, grad_width: float = 0.5,
                   dtype: torch.dtype = torch.float32) -> list[dict]:
    """Rows (backend, grad_scale, layer, mean/max grad 2-norm over ``steps`` Adam steps)."""
    rows = []
    batches = [make_batch(arch, batch, time_steps, seed * 1000 + i, dtype) for i in range(steps)]
    for scale in scales:
        for backend in ("exodus", "slayer"):
            net = make_network(arch, seed, grad_width, scale, dtype)
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            names = [n for n, _ in weight_params(net)]
            norms = [[] for _ in names]
            finite = True
            for x, y in batches:
                opt.zero_grad(set_to_none=True)
                with use_backend(backend):
                    loss = max_over_time_cross_entropy(net(x), y)
                loss.backward()
                for i, (_, prm) in enumerate(weight_params(net)):
                    norms[i].append(float(prm.grad.norm()))
                if not all(math.isfinite(v[-1]) for v in norms):
                    finite = False
                    break
                opt.step()
            for i, name in enumerate(names):
                vals = norms[i]
                rows.append({"backend": backend, "grad_scale": scale, "layer": i + 1, "name": name,
                             "mean_norm": sum(vals) / len(vals), "max_norm": max(vals), "steps": len(vals),
                             "finite": finite})
    return rows


def grad_scale_figure(rows: list[dict], title: str):
    plt = _report.pyplot()
    layers = sorted({r["layer"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, backend in zip(axes, ("exodus", "slayer")):
        for j, layer in enumerate(layers):
            rr = sorted((r for r in rows if r["backend"] == backend and r["layer"] == layer), key=lambda r: r["grad_scale"])
            lab = f"layer {layer}" + (" (in)" if layer == layers[0] else " (out)" if layer == layers[-1] else "")
            ax.plot([r["grad_scale"] for r in rr], [r["mean_norm"] for r in rr], marker="o",
                    color=cmap(j / max(1, len(layers) - 1)), label=lab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("surrogate grad_scale")
        ax.set_title(backend.upper())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean weight-gradient 2-norm")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def bench_grad_scale(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench grad-scale``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench grad-scale",
                                description="mean weight-gradient norms per layer across surrogate grad_scale (paper Fig. 2 centre)")
    p.add_argument("--arch", default=DEFAULT_ARCH)
    p.add_argument("--scales", default=",".join(str(s) for s in DEFAULT_SCALES), help="comma-separated grad_scale values")
    p.add_argument("--steps", type=int, default=10, help="training steps averaged over (default 10)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--time-steps", type=int, default=250)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--grad-width", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for grad_scale.md/.json/.png")
    args = p.parse_args(argv)
    try:
        scales = [float(s) for s in args.scales.split(",") if s.strip()]
    except ValueError:
        p.error(f"--scales must be comma-separated numbers, got {args.scales!r}")
    if not scales or min(scales) <= 0:
        p.error("--scales must be positive numbers")
    if args.steps < 1 or args.batch < 1 or args.time_steps < 1:
        p.error("--steps, --batch and --time-steps must be >= 1")
    rows = run_grad_scale(args.arch, scales, args.steps, args.batch, args.time_steps, args.seed, args.lr,
                          args.grad_width)
    # wide table: one row per (backend, scale), one column per layer
    layers = sorted({r["layer"] for r in rows})
    wide = []
    for backend in ("exodus", "slayer"):
        for s in scales:
            w = {"backend": backend, "grad_scale": s}
            for r in rows:
                if r["backend"] == backend and r["grad_scale"] == s:
                    w[f"L{r['layer']}"] = r["mean_norm"]
                    w["finite"] = r["finite"]
            w["in_over_out"] = w[f"L{layers[0]}"] / w[f"L{layers[-1]}"] if w[f"L{layers[-1]}"] else float("nan")
            wide.append(w)
    cols = [("backend", "backend", ""), ("grad_scale", "grad_scale", "g")]
    cols += [(f"L{l}", f"layer {l}" + (" (in)" if l == layers[0] else " (out)" if l == layers[-1] else ""), ".3e")
             for l in layers]
    cols += [("in_over_out", "input/output layer", ".3g"), ("finite", "finite", "")]
    table = _report.markdown_table(wide, cols)
    print(table)
    title = (f"Fig. 2 centre: mean weight-grad norms over {args.steps} Adam steps, {args.arch}, IF, "
             f"B={args.batch}, T={args.time_steps}")
    fig = grad_scale_figure(rows, title)
    paths = _report.write_results(
        args.out, "grad_scale", "Gradient-scale sensitivity (EXODUS paper Fig. 2, centre)",
        _report.command_line("exodus-lightning bench grad-scale", argv), _report.machine_info("cpu"),
        [table], {"config": vars(args), "rows": rows, "table": wide}, [("grad_scale.png", fig)],
        notes=[f"Mean 2-norm of each layer's weight gradient over the first {args.steps} training steps "
               f"(Adam, lr {args.lr}, float32, max-over-time CE), SpikePatterns data shaped like SSC; the same "
               "initial weights and batches for EXODUS and SLAYER at every scale. Surrogate: "
               f"SingleExponential(grad_width={args.grad_width}, grad_scale=s); its peak is 2 s for threshold 1, "
               "so SLAYER's neglected reset term matters once the peak exceeds alpha/theta = 1 (IF)."],
    )
    _report.print_paths(paths)
    return 0
