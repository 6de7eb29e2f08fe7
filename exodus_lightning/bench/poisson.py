"""``exodus-lightning bench poisson``: Poisson spike-train fitting, EXODUS vs SLAYER (EXODUS paper
Fig. 4 / supplementary 6.5).

Task: 250 Poisson input channels over 200 steps (1 ms, ``rate_hz``), a target train of 4 spikes
for one output neuron (:func:`exodus_lightning.data.make_poisson_fit_task`, one input/target pair
per seed).  Network: ``Linear(250, 25)`` -> 25 LIF -> ``Linear(25, 1)`` -> 1 LIF (no bias, weights
``N(0, 2/fan_in)``, threshold 1, subtract reset, SingleExponential surrogate), MSE between output
and target spike trains, Adam, full-batch, one step per epoch.

For speed every (seed, learning rate, tau) network of one backend is trained in the same tensors:
networks are stacked on the batch dimension (seed x learning rate; one Adam parameter group per
learning rate) and the tau values side by side in the feature dimension (per-neuron tau), with the
output layer computed per tau block.  The loss is the sum of the per-network losses, so every
network receives exactly its own gradient and Adam (element-wise) updates it exactly as if it were
trained alone.  EXODUS and SLAYER start from the same weights and see the same data: their forward
passes are identical, only the gradient differs.

Outputs: loss curves (mean over seeds) at one (lr, tau), the grid of summed-over-epochs,
seed-averaged loss over lr x tau (the paper's Fig. 4 right), output rasters across epochs, and per
network the first epoch whose output spike train equals the target (and whose spike count does).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Optional

import torch

from exodus_lightning.bench import _report
from exodus_lightning.data.poisson_fit import make_poisson_fit_task
from exodus_lightning.functional import lif
from exodus_lightning.surrogate import SingleExponential
from exodus_lightning.neuron_parameters import LIFParameters

LRS = (1e-4, 3e-4, 1e-3, 3e-3)
TAUS = (5.0, 10.0, 20.0, 40.0)
N_IN, N_HIDDEN, T_STEPS, N_TARGET = 250, 25, 200, 4


def _floats(p: argparse.ArgumentParser, s: str, flag: str) -> list[float]:
    try:
        v = [float(t) for t in s.split(",") if t.strip()]
    except ValueError:
        p.error(f"{flag} must be comma-separated numbers, got {s!r}")
    if not v or min(v) <= 0:
        p.error(f"{flag} must be positive numbers, got {s!r}")
    return v


def train(backend: str, seeds: list[int], lrs: list[float], taus: list[float], epochs: int,
          rate_hz: float = 20.0, n_hidden: int = N_HIDDEN, time_steps: int = T_STEPS, n_target: int = N_TARGET,
          grad_width: float = 0.5, grad_scale: float = 1.0, record: Optional[tuple[int, int]] = None) -> dict:
    """Train every (seed, lr, tau) network with ``backend`` for ``epochs`` full-batch Adam steps.

    Returns ``loss`` (epochs, n_lr, n_seed, n_tau), ``first_match``/``first_count`` (n_lr, n_seed, n_tau; -1 = never),
    ``raster`` (n_seed, epochs, T) bool of the network ``record = (lr index, tau index)``, the targets and time.
    """
    S, L, J = len(seeds), len(lrs), len(taus)
    xs, ys = [], []
    for s in seeds:
        x, y, _ = make_poisson_fit_task(seed=s, n_inputs=N_IN, n_time_steps=time_steps, n_target_spikes=n_target,
                                        rate_hz=rate_hz)
        xs.append(x)
        ys.append(y)
    x = torch.stack(xs)  # (S, T, 250)
    y = torch.stack(ys)  # (S, T, 1)
    Y = y.repeat(L, 1, 1)  # (L*S, T, 1): network k = l * S + s
    # Inputs are ~2 % dense: one block-diagonal sparse matrix (S*T, S*250) times the weights of
    # every lr and tau at once (same result as a dense matmul, ~50x fewer operations).
    idx = torch.nonzero(x)  # (nnz, 3): seed, t, channel
    X_bd = torch.sparse_coo_tensor(torch.stack([idx[:, 0] * time_steps + idx[:, 1], idx[:, 0] * N_IN + idx[:, 2]]),
                                   torch.ones(len(idx)), (S * time_steps, S * N_IN),
                                   check_invariants=False).coalesce()
    # the same initial weights for a seed at every lr and tau (and for both backends)
    w1, w2 = [], []
    for s in seeds:
        g = torch.Generator().manual_seed(10_000 + s)
        w1.append(torch.randn(N_IN, n_hidden, generator=g) * math.sqrt(2.0 / N_IN))
        w2.append(torch.randn(n_hidden, generator=g) * math.sqrt(2.0 / n_hidden))
    W1_0 = torch.stack(w1).unsqueeze(2).expand(S, N_IN, J, n_hidden).reshape(S, N_IN, J * n_hidden)
    W2_0 = torch.stack(w2).unsqueeze(1).expand(S, J, n_hidden)  # (S, J, H)
    W1 = [W1_0.clone().requires_grad_() for _ in lrs]
    W2 = [W2_0.clone().requires_grad_() for _ in lrs]
    opt = torch.optim.Adam([{"params": [a, b], "lr": lr} for a, b, lr in zip(W1, W2, lrs)], fused=True)
    tau_h = torch.tensor(taus).repeat_interleave(n_hidden)  # (J*H,)
    tau_o = torch.tensor(taus)  # (J,)
    sur = SingleExponential(grad_width, grad_scale)
    K = L * S
    losses = torch.empty(epochs, L, S, J)
    target_count = Y.sum(1)  # (K, 1)
    first_match = torch.full((K, J), -1, dtype=torch.long)
    first_count = torch.full((K, J), -1, dtype=torch.long)
    raster = torch.zeros(S, epochs, time_steps, dtype=torch.bool) if record is not None else None
    t0 = time.perf_counter()
    for ep in range(epochs):
        opt.zero_grad(set_to_none=True)
        w1_all = torch.cat([w.reshape(S * N_IN, J * n_hidden) for w in W1], dim=1)  # (S*250, L*J*H)
        h = torch.sparse.mm(X_bd, w1_all)  # (S*T, L*J*H)
        h = h.reshape(S, time_steps, L, J * n_hidden).permute(2, 0, 1, 3).reshape(K, time_steps, J * n_hidden)
        s_h = lif(h, LIFParameters(tau_mem=tau_h, threshold=1.0, surrogate=sur), backend=backend)
        o = torch.einsum("ktjh,kjh->ktj", s_h.reshape(K, time_steps, J, n_hidden), torch.cat(W2))
        out = lif(o, LIFParameters(tau_mem=tau_o, threshold=1.0, surrogate=sur), backend=backend)  # (K, T, J)
        per_net = ((out - Y) ** 2).mean(1)  # (K, J): MSE of each network
        per_net.sum().backward()
        opt.step()
        with torch.no_grad():
            losses[ep] = per_net.detach().reshape(L, S, J)
            match = (out == Y).all(1)  # (K, J)
            count = out.sum(1) == target_count  # (K, J)
            first_match[(first_match < 0) & match] = ep
            first_count[(first_count < 0) & count] = ep
            if raster is not None:
                li, ji = record
                raster[:, ep] = out[li * S:(li + 1) * S, :, ji] > 0
    return {"loss": losses, "first_match": first_match.reshape(L, S, J), "first_count": first_count.reshape(L, S, J),
            "raster": raster, "targets": y[:, :, 0] > 0, "seconds": time.perf_counter() - t0}


def _epoch_str(v: list[int]) -> str:
    hit = [e for e in v if e >= 0]
    return f"{len(hit)}/{len(v)}" + (f" (median {int(sorted(hit)[len(hit) // 2])})" if hit else "")


def loss_figure(res: dict, lr: float, tau: float, li: int, ji: int, title: str):
    plt = _report.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for backend, color in (("exodus", "C0"), ("slayer", "C1")):
        L = res[backend]["loss"][:, li, :, ji]  # (epochs, S)
        ep = torch.arange(1, L.shape[0] + 1).numpy()
        for s in range(L.shape[1]):
            ax.plot(ep, L[:, s].numpy(), color=color, alpha=0.15, lw=0.6)
        ax.plot(ep, L.mean(1).numpy(), color=color, lw=2, label=f"{backend.upper()} (mean of {L.shape[1]} seeds)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE loss")
    ax.set_title(title + f"\nlr {lr:g}, tau {tau:g}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def grid_figure(grid: dict, lrs: list[float], taus: list[float], title: str):
    plt = _report.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    vmax = max(float(grid["exodus"].max()), float(grid["slayer"].max()))
    for ax, backend in zip(axes[:2], ("exodus", "slayer")):
        g = grid[backend]
        im = ax.imshow(g.numpy(), cmap="viridis", vmin=0, vmax=vmax, origin="lower")
        for i in range(len(lrs)):
            for j in range(len(taus)):
                ax.text(j, i, f"{float(g[i, j]):.3g}", ha="center", va="center", color="w", fontsize=8)
        ax.set_title(f"{backend.upper()}: summed mean loss")
        fig.colorbar(im, ax=ax, fraction=0.046)
    ratio = grid["exodus"] / grid["slayer"].clamp_min(1e-12)
    im = axes[2].imshow(ratio.numpy(), cmap="coolwarm", vmin=0, vmax=2, origin="lower")
    for i in range(len(lrs)):
        for j in range(len(taus)):
            axes[2].text(j, i, f"{float(ratio[i, j]):.2f}", ha="center", va="center", fontsize=8)
    axes[2].set_title("EXODUS / SLAYER (< 1: EXODUS lower)")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.set_xticks(range(len(taus)))
        ax.set_xticklabels([f"{t:g}" for t in taus])
        ax.set_yticks(range(len(lrs)))
        ax.set_yticklabels([f"{lr:g}" for lr in lrs])
        ax.set_xlabel("tau_mem")
        ax.set_ylabel("learning rate")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def raster_figure(res: dict, seed_index: int, title: str):
    plt = _report.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    target = res["exodus"]["targets"][seed_index]
    for ax, backend in zip(axes, ("exodus", "slayer")):
        r = res[backend]["raster"][seed_index]  # (epochs, T)
        epochs = r.shape[0]
        stride = max(1, epochs // 200)
        ep, t = torch.nonzero(r[::stride], as_tuple=True)
        for ts in torch.nonzero(target).flatten():
            ax.axvline(int(ts), color="r", lw=4, alpha=0.25, zorder=0)
        ax.scatter(t.numpy(), (ep * stride).numpy(), s=6, color="k", marker="|", zorder=2)
        ax.set_title(f"{backend.upper()} output spikes (red: target)")
        ax.set_xlabel("time step")
        ax.set_xlim(0, r.shape[1])
    axes[0].set_ylabel("epoch")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def bench_poisson(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench poisson``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench poisson", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3000, help="training epochs (default 3000, as the paper)")
    p.add_argument("--seeds", type=int, default=5, help="input/target pairs and initialisations (default 5)")
    p.add_argument("--lrs", default=",".join(f"{v:g}" for v in LRS))
    p.add_argument("--taus", default=",".join(f"{v:g}" for v in TAUS))
    p.add_argument("--curve-lr", type=float, default=1e-3, help="learning rate of the loss curves and rasters")
    p.add_argument("--curve-tau", type=float, default=10.0, help="tau_mem of the loss curves and rasters")
    p.add_argument("--rate-hz", type=float, default=20.0, help="input Poisson rate (the paper does not state it)")
    p.add_argument("--grad-width", type=float, default=0.5)
    p.add_argument("--grad-scale", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (default 1: the tensors are tiny, more threads only add overhead)")
    p.add_argument("--out", default=None, help="directory for poisson.md/.json and poisson_*.png")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.seeds < 1:
        p.error("--epochs and --seeds must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    lrs, taus = _floats(p, args.lrs, "--lrs"), _floats(p, args.taus, "--taus")
    if args.curve_lr not in lrs:
        lrs = sorted(lrs + [args.curve_lr])
    if args.curve_tau not in taus:
        taus = sorted(taus + [args.curve_tau])
    li, ji = lrs.index(args.curve_lr), taus.index(args.curve_tau)
    seeds = list(range(args.seeds))
    res = {b: train(b, seeds, lrs, taus, args.epochs, args.rate_hz, grad_width=args.grad_width,
                    grad_scale=args.grad_scale, record=(li, ji)) for b in ("exodus", "slayer")}

    tail = max(1, args.epochs // 20)  # last 5 % of the epochs
    summary, grid = [], {}
    for b in ("exodus", "slayer"):
        L = res[b]["loss"]  # (E, L, S, J)
        grid[b] = L.mean(2).sum(0)  # (L, J): seed-averaged, summed over epochs
        c = L[:, li, :, ji]  # (E, S)
        summary.append({
            "backend": b, "final_mean": float(c[-1].mean()), "final_std": float(c[-1].std()) if c.shape[1] > 1 else 0.0,
            "tail_mean": float(c[-tail:].mean()), "summed": float(c.mean(1).sum()),
            "first_match": res[b]["first_match"][li, :, ji].tolist(), "first_count": res[b]["first_count"][li, :, ji].tolist(),
            "grid_final_mean": float(L[-1].mean()), "grid_match": int((res[b]["first_match"] >= 0).sum()),
            "networks": int(res[b]["first_match"].numel()), "seconds": res[b]["seconds"],
        })
    ex, sl = summary
    fin = {b: res[b]["loss"][-1].mean(1) for b in res}  # (L, J): seed-averaged final loss per cell
    cmp = ("lower" if ex["final_mean"] < sl["final_mean"] else "equal" if ex["final_mean"] == sl["final_mean"]
           else "HIGHER")
    verdict = (f"Final loss at lr {args.curve_lr:g}, tau {args.curve_tau:g}, mean of {args.seeds} seeds: EXODUS "
               f"{ex['final_mean']:.4f} vs SLAYER {sl['final_mean']:.4f} (EXODUS {cmp}). Over the {fin['exodus'].numel()} "
               f"grid cells, EXODUS's seed-averaged final loss is lower in {int((fin['exodus'] < fin['slayer']).sum())}, "
               f"equal in {int((fin['exodus'] == fin['slayer']).sum())}, higher in {int((fin['exodus'] > fin['slayer']).sum())} "
               f"(grid mean {ex['grid_final_mean']:.4f} vs {sl['grid_final_mean']:.4f}); its summed loss is lower in "
               f"{int((grid['exodus'] < grid['slayer']).sum())}/{grid['exodus'].numel()} cells.")
    cols = [("backend", "backend", ""), ("final_mean", "final loss (mean)", ".4f"), ("final_std", "± std", ".4f"),
            ("tail_mean", "mean loss, last 5 % epochs", ".4f"), ("summed", "summed mean loss", ".2f"),
            ("first_match", "epoch output == target (per seed)", lambda v: ", ".join(str(e) if e >= 0 else "never" for e in v)),
            ("first_count", "epoch spike count == 4 (per seed)", lambda v: ", ".join(str(e) if e >= 0 else "never" for e in v)),
            ("grid_final_mean", "grid mean final loss", ".4f"), ("grid_match", "grid nets reaching target", "d"), ("networks", "of", "d"), ("seconds", "train s", ".0f")]
    t1 = _report.markdown_table(summary, cols)
    gridrows = []
    for i, lr in enumerate(lrs):
        r = {"lr": lr}
        for j, tau in enumerate(taus):
            r[f"t{j}"] = (float(grid["exodus"][i, j]), float(grid["slayer"][i, j]))
        gridrows.append(r)
    gcols = [("lr", "lr \\ tau_mem", "g")] + [
        (f"t{j}", f"{tau:g}", lambda v: f"{v[0]:.1f} / {v[1]:.1f}" + (" ✓" if v[0] < v[1] else "")) for j, tau in enumerate(taus)]
    t2 = _report.markdown_table(gridrows, gcols)
    print(t1)
    print()
    print("summed (over epochs) seed-averaged loss, EXODUS / SLAYER (✓: EXODUS lower):")
    print(t2)
    print(verdict)
    reduced = (args.epochs != 3000 or args.seeds != 5)
    figs = [
        ("poisson_loss.png", loss_figure(res, args.curve_lr, args.curve_tau, li, ji,
                                         f"Poisson spike-train fitting, {args.seeds} seeds, {args.epochs} epochs")),
        ("poisson_grid.png", grid_figure(grid, lrs, taus, f"Summed seed-averaged loss over {args.epochs} epochs "
                                                           f"({args.seeds} seeds)")),
        ("poisson_raster.png", raster_figure(res, 0, f"Output raster across epochs, seed 0, lr {args.curve_lr:g}, "
                                                     f"tau {args.curve_tau:g}")),
    ]
    stride = max(1, args.epochs // 100)
    rasters = {b: {"every": stride, "spike_steps": [[torch.nonzero(res[b]["raster"][s, e]).flatten().tolist()
                                                     for e in range(0, args.epochs, stride)] for s in range(len(seeds))]}
               for b in ("exodus", "slayer")}
    paths = _report.write_results(
        args.out, "poisson", "Poisson spike-train fitting (EXODUS paper Fig. 4 / suppl. 6.5)",
        _report.command_line("exodus-lightning bench poisson", argv), _report.machine_info("cpu"),
        [t1, "Grid: loss summed over epochs of the seed-averaged loss, EXODUS / SLAYER (✓: EXODUS lower)", t2, verdict],
        {"config": {**vars(args), "lrs": lrs, "taus": taus}, "summary": summary,
         "grid": {b: grid[b].tolist() for b in grid},
         "curves": {b: res[b]["loss"][:, li, :, ji].mean(1).tolist() for b in res},
         "first_match": {b: res[b]["first_match"].tolist() for b in res},
         "final_grid": {b: fin[b].tolist() for b in fin},
         "targets": [torch.nonzero(t).flatten().tolist() for t in res["exodus"]["targets"]],
         "rasters": rasters},
        figs,
        notes=[f"250 Poisson inputs at {args.rate_hz:g} Hz over 200 x 1 ms steps, 25 LIF hidden, 1 LIF output, 4 target "
               "spikes, MSE on the spike trains, Adam, one full-batch step per epoch; the same data and initial "
               "weights for EXODUS and SLAYER. The paper does not give the input rate, the initialisation or the "
               "surrogate parameters: we use 20 Hz, N(0, 2/fan_in) and SingleExponential(0.5, 1.0)."
               + (f" **Reduced run**: {args.epochs} epochs and {args.seeds} seeds instead of the paper's 3000 and 5."
                  if reduced else "")],
    )
    _report.print_paths(paths)
    return 0
