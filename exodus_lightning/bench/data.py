"""``exodus-lightning bench data``: model-ready samples per second of the data path, before and after
the packed caches, per dataset format, in one run.

Files in the real on-disk formats are written to a temporary folder (SHD/SSC HDF5 with 3000-12000
spikes per sample; DVS Gesture ``.npy`` trees with ``--dvs-events`` events per sample, binned at
128x128 and 32x32 as in the EXODUS paper's Table 2). For each format:

* **per-sample** (the path before): tonic reads a sample, tonic's transforms bin it, a ``.npz`` per
  sample caches it (warm: filled before the timed pass), ``pad_collate`` builds the batch;
* **packed**: the DataModule's packed split cache (``cache="disk"``, memory-mapped; ``"device"``:
  resident on ``--device``), a batch gathered at once and made dense on ``--device`` as under a
  Trainer (compact batch -> device -> ``on_after_batch_transfer``).

"Model-ready" means dense float32 ``(B, T, *features)`` batches on ``--device``. Each configuration
runs in a fresh process (its peak RSS is reported) for a warm-up pass and a timed pass; with
``--busy`` it runs again beside a process that keeps one core busy. Cache builds are timed with 0
and 2 worker processes, with the bytes they write.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from typing import Any, Optional

from exodus_lightning.bench import _report

FORMATS = ("shd", "ssc", "dvs128", "dvs32")


# ------------------------------------------------------------------------------------ data files
def write_files(fmt: str, root: str, args: argparse.Namespace) -> None:
    """The dataset files of ``fmt`` (SSC: train, valid, test; the others: train, test)."""
    from exodus_lightning.data.dataset_writers import random_hsd_samples, write_dvsgesture_tree, write_shd, write_ssc

    spikes, duration = (3000, 12000), (0.5, 1.4)
    if fmt == "shd":
        write_shd(root, "train", *random_hsd_samples(args.shd_samples, 20, spikes=spikes, duration_s=duration, seed=0))
        write_shd(root, "test", *random_hsd_samples(max(1, args.shd_samples // 4), 20, spikes=spikes, duration_s=duration, seed=1))
    elif fmt == "ssc":
        for i, (split, n) in enumerate((("train", args.ssc_samples), ("valid", args.ssc_samples // 8),
                                        ("test", args.ssc_samples // 8))):
            write_ssc(root, split, *random_hsd_samples(max(1, n), 35, spikes=spikes, duration_s=duration, seed=i))
    else:
        users = max(1, -(-args.dvs_samples // 22))  # 2 lightings x 11 gestures per user
        write_dvsgesture_tree(root, True, users, n_events=args.dvs_events, duration_ms=6000, seed=0)
        write_dvsgesture_tree(root, False, 1, n_events=args.dvs_events, duration_ms=6000, seed=1)


def make_datamodule(fmt: str, root: str, cache: str, cache_dir: str, workers: int, batch_size: int):
    """The DataModule of ``fmt`` with the EXODUS paper's Table 2 binning (SHD/SSC at ``time_window_ms=10``,
    700 channels; DVS Gesture at 5 ms up to T = 300)."""
    from exodus_lightning.data import DVSGestureDataModule, SHDDataModule, SSCDataModule

    common = dict(batch_size=batch_size, num_workers=workers, cache=cache, cache_dir=cache_dir, pin_memory=False)
    if fmt == "shd":
        return SHDDataModule(root, time_window_ms=10.0, **common)
    if fmt == "ssc":
        return SSCDataModule(root, time_window_ms=10.0, **common)
    size = 128 if fmt == "dvs128" else 32
    return DVSGestureDataModule(root, time_window_ms=5.0, max_duration_ms=1500.0, spatial_size=size, **common)


# ---------------------------------------------------------------------- one measurement, own process
def _loader(spec: dict[str, Any]):
    """The training loader of one configuration, and how its batches become model-ready."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from exodus_lightning.bench.per_sample_data import PerSampleDataset
    from exodus_lightning.data import pad_collate
    from exodus_lightning.data.dense_on_device import _compact
    from exodus_lightning.data.event_split import EventSplit

    device = torch.device(spec["device"])
    dm = make_datamodule(spec["format"], spec["root"], "none" if spec["path"] == "per-sample" else "disk",
                         spec["cache_dir"], spec["workers"], spec["batch_size"])
    if spec["path"] == "per-sample":
        source = dm._make_source("train")
        ds = PerSampleDataset(source, dm._binner().params(), spec["npz_dir"])
        n = min(len(ds), spec["max_samples"] or len(ds))
        loader = DataLoader(Subset(ds, range(n)), batch_size=spec["batch_size"], shuffle=True, collate_fn=pad_collate,
                            num_workers=spec["workers"], persistent_workers=spec["workers"] > 0,
                            generator=torch.Generator().manual_seed(0))
        return loader, lambda b: b.x.to(device, non_blocking=True)
    dm.setup("fit")
    ds = dm.dataset("train")
    if spec["cache"] == "device":  # what setup does with cache="device" under a Trainer on `device`
        ds = EventSplit(ds.source, ds.packed.to(device))
    loader = DataLoader(ds, batch_size=spec["batch_size"], shuffle=True, collate_fn=_compact,
                        num_workers=spec["workers"], persistent_workers=spec["workers"] > 0,
                        generator=torch.Generator().manual_seed(0))

    def ready(b):
        moved = type(b)(*(t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in b))
        return moved.densify().x

    return loader, ready


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One pass to warm up (and fill the ``.npz`` cache of the per-sample path), one timed pass."""
    import torch

    loader, ready = _loader(spec)
    sync = torch.cuda.synchronize if spec["device"].startswith("cuda") else (lambda: None)
    for batch in loader:
        ready(batch)
    sync()
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        x = ready(batch)
        n += x.shape[0]
    sync()
    elapsed = time.perf_counter() - t0
    return {"samples": n, "samples_per_s": n / elapsed, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident set size (``VmHWM``: unlike ``ru_maxrss`` it is not inherited
    across ``exec``, so a spawned process reports its own)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _burn() -> None:
    while True:
        pass


def _measure_and_send(spec: dict[str, Any], conn) -> None:
    try:
        conn.send(("ok", measure(spec)))
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        import traceback

        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def _in_fresh_process(spec: dict[str, Any], busy: bool) -> dict[str, Any]:
    """:func:`measure` in a new process (not a daemon: its DataLoader may start workers)."""
    ctx = mp.get_context("spawn")
    burner = ctx.Process(target=_burn, daemon=True) if busy else None
    if burner:
        burner.start()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_measure_and_send, args=(spec, send))
    try:
        child.start()
        send.close()
        status, value = receive.recv()
        child.join()
    except EOFError:
        child.join()
        raise RuntimeError(f"the measurement process for {spec['format']} {spec['path']} died (exit code {child.exitcode})")
    finally:
        if burner:
            burner.terminate()
            burner.join()
    if status != "ok":
        raise RuntimeError(f"measuring {spec['format']} {spec['path']} {spec['cache']} failed: {value}")
    return value


def _bytes_under(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


# --------------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace, root: str) -> tuple[list[dict], list[dict]]:
    rows, builds = [], []
    for fmt in args.formats:
        data_dir = os.path.join(root, "files-" + ("dvs" if fmt.startswith("dvs") else fmt))
        if not os.path.isdir(data_dir):
            t = time.perf_counter()
            write_files(fmt, data_dir, args)
            print(f"# {fmt}: wrote {_bytes_under(data_dir) / 1e6:.0f} MB of files in {time.perf_counter() - t:.0f} s", flush=True)
        batch = args.batch_size or (128 if fmt in ("shd", "ssc") else 16)
        # cache builds (packed), 0 and 2 worker processes
        for workers in args.build_workers:
            cache_dir = os.path.join(root, f"cache-{fmt}-{workers}")
            dm = make_datamodule(fmt, data_dir, "disk", cache_dir, workers, batch)
            t = time.perf_counter()
            dm.prepare_data()
            elapsed = time.perf_counter() - t
            n = sum(len(dm._source(s)) for s in dm.raw_splits)
            builds.append({"format": fmt, "path": "packed", "workers": workers, "samples": n,
                           "samples_per_s": n / elapsed, "bytes": _bytes_under(cache_dir)})
            print(f"# {fmt}: packed cache built by {workers} workers: {n / elapsed:.0f} samples/s", flush=True)
        cache_dir = os.path.join(root, f"cache-{fmt}-{args.build_workers[0]}")
        configs = []
        if args.baseline:
            npz_dir = os.path.join(root, f"npz-{fmt}")
            configs += [("per-sample", ".npz", w) for w in args.workers]
        configs += [("packed", "disk", w) for w in args.workers] + [("packed", "device", 0)]
        baseline: dict[int, float] = {}
        for path, cache, workers in configs:
            spec = {"format": fmt, "root": data_dir, "path": path, "cache": cache, "cache_dir": cache_dir,
                    "npz_dir": npz_dir if path == "per-sample" else None, "workers": workers, "batch_size": batch,
                    "device": args.device, "max_samples": args.baseline_samples if path == "per-sample" else None}
            row = {"format": fmt, "path": path, "cache": cache, "workers": workers, "batch": batch,
                   **_in_fresh_process(spec, busy=False)}
            if args.busy and workers == 0:
                row["busy_samples_per_s"] = _in_fresh_process(spec, busy=True)["samples_per_s"]
                row["busy_slowdown"] = row["samples_per_s"] / row["busy_samples_per_s"]
            if path == "per-sample":
                baseline[workers] = row["samples_per_s"]
            elif workers in baseline:
                row["speedup"] = row["samples_per_s"] / baseline[workers]
            rows.append(row)
            print(f"# {fmt} {path} {cache} workers={workers}: {row['samples_per_s']:.0f} samples/s", flush=True)
        if args.baseline:
            cached = len([f for f in os.listdir(npz_dir) if f.endswith(".npz")])
            builds.append({"format": fmt, "path": "per-sample .npz", "workers": 0, "samples": cached,
                           "samples_per_s": None, "bytes": _bytes_under(npz_dir)})
    return rows, builds


def bench_data(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning bench data``."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench data", description=__doc__.split("\n\n")[0])
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, from {', '.join(FORMATS)}")
    p.add_argument("--shd-samples", type=int, default=8156, help="SHD training samples (the real set has 8156)")
    p.add_argument("--ssc-samples", type=int, default=8000, help="SSC training samples (the real set has 75466)")
    p.add_argument("--dvs-samples", type=int, default=1077, help="DVS Gesture training samples (the real set has 1077)")
    p.add_argument("--dvs-events", type=int, default=300_000, help="events per DVS Gesture sample")
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 for SHD/SSC, 16 for DVS Gesture")
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts to time")
    p.add_argument("--build-workers", default="0,2", help="worker counts for the cache builds")
    p.add_argument("--baseline-samples", type=int, default=1024,
                   help="samples per pass of the per-sample path (it is slow); 0 = all")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the per-sample path")
    p.add_argument("--busy", action="store_true", help="time the 0-worker rows again beside a process that keeps a core busy")
    p.add_argument("--device", default="cpu", help="where batches become model-ready (cpu, cuda)")
    p.add_argument("--tmp-dir", default=None, help="folder for the generated files (default: a temporary folder)")
    p.add_argument("--out", default=None, help="directory for data.md/.json")
    args = p.parse_args(argv)
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in args.formats if f not in FORMATS]
    if bad or not args.formats:
        p.error(f"--formats takes {', '.join(FORMATS)}, got {bad or args.formats}")
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
        args.build_workers = [int(w) for w in args.build_workers.split(",")]
    except ValueError:
        p.error("--workers and --build-workers take comma-separated integers")
    if min(args.workers + args.build_workers) < 0:
        p.error("worker counts must be >= 0")
    if min(args.shd_samples, args.ssc_samples, args.dvs_samples, args.dvs_events) < 8:
        p.error("--shd-samples, --ssc-samples, --dvs-samples and --dvs-events must be >= 8")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA GPU is available")
    root = tempfile.mkdtemp(prefix="exodus-bench-data-", dir=args.tmp_dir)
    try:
        t0 = time.perf_counter()
        rows, builds = run(args, root)
        elapsed = time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cols = [("format", "format", ""), ("path", "path", ""), ("cache", "cache", ""), ("workers", "workers", "d"),
            ("batch", "batch", "d"), ("samples_per_s", "model-ready samples/s", ",.0f"),
            ("speedup", "× per-sample", ".1f"), ("busy_samples_per_s", "samples/s, core busy", ",.0f"),
            ("busy_slowdown", "slowdown, core busy", ".2f"), ("peak_rss_mb", "peak RSS MB", ",.0f")]
    table = _report.markdown_table(rows, cols)
    build_cols = [("format", "format", ""), ("path", "cache", ""), ("workers", "workers", "d"),
                  ("samples_per_s", "build samples/s", ",.0f"), ("samples", "samples", ",d"),
                  ("bytes", "bytes on disk", ",d"), ("bytes_per_sample", "bytes / sample", ",.0f")]
    for b in builds:
        b["bytes_per_sample"] = b["bytes"] / b["samples"] if b["samples"] else None
    build_table = _report.markdown_table(builds, build_cols)
    print(table)
    print()
    print(build_table)
    paths = _report.write_results(
        args.out, "data", "Data path: model-ready samples/s, per-sample path vs packed caches",
        _report.command_line("exodus-lightning bench data", argv), _report.machine_info(args.device),
        [table, build_table], {"config": vars(args), "elapsed_s": elapsed, "rows": rows, "builds": builds},
        notes=[__doc__.split("\n\n", 1)[1].strip()],
    )
    _report.print_paths(paths)
    return 0
