"""scripts/gpu_acceptance.sh (issue 27) on a machine without a GPU: the dry mode runs end to end
(the wheels and build steps, the CUDA tests skipping with their reasons, the training and benchmark
commands as small CPU smoke runs) and writes a report that lists every step and every correctness check,
each GPU part skipped with the reason; the checks' bookkeeping; the op-level and training modules
import without tonic and W&B (the GPU machine has neither)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from exodus_lightning import gpu_acceptance as ga

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry mode is for machines without a GPU")
def test_dry_mode_end_to_end(tmp_path):
    out = tmp_path / "acceptance"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_acceptance.sh"), str(out), "--no-build", "--budget", "300",
         "--cpu-smoke", "--fit-steps", "22", "--layer-n", "32", "--layer-T", "10", "--layer-batch", "2",
         "--layer-repeats", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert report["mode"] == "dry" and report["ok"] is True
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == list(ga.STEPS)
    assert steps["wheels"]["status"] == "skipped" and "no wheels folder" in steps["wheels"]["reason"]
    assert steps["build"]["status"] == "skipped" and "--no-build" in steps["build"]["reason"]
    assert steps["environment"]["status"] == "passed"
    assert "libexodus_native" in steps["environment"]["data"]["exodus_info"]
    for name in ("cuda-tests", "quickstart", "layer-bench"):
        assert steps[name]["status"] == "skipped", name
        assert "GPU" in steps[name]["reason"], name
    # every correctness check listed, each skipped with the tests' reason
    checks = {c["check"]: c for c in report["checks"]}
    assert list(checks) == [key for key, _, _ in ga.CHECKS] + [ga.OTHER_CHECK[0]]
    for key, c in checks.items():
        assert c["status"] == "skipped" and c["tests"] > 0 and c["passed"] == 0, key
        assert "needs a CUDA GPU" in c["reason"], key
    assert "## Correctness checks" in md
    for key in checks:
        assert f"| {key} |" in md
    # the CPU smoke runs went through the real commands and their output was read back
    fit = steps["quickstart"]["data"]
    assert fit["accelerator"] == "cpu" and fit["samples_per_s_median"] > 0
    layer = steps["layer-bench"]["data"]
    rows = {(r["variant"], r["row"]) for r in layer["results"]}
    assert ("linear", "exodus") in rows and ("lif", "exodus") in rows
    assert layer["floor"] and layer["floor"][0]["exodus_over_floor"] > 0
    assert "Layer benchmark" in md and "memory-traffic floor" in md


def _case(module: str, function: str, outcome: str, message: str = "") -> dict:
    return {"module": module, "function": function, "id": f"{module}::{function}[x]", "outcome": outcome,
            "message": message}


def _all_checks_passing() -> list[dict]:
    return [_case(m, f, "passed") for _, _, tests in ga.CHECKS for m, f in tests]


def test_checks_pass_only_when_their_tests_pass():
    cases = _all_checks_passing() + [_case("test_cuda", "test_leaky_on_gpu", "passed")]
    assert all(c["status"] == "passed" for c in ga.check_results(cases))
    # one failing test fails its check (with its message) and only that one
    cases[0] = _case(*ga.CHECKS[0][2][0], "failed", "AssertionError: rel err 3e-3")
    result = {c["check"]: c for c in ga.check_results(cases)}
    assert result[ga.CHECKS[0][0]]["status"] == "failed" and "rel err 3e-3" in result[ga.CHECKS[0][0]]["reason"]
    assert sum(c["status"] == "failed" for c in result.values()) == 1


def test_a_missing_test_fails_its_check():
    cases = [c for c in _all_checks_passing() if c["function"] != "test_gpu_ops_match_cpu"]
    result = {c["check"]: c for c in ga.check_results(cases)}
    assert result["sparse-event"]["status"] == "failed"
    assert "no such test" in result["sparse-event"]["reason"] and "test_gpu_ops_match_cpu" in result["sparse-event"]["reason"]


def test_skips_beside_passes_are_reported():
    cases = _all_checks_passing() + [_case("test_event_cuda", "test_gpu_second_device", "skipped",
                                           "tests/test_event_cuda.py:256: needs two CUDA GPUs")]
    other = ga.check_results(cases)[-1]
    assert other["check"] == ga.OTHER_CHECK[0] and other["status"] == "skipped"
    assert other["reason"] == "needs two CUDA GPUs"


def test_every_check_names_existing_cuda_tests():
    """The checks' tests exist, under those names, in modules that carry the cuda marker (pytest -m cuda)."""
    files = ga.cuda_test_files()
    for _, _, tests in ga.CHECKS:
        for module, function in tests:
            path = f"tests/{module}.py"
            assert path in files, path
            tree = ast.parse((ROOT / path).read_text())
            assert function in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}, (module, function)


_BLOCK = """
import importlib, importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tonic", "wandb"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
for module in sys.argv[1:]:
    importlib.import_module(module)
print("ok")
"""


def test_op_level_and_training_modules_import_without_tonic_and_wandb():
    """The GPU machine has neither: the ops, the layer benchmark, this runner and the fit command line
    must not import them at module level."""
    modules = ["exodus_lightning.functional", "exodus_lightning.ops", "exodus_lightning.bench.layer",
               "exodus_lightning.bench.lif", "exodus_lightning.gpu_acceptance", "exodus_lightning.lightning_cli",
               "exodus_lightning.data.spike_patterns", "exodus_lightning.algorithms.sparse_sgd",
               "exodus_lightning.algorithms.event_driven"]
    done = subprocess.run([sys.executable, "-c", _BLOCK, *modules], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
