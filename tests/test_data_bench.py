"""Smoke test of the data-loading benchmark (tiny sizes)."""

from __future__ import annotations

from exodus_lightning.data.bench import bench_data


def test_bench_data_prints_rows(capsys, tmp_path):
    rc = bench_data(["--shd-samples", "8", "--dvs-users", "1", "--dvs-events", "300", "--workers", "0",
                     "--batch-size", "4", "--tmp-dir", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    rows = [line.split() for line in out[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("SHD", "none", "0"), ("SHD", "disk", "0"), ("DVS", "none", "0"), ("DVS", "disk", "0")]
    assert all(float(r[4]) > 0 for r in rows)
    assert list(tmp_path.iterdir()) == []  # generated files removed
