"""The benchmark harnesses of issue 8 run on tiny shapes and write well-formed tables, JSON and PNGs
(nothing here asserts a speed), plus the gradient-fidelity acceptance as a real test: in float64
EXODUS weight gradients equal BPTT's on every layer of the paper's SSC network."""

from __future__ import annotations

import json
import math

import pytest
import torch

from exodus_lightning.bench import _report
from exodus_lightning.neuron_parameters import LIFParameters


def _table_ok(md: str) -> None:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) >= 3, md
    n = lines[0].count("|")
    assert all(ln.count("|") == n for ln in lines[:2]), md
    assert set(lines[1].replace("|", "").replace("-", "").replace(":", "")) <= {""}, md


def _outputs(tmp_path, name: str, pngs: list[str]) -> dict:
    md = (tmp_path / f"{name}.md").read_text()
    assert md.startswith("# ") and "Command: `exodus-lightning bench" in md and "Machine: " in md
    _table_ok(md)
    for png in pngs:
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, png
        assert f"![{png}]({png})" in md
    js = json.loads((tmp_path / f"{name}.json").read_text())
    assert js["benchmark"] == name and js["command"].startswith("exodus-lightning bench")
    assert js["machine"]["torch"] == torch.__version__ and js["machine"]["cpu_count"] >= 1
    return js


def test_markdown_table_is_well_formed():
    md = _report.markdown_table([{"a": 1.23456, "b": None}, {"a": float("nan"), "b": "x"}],
                                [("a", "A", ".2f"), ("b", "B", "")])
    assert md.splitlines() == ["| A | B |", "|---|---:|", "| 1.23 | – |", "| – | x |"]
    _table_ok(md)


# ----------------------------------------------------------------------------------- fidelity


def test_fidelity_exodus_equals_bptt_on_every_layer_float64():
    """Acceptance (issue 8): exodus cos-sim >= 0.999999 and |norm ratio - 1| <= 1e-5 on every layer."""
    from exodus_lightning.bench.fidelity import DEFAULT_ARCH, run_fidelity

    res = run_fidelity(DEFAULT_ARCH, batch=8, time_steps=150, seeds=(0, 1), dtype=torch.float64)
    for a in res["activity"]:  # the network is active, so the reset term matters
        assert all(r > 0.002 for r in a["hidden_rates"]), a
    ex = [r for r in res["rows"] if r["backend"] == "exodus"]
    sl = [r for r in res["rows"] if r["backend"] == "slayer"]
    assert len(ex) == len(sl) == 2 * 3
    for r in ex:
        assert r["cos_sim"] >= 0.999999, r
        assert abs(r["norm_ratio"] - 1) <= 1e-5, r
    # SLAYER: exact on the output layer (no spiking layer in between), off toward the input
    last = max(r["layer"] for r in sl)
    for r in sl:
        if r["layer"] == last:
            assert r["cos_sim"] >= 0.999999 and abs(r["norm_ratio"] - 1) <= 1e-6, r
    assert min(r["cos_sim"] for r in sl if r["layer"] == 1) < 0.999


def test_bench_fidelity_writes_table_json_png(tmp_path, capsys):
    from exodus_lightning.bench.fidelity import bench_fidelity

    rc = bench_fidelity(["--batch", "4", "--time-steps", "40", "--seeds", "1", "--out", str(tmp_path)])
    assert rc == 0
    assert "PASS" in capsys.readouterr().out
    js = _outputs(tmp_path, "fidelity", ["fidelity.png"])
    assert js["pass"] is True
    assert {(s["backend"], s["layer"]) for s in js["summary"]} == {(b, l) for b in ("exodus", "slayer") for l in (1, 2, 3)}
    assert all(0.0 <= s["norm_ratio"] for s in js["summary"])


def test_bench_grad_scale_writes_one_row_per_backend_scale_layer(tmp_path):
    from exodus_lightning.bench.fidelity import bench_grad_scale

    rc = bench_grad_scale(["--scales", "0.1,1", "--steps", "2", "--batch", "4", "--time-steps", "30",
                           "--out", str(tmp_path)])
    assert rc == 0
    js = _outputs(tmp_path, "grad_scale", ["grad_scale.png"])
    assert len(js["rows"]) == 2 * 2 * 3
    assert all(r["steps"] == 2 and r["mean_norm"] >= 0 for r in js["rows"])
    assert len(js["table"]) == 4


# ----------------------------------------------------------------------------------- layer


