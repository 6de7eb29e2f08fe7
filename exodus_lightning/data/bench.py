"""Data-loading throughput: ``exodus-lightning bench data`` or ``python -m exodus_lightning.data.bench``.

Writes SHD-format (HDF5) and DVS-Gesture-format (``.npy`` tree) files of realistic size into a
temporary folder and reports samples/s of one pass over the training DataLoader for
``cache="none"`` and ``cache="disk"`` (warm: after ``prepare_data`` built the cache, whose build
time is reported as well), with 0 and 2 workers. Worker start-up is included in the timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


__all__ = ["bench_data"]


def _pass(dm) -> tuple[int, float]:
    t = time.perf_counter()
    n = 0
    for batch in dm.train_dataloader():
        n += batch.x.shape[0]
    return n, time.perf_counter() - t


def bench_data(argv: list[str] | None = None) -> int:
    """Run the data-loading benchmark; print one line per configuration. Returns an exit code."""
    p = argparse.ArgumentParser(prog="exodus-lightning bench data", description=__doc__.split("\n\n")[0])
    p.add_argument("--shd-samples", type=int, default=256, help="SHD-format training samples")
    p.add_argument("--dvs-users", type=int, default=2, help="DVS users (x 2 lightings x 11 gestures samples)")
    p.add_argument("--dvs-events", type=int, default=30000, help="events per DVS sample")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=str, default="0,2", help="comma-separated worker counts")
    p.add_argument("--formats", type=str, default="shd,dvs", help="comma-separated: shd, dvs")
    p.add_argument("--tmp-dir", type=str, default=None, help="folder for the generated files (default: a temp dir)")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    for f in formats:
        if f not in ("shd", "dvs"):
            p.error(f"unknown format {f!r} (use shd, dvs)")

    from .dvs_gesture import DVSGestureDataModule
    from .fake_files import random_hsd_samples, write_dvsgesture_tree, write_shd
    from .shd import SHDDataModule

    root = tempfile.mkdtemp(prefix="exodus-bench-data-", dir=args.tmp_dir)
    try:
        print(f"{'format':<6} {'cache':<6} {'workers':>7} {'samples':>7} {'samples/s':>10}  note")
        for fmt in formats:
            if fmt == "shd":
                tr = random_hsd_samples(args.shd_samples, spikes=(2000, 8000), duration_s=(0.5, 1.0), seed=0)
                write_shd(root, "train", *tr)
                write_shd(root, "test", *random_hsd_samples(20, seed=1))

                def make(cache: str, nw: int, cache_dir: str):
                    return SHDDataModule(root, dt_ms=10.0, batch_size=args.batch_size, num_workers=nw,
                                         cache=cache, cache_dir=cache_dir, pin_memory=False)
                label = "SHD"
            else:
                write_dvsgesture_tree(root, True, args.dvs_users, n_events=args.dvs_events, duration_ms=1500, seed=0)
                write_dvsgesture_tree(root, False, 1, n_events=500, duration_ms=1500, seed=1)

                def make(cache: str, nw: int, cache_dir: str):
                    return DVSGestureDataModule(root, batch_size=args.batch_size, num_workers=nw, cache=cache,
                                                cache_dir=cache_dir, pin_memory=False)
                label = "DVS"
            for nw in workers:
                dm = make("none", nw, os.path.join(root, "unused"))
                dm.setup("fit")
                n, dt = _pass(dm)
                print(f"{label:<6} {'none':<6} {nw:>7} {n:>7} {n / dt:>10.1f}")
                cache_dir = os.path.join(root, f"cache-{fmt}-{nw}")
                dm = make("disk", nw, cache_dir)
                t = time.perf_counter()
                dm.prepare_data()
                build = time.perf_counter() - t
                dm.setup("fit")
                n, dt = _pass(dm)
                n_all = len(dm._raw["train"]) + len(dm._raw["test"])
                print(f"{label:<6} {'disk':<6} {nw:>7} {n:>7} {n / dt:>10.1f}  cache build {n_all / build:.1f} samples/s")
                del dm
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(bench_data())
