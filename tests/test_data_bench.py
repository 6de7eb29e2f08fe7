"""The data benchmarks run through the console entry point at tiny sizes and report what they
measured (commands, not timed tests: nothing here asserts a speed)."""

from __future__ import annotations

import json
import math
import os

import pytest

from exodus_lightning.cli import main


@pytest.mark.slow
def test_bench_data_reports_each_path_and_the_cache_builds(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["bench", "data", "--formats", "shd,dvs32", "--shd-samples", "24", "--dvs-samples", "22",
               "--dvs-events", "400", "--workers", "0", "--build-workers", "0", "--baseline-samples", "16",
               "--tmp-dir", str(tmp_path), "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "data.json").read_text())
    rows = {(r["format"], r["path"], r["cache"]): r for r in result["rows"]}
    assert set(rows) == {(f, p, c) for f in ("shd", "dvs32")
                         for p, c in (("per-sample", ".npz"), ("packed", "disk"), ("packed", "device"))}
    for (fmt, path, _), r in rows.items():
        # a whole pass: the per-sample path over its --baseline-samples, the packed path over the split
        assert r["samples"] == (16 if path == "per-sample" else (24 if fmt == "shd" else 22))
        assert r["samples_per_s"] > 0 and r["peak_rss_mb"] > 50
        if path == "packed":
            assert math.isclose(r["speedup"], r["samples_per_s"] / rows[(fmt, "per-sample", ".npz")]["samples_per_s"])
    builds = {(b["format"], b["path"]): b for b in result["builds"]}
    assert builds[("shd", "packed")]["samples"] == 24 + 6  # train + test
    assert builds[("shd", "packed")]["bytes"] > 0 and builds[("shd", "per-sample .npz")]["samples"] == 16
    assert builds[("shd", "per-sample .npz")]["bytes_per_sample"] == builds[("shd", "per-sample .npz")]["bytes"] / 16
    assert "model-ready samples/s" in capsys.readouterr().out
    assert [p for p in os.listdir(tmp_path) if p != "out"] == []  # generated files removed


def test_bench_data_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "data", "--formats", "shd,mnist"])
    assert "--formats takes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "data", "--workers", "0,x"])
    assert "comma-separated integers" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_epoch_splits_an_epoch_of_the_shd_config(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "epoch", "--shd-samples", "300", "--workers", "0", "--tmp-dir", str(tmp_path),
                 "--out", str(out)]) == 0
    (row,) = json.loads((out / "epoch.json").read_text())["rows"]
    assert row["samples"] == 270 and row["batches"] == 3  # val_fraction 0.1 of configs/shd.yaml, batch 128
    assert row["wait_s"] > 0 and row["step_s"] > 0 and 0 < row["wait_fraction"] < 1
    assert math.isclose(row["wait_fraction"], row["wait_s"] / (row["wait_s"] + row["step_s"]))