def test_bench_layer_tiny_shape_every_row_timed_or_skipped(tmp_path, capsys):
    from exodus_lightning.bench.layer import ROWS, bench_layer

    rc = bench_layer(["--device", "cpu", "--n", "16", "--T", "12", "--batch", "2", "--repeats", "1",
                      "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Linear(n,n) + LIF, n = 16" in out and "LIF only, n = 16" in out
    js = _outputs(tmp_path, "layer", ["layer.png"])
    res = js["results"]
    assert {r["row"] for r in res} == set(ROWS)
    assert {r["variant"] for r in res} == {"linear", "lif"}
    for r in res:
        if r["row"] in ("exodus", "slayer", "bptt"):
            assert "skipped" not in r, r
        if "skipped" in r:
            assert isinstance(r["skipped"], str) and r["skipped"]
        else:
            assert r["forward"] > 0 and r["backward"] > 0 and r["total"] > 0
            assert r["saved"] > 0 and "peak_rss" in r and 0 <= r["rate"] <= 1
            assert r["total_x"] > 0
    ex = [r for r in res if r["row"] == "exodus"]
    assert all(r["total_x"] == 1.0 for r in ex)


def test_bench_layer_scaling_curves(tmp_path):
    from exodus_lightning.bench.layer import bench_layer

    rc = bench_layer(["--device", "cpu", "--n", "8", "--T", "10", "--batch", "2", "--repeats", "1", "--variants", "lif",
                      "--rows", "exodus,slayer", "--scale-T", "8,16", "--scale-n", "4,8", "--scale-at-n", "8",
                      "--scale-repeats", "1", "--out", str(tmp_path)])
    assert rc == 0
    js = _outputs(tmp_path, "layer", ["layer.png", "layer_scaling.png"])
    sc = js["scaling"]
    assert sorted((r["scan"], r["T"] if r["scan"] == "T" else r["n"], r["row"]) for r in sc) == sorted(
        (k, v, b) for k, vs in (("T", (8, 16)), ("n", (4, 8))) for v in vs for b in ("exodus", "slayer"))


def test_missing_peer_is_a_skip_with_the_reason(monkeypatch):
    import importlib.util

    from exodus_lightning.bench import layer

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "snntorch" else real(name, *a))
    impl = layer.make_impl("snntorch", 8, torch.device("cpu"))
    assert impl.neuron is None and "snntorch not installed" in impl.skip


def test_bench_layer_rejects_bad_arguments():
    from exodus_lightning.bench.layer import bench_layer

    with pytest.raises(SystemExit):
        bench_layer(["--rows", "slayer"])  # exodus is the reference row
    with pytest.raises(SystemExit):
        bench_layer(["--variants", "conv"])


# ----------------------------------------------------------------------------------- poisson


def test_poisson_packed_training_equals_training_each_network_alone():
    """All (seed, lr, tau) networks share tensors; each must train exactly as if alone."""
    from exodus_lightning.bench.poisson import N_IN, train
    from exodus_lightning.data.poisson_fit import make_poisson_fit_task
    from exodus_lightning.functional import lif

    epochs = 6
    res = train("slayer", [0, 1], [1e-3, 3e-3], [10.0, 20.0], epochs)
    seed, li, lr, ji, tau = 1, 1, 3e-3, 0, 10.0
    x, y, _ = make_poisson_fit_task(seed=seed)
    g = torch.Generator().manual_seed(10_000 + seed)
    w1 = (torch.randn(N_IN, 25, generator=g) * math.sqrt(2.0 / N_IN)).requires_grad_()
    w2 = (torch.randn(25, generator=g) * math.sqrt(2.0 / 25)).requires_grad_()
    opt = torch.optim.Adam([w1, w2], lr=lr)
    for ep in range(epochs):
        opt.zero_grad()
        s = lif((x @ w1)[None], LIFParameters(tau_mem=tau), backend="slayer")
        o = lif((s @ w2)[..., None], LIFParameters(tau_mem=tau), backend="slayer")
        loss = ((o[0] - y) ** 2).mean()
        loss.backward()
        opt.step()
        assert float(res["loss"][ep, li, seed, ji]) == pytest.approx(loss.item(), abs=1e-7), ep


def test_bench_poisson_writes_table_json_pngs(tmp_path, capsys):
    from exodus_lightning.bench.poisson import bench_poisson

    rc = bench_poisson(["--epochs", "3", "--seeds", "2", "--lrs", "1e-3,3e-3", "--taus", "10", "--out", str(tmp_path)])
    assert rc == 0
    assert "Final loss at lr 0.001, tau 10" in capsys.readouterr().out
    js = _outputs(tmp_path, "poisson", ["poisson_loss.png", "poisson_grid.png", "poisson_raster.png"])
    assert [s["backend"] for s in js["summary"]] == ["exodus", "slayer"]
    for s in js["summary"]:
        assert len(s["first_match"]) == len(s["first_count"]) == 2 and s["final_mean"] >= 0
    assert len(js["grid"]["exodus"]) == 2 and len(js["grid"]["exodus"][0]) == 1
    assert len(js["curves"]["slayer"]) == 3
    assert len(js["targets"]) == 2 and all(len(t) == 4 for t in js["targets"])
    assert "Reduced run" in (tmp_path / "poisson.md").read_text()


# ----------------------------------------------------------------------------------- train speed


def test_bench_train_speed_tiny(tmp_path):
    from exodus_lightning.bench.train_speed import bench_train_speed

    rc = bench_train_speed(["--n-train", "8", "--batch", "4", "--time-steps", "10", "--epochs", "1",
                            "--out", str(tmp_path)])
    assert rc == 0
    js = _outputs(tmp_path, "train_speed", ["train_speed.png"])
    rows = {r["backend"]: r for r in js["rows"]}
    assert set(rows) == {"exodus", "slayer", "bptt", "exodus, nonfinite off"}
    assert all(r["epoch_s"] > 0 and r["batches"] == 2 and len(r["all_epoch_s"]) == 2 for r in rows.values())
    assert rows["exodus"]["x_exodus"] == 1.0 and rows["bptt"]["speedup_vs_bptt"] == 1.0
