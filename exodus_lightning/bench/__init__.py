"""Benchmarks: commands that print ratios measured in one run (never timed unit tests).

``exodus-lightning bench lif`` — EXODUS vs SLAYER vs BPTT on the LIF layer, against the
memory-traffic floor; ``bench data`` — model-ready samples/s of the data path, per-sample vs packed
caches; ``bench epoch`` — a training epoch of the SHD network split into data waiting and steps;
``bench ottt`` — memory of online
training vs BPTT/EXODUS over T; ``bench sparse`` — active-set vs dense backward; ``bench event`` —
event-driven backward vs BPTT across firing rates; ``bench cli`` — how long the command line takes
to answer (``fit --help`` rendered and cached); ``bench step`` — where a training step of a shipped
config (the quickstart) goes: GEMMs, the LIF and leaky scans, allocation, the optimiser.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Optional

# name -> (module, function); imported lazily so one benchmark's dependencies never slow another.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "lif": ("exodus_lightning.bench.lif", "bench_lif"),
    "data": ("exodus_lightning.bench.data", "bench_data"),
    "epoch": ("exodus_lightning.bench.epoch", "bench_epoch"),
    "layer": ("exodus_lightning.bench.layer", "bench_layer"),
    "fidelity": ("exodus_lightning.bench.fidelity", "bench_fidelity"),
    "grad-scale": ("exodus_lightning.bench.fidelity", "bench_grad_scale"),
    "poisson": ("exodus_lightning.bench.poisson", "bench_poisson"),
    "train-speed": ("exodus_lightning.bench.train_speed", "bench_train_speed"),
    "ottt": ("exodus_lightning.bench.ottt", "bench_ottt"),
    "sparse": ("exodus_lightning.bench.sparse", "bench_sparse"),
    "event": ("exodus_lightning.bench.event", "bench_event"),
    "cli": ("exodus_lightning.bench.cli", "bench_cli"),
    "step": ("exodus_lightning.bench.step", "bench_step"),
}


def benchmark(name: str) -> Callable[[Optional[list[str]]], int]:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(BENCHMARKS))}")
    module, fn = BENCHMARKS[name]
    return getattr(importlib.import_module(module), fn)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: exodus-lightning bench {" + ",".join(sorted(BENCHMARKS)) + "} [options]")
        return 0 if argv else 2
    try:
        fn = benchmark(argv[0])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return int(fn(argv[1:]) or 0)
