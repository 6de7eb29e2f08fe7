"""``exodus-lightning gpu-acceptance``: the CUDA path run, checked and timed on one GPU (issue 27).

Called by ``scripts/gpu_acceptance.sh`` after it has installed the wheels folder and built the native
libraries for the GPU's architecture (those two steps' outcomes arrive in ``--steps-file``).  Steps,
each timed, each given what is left of one wall-time budget (``--deadline``):

- ``environment``: the machine, the driver, the toolkit, the versions, ``exodus-lightning info``;
- ``cuda-tests``: every test marked ``cuda`` (pytest ``-m cuda`` over the test files that use the
  marker) on the real GPU, grouped into the issue's correctness checks (:data:`CHECKS`);
- ``quickstart``: ``exodus-lightning fit -c configs/quickstart.yaml`` on the GPU with ``bf16-mixed``
  for a few hundred steps, samples/s from the Throughput callback (through a CSV logger);
- ``layer-bench``: ``exodus-lightning bench layer`` on the GPU (n = 4096, 8192, 16384; Linear+LIF
  and LIF only; forward, backward, CUDA peak memory; every importable peer) in one process, plus the
  LIF-only rows against the memory-traffic floor (``bench lif``'s bytes per element over the
  device's measured copy bandwidth).

Without a GPU (or with ``--dry``) the GPU steps are reported as skipped with the reason; the tests
still run (and skip with theirs), and ``--cpu-smoke`` runs the training and benchmark commands on the
CPU at small sizes, so that their command lines and the parsing of their output are exercised.
Writes ``OUT/report.md`` and ``OUT/report.json``; the exit code is 1 when a correctness check or a
step failed, else 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("wheels", "build", "environment", "cuda-tests", "quickstart", "layer-bench")
LAYER_SIZES = (4096, 8192, 16384)
PACKAGES = ("torch", "lightning", "jsonargparse", "numpy", "triton", "cupy-cuda13x", "cupy-cuda12x", "snntorch",
            "norse", "sinabs", "sinabs-exodus", "spikingjelly", "tonic", "wandb", "exodus-lightning")
# The correctness checks: (key, what is checked, the tests that check it as (module, function)).
CHECKS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("grid", "CUDA results equal the float64 CPU reference on the gradient-equality grid (float64 1e-10, "
             "float32 1e-5 relative; spikes equal)",
     (("test_cuda", "test_grid_on_gpu_equals_cpu_reference"),)),
    ("float32-bit-identical", "float32 spikes, membrane and final state bit-identical to the CPU library "
                              "(and spikes to the float32 reference loop)",
     (("test_cuda_checks", "test_float32_forward_bit_identical_to_cpu"),)),
    ("half-types", "float16/bfloat16 inputs with float32 state: spikes equal the float32 scan of the rounded "
                   "input, gradients within 1e-2 (LIF, event fp16) / 5e-2 (event bf16) relative",
     (("test_cuda", "test_half_types_keep_float32_state"),
      ("test_mixed_precision", "test_cuda_lif_reads_half_inputs_with_float32_state"),
      ("test_event_cuda", "test_gpu_half_types_keep_float32_state"))),
    ("compile", "torch.compile(fullgraph=True) on CUDA equals eager (inductor LIF network; sparse-SGD and "
                "event-driven networks)",
     (("test_cuda_checks", "test_compiled_lif_network_on_cuda_equals_eager"),
      ("test_cuda_checks", "test_compiled_sparse_and_event_networks_on_cuda_equal_eager"))),
    ("stream", "kernels run on the caller's non-default stream of cuda:0 (behind pending work) and on the "
               "tensors' device",
     (("test_cuda_checks", "test_kernels_run_on_the_callers_stream_behind_pending_work"),
      ("test_cuda", "test_runs_on_the_callers_stream_and_device"),
      ("test_sparse_cuda", "test_gpu_runs_on_the_callers_stream_and_device"),
      ("test_event_cuda", "test_gpu_runs_on_the_tensors_device_and_the_callers_stream"))),
    ("sparse-event", "sparse-SGD and event-driven CUDA kernels equal their CPU versions (ops and a training "
                     "step)",
     (("test_sparse_cuda", "test_gpu_ops_match_cpu"), ("test_sparse_cuda", "test_gpu_training_step_matches_cpu"),
      ("test_event_cuda", "test_gpu_ops_match_cpu"),
      ("test_event_cuda", "test_gpu_training_step_of_the_event_driven_model"))),
)
OTHER_CHECK = ("other-cuda-tests", "every other test marked cuda")


@dataclass
class Step:
    """One step of the acceptance: ``status`` is passed, failed or skipped (with ``reason``)."""

    name: str
    status: str = "skipped"
    seconds: float = 0.0
    reason: str = ""
    data: dict = field(default_factory=dict)


class Budget:
    """The wall-time budget shared by the steps (a deadline in seconds since the epoch)."""

    def __init__(self, deadline: float, reserve: float = 15.0) -> None:
        self.deadline = deadline
        self.reserve = reserve  # kept back for writing the report

    def left(self) -> float:
        return self.deadline - self.reserve - time.time()


def _run(argv: list[str], timeout: float, log: Path, env: Optional[dict] = None) -> tuple[int, str]:
    """Run ``argv`` in the repository root with output to ``log`` (its tail returned).  At the timeout
    the command gets SIGINT first (pytest then still writes its report, Lightning stops cleanly), and
    is killed 20 s later; the exit code is then 124, as coreutils' timeout."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write("$ " + " ".join(argv) + "\n")
        f.flush()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        try:
            rc = proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = 124
    text = log.read_text(errors="replace")
    return rc, text[-3000:]


def _timed(step: Step, fn: Callable[[Step], None]) -> Step:
    t0 = time.perf_counter()
    try:
        fn(step)
    except Exception as e:  # noqa: BLE001 - one step's crash is its failure, the others still run
        step.status, step.reason = "failed", f"{type(e).__name__}: {e}"[:1000]
    step.seconds = time.perf_counter() - t0
    print(f"[gpu-acceptance] {step.name}: {step.status} ({step.seconds:.0f} s)"
          + (f" - {step.reason.splitlines()[0][:200]}" if step.reason else ""), flush=True)
    return step


# ----------------------------------------------------------------------------------------- environment


def _command_output(argv: list[str]) -> Optional[str]:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout or out.stderr).strip() or None


def environment(step: Step, gpu: bool, log: Path) -> None:
    import torch

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    data: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(terse=True),
        "cpu_count": os.cpu_count(), "torch_cuda": torch.version.cuda, "versions": versions,
        "nvcc": (_command_output(["nvcc", "--version"]) or "not found").splitlines()[-1],
        "cmake": (_command_output(["cmake", "--version"]) or "not found").splitlines()[0],
        "nvidia_smi": _command_output(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                                       "--format=csv,noheader"]),
        "cuda_architectures": os.environ.get("EXODUS_CUDA_ARCHITECTURES") or None,
        "native_lib": os.environ.get("EXODUS_NATIVE_LIB") or None,
    }
    if gpu:
        props = torch.cuda.get_device_properties(0)
        data.update(gpu=props.name, capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1))
    rc, info = _run([sys.executable, "-m", "exodus_lightning.cli", "info"], 120, log)
    data["exodus_info"] = info.strip()
    step.data = data
    if rc != 0:
        step.status, step.reason = "failed", f"exodus-lightning info exited with {rc}"
    else:
        step.status = "passed"


# ----------------------------------------------------------------------------------------- CUDA tests


def cuda_test_files(root: Path = ROOT) -> list[str]:
    """The test modules that carry the ``cuda`` marker (the real-GPU tests), relative to ``root``."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py")
                  if "pytest.mark.cuda" in p.read_text())


def parse_junit(path: Path) -> list[dict]:
    """One dict per test case of a JUnit XML file: module, function, id, outcome (passed, failed,
    error, skipped) and message."""
    cases = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        module = tc.get("classname", "").split(".")[-1]
        name = tc.get("name", "")
        outcome, message = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or child.text or "").strip()
                break
        cases.append({"module": module, "function": name.split("[")[0], "id": f"{module}::{name}",
                      "outcome": outcome, "message": message[:500]})
    return cases


def _skip_reason(message: str) -> str:
    # pytest's junit skip message is "reason" or "module.py:line: reason"
    return message.split(": ", 1)[1] if message.count(":") >= 2 and ".py:" in message else message


def check_results(cases: list[dict]) -> list[dict]:
    """Each check of :data:`CHECKS` (and the other cuda tests) with its status from its tests: failed
    when one failed or none was found, passed when at least one passed and none failed, else skipped
    with the tests' reasons."""
    claimed: set[str] = set()
    out = []
    groups = [(key, title, set(tests)) for key, title, tests in CHECKS]
    for key, title, tests in groups:
        mine = [c for c in cases if (c["module"], c["function"]) in tests]
        claimed.update(c["id"] for c in mine)
        out.append(_check(key, title, mine, required=tests))
    rest = [c for c in cases if c["id"] not in claimed]
    out.append(_check(*OTHER_CHECK, rest, required=set()))
    return out


def _check(key: str, title: str, cases: list[dict], required: set) -> dict:
    found = {(c["module"], c["function"]) for c in cases}
    missing = sorted(f"{m}::{f}" for m, f in required - found)
    counts = {o: sum(c["outcome"] == o for c in cases) for o in ("passed", "failed", "error", "skipped")}
    bad = [c for c in cases if c["outcome"] in ("failed", "error")]
    if missing:
        status, reason = "failed", "no such test (renamed or not collected): " + ", ".join(missing)
    elif bad:
        status = "failed"
        reason = "; ".join(f"{c['id']}: {c['message'].splitlines()[0] if c['message'] else c['outcome']}"
                           for c in bad[:5])[:1500]
    elif counts["passed"]:
        status = "passed"
        skipped = sorted({_skip_reason(c["message"]) for c in cases if c["outcome"] == "skipped"})
        reason = ("some skipped: " + "; ".join(skipped)) if skipped else ""
    elif cases:
        status, reason = "skipped", "; ".join(sorted({_skip_reason(c["message"]) for c in cases}))
    else:
        status, reason = "passed", "no other test"
    return {"check": key, "title": title, "status": status, "reason": reason, "tests": len(cases), **counts}


def cuda_tests(step: Step, out: Path, budget: Budget, reserve: float, pytest_args: list[str]) -> None:
    files = cuda_test_files()
    junit = out / "pytest.xml"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-m", "cuda",
            f"--junitxml={junit}", "-o", "junit_family=xunit2", *pytest_args, *files]
    timeout = budget.left() - reserve
    if timeout < 30:
        step.reason = f"time budget exhausted ({budget.left():.0f} s left)"
        return
    if junit.exists():
        junit.unlink()
    rc, tail = _run(argv, timeout, out / "pytest.log")
    if not junit.exists():
        step.status, step.reason = "failed", f"pytest exited with {rc} and wrote no report: {tail[-1500:]}"
        return
    cases = parse_junit(junit)
    checks = check_results(cases)
    step.data = {"files": files, "pytest_exit": rc, "cases": cases, "checks": checks,
                 "counts": {o: sum(c["outcome"] == o for c in cases) for o in ("passed", "failed", "error", "skipped")}}
    if rc == 124:
        step.status = "failed"
        step.reason = (f"pytest stopped at the time budget ({timeout:.0f} s): the checks whose tests it did not "
                       f"reach show as 'no such test'")
    elif rc not in (0, 1, 5) or any(c["status"] == "failed" for c in checks):
        step.status = "failed"
        step.reason = f"pytest exit {rc}; failed checks: " + ", ".join(c["check"] for c in checks if c["status"] == "failed")
    elif all(c["status"] == "skipped" or c["check"] == OTHER_CHECK[0] for c in checks) and not step.data["counts"]["passed"]:
        step.status = "skipped"
        step.reason = "every CUDA test skipped: " + "; ".join(
            sorted({_skip_reason(c["message"]) for c in cases if c["outcome"] == "skipped"}))
    else:
        step.status = "passed"


# ----------------------------------------------------------------------------------------- quickstart


def _metrics(log_dir: Path) -> list[dict]:
    rows: list[dict] = []
    for path in sorted(log_dir.rglob("metrics.csv")):
        with open(path) as f:
            rows += list(csv.DictReader(f))
    return rows


def quickstart(step: Step, out: Path, budget: Budget, reserve: float, accelerator: str, steps: int,
               extra: list[str]) -> None:
    fit_dir = out / "quickstart"
    if fit_dir.exists():
        shutil.rmtree(fit_dir)
    argv = [sys.executable, "-m", "exodus_lightning.cli", "fit", "--config", "configs/quickstart.yaml",
            f"--trainer.accelerator={accelerator}", "--trainer.devices=1", "--trainer.precision=bf16-mixed",
            f"--trainer.max_steps={steps}", f"--trainer.log_every_n_steps={min(25, max(1, steps // 10))}",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={fit_dir}",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.save_dir={fit_dir}", *extra]
    timeout = budget.left() - reserve
    if timeout < 30:
        step.status, step.reason = "skipped", f"time budget exhausted ({budget.left():.0f} s left)"
        return
    t0 = time.perf_counter()
    rc, tail = _run(argv, timeout, out / "quickstart.log")
    wall = time.perf_counter() - t0
    rows = _metrics(fit_dir)
    rates = [float(r["throughput/samples_per_s"]) for r in rows if r.get("throughput/samples_per_s")]
    accuracy = [float(r["val/accuracy"]) for r in rows if r.get("val/accuracy")]
    last_step = max((int(r["step"]) for r in rows if r.get("step")), default=None)
    step.data = {"command": " ".join(argv[3:]), "accelerator": accelerator, "max_steps": steps, "wall_s": wall,
                 "samples_per_s_median": statistics.median(rates) if rates else None,
                 "samples_per_s_last": rates[-1] if rates else None, "throughput_points": len(rates),
                 "val_accuracy_last": accuracy[-1] if accuracy else None, "last_logged_step": last_step}
    if rc != 0:
        step.status, step.reason = "failed", f"fit exited with {rc}: {tail[-1500:]}"
    elif not rates:
        step.status, step.reason = "failed", "the Throughput callback logged no samples/s (no metrics.csv rows)"
    else:
        step.status = "passed"


# ----------------------------------------------------------------------------------------- layer benchmark


def layer_bench(step: Step, out: Path, budget: Budget, device: str, sizes: list[int], T: int, batch: int,
                repeats: int, bandwidth_bytes: int) -> None:
    import torch

    from exodus_lightning.bench.lif import BYTES_PER_ELEMENT_FLOOR, copy_bandwidth

    layer_dir = out / "layer"
    argv = [sys.executable, "-m", "exodus_lightning.cli", "bench", "layer", "--device", device,
            "--n", ",".join(map(str, sizes)), "--T", str(T), "--batch", str(batch), "--variants", "linear,lif",
            "--repeats", str(repeats), "--slow-repeats", "1", "--out", str(layer_dir)]
    timeout = budget.left()
    if timeout < 30:
        step.status, step.reason = "skipped", f"time budget exhausted ({budget.left():.0f} s left)"
        return
    bandwidth = copy_bandwidth(torch.device(device), n_bytes=bandwidth_bytes)
    if device == "cuda":
        torch.cuda.empty_cache()  # the copy buffers back to the driver, for the benchmark's process
    rc, tail = _run(argv, budget.left(), out / "layer.log")
    result_file = layer_dir / "layer.json"
    if rc != 0 or not result_file.exists():
        step.status = "failed"
        step.reason = f"bench layer exited with {rc}" + (" (time budget)" if rc == 124 else "") + f": {tail[-1500:]}"
        return
    results = json.loads(result_file.read_text())["results"]
    floors = []
    for r in results:
        if r["row"] == "exodus" and r["variant"] == "lif" and "skipped" not in r:
            elements = r["batch"] * r["T"] * r["n"]
            floor = BYTES_PER_ELEMENT_FLOOR * elements / bandwidth
            floors.append({"n": r["n"], "T": r["T"], "batch": r["batch"], "exodus_s": r["total"], "floor_s": floor,
                           "exodus_over_floor": r["total"] / floor})
    step.data = {"command": " ".join(argv[3:]), "device": device, "copy_bandwidth_bytes_per_s": bandwidth,
                 "bytes_per_element_floor": BYTES_PER_ELEMENT_FLOOR, "results": results, "floor": floors}
    step.status = "passed"


# ----------------------------------------------------------------------------------------- report


def _ms(v: Any) -> str:
    return "–" if v is None else f"{v * 1e3:.2f}"


def _x(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}"


def _mib(v: Any) -> str:
    return "–" if v is None else f"{v / 2**20:.0f}"


def render(report: dict) -> str:
    from exodus_lightning.bench._report import markdown_table

    steps = {s["name"]: s for s in report["steps"]}
    env = steps["environment"]["data"]
    lines = ["# GPU acceptance", "",
             f"Mode: **{report['mode']}** ({report['mode_reason']}); result: **{'PASS' if report['ok'] else 'FAIL'}**; "
             f"{report['date']}; total {report['total_s']:.0f} s of a {report['budget_s']:.0f} s budget.", "",
             "## Machine", ""]
    lines += [f"- GPU: {env.get('gpu', 'none')}" + (f" (compute capability {env['capability']}, "
                                                    f"{env['multiprocessors']} SMs, {env['memory_gib']} GiB)"
                                                    if env.get("gpu") else ""),
              f"- nvidia-smi: {env.get('nvidia_smi') or 'not available'}",
              f"- CUDA toolkit: {env.get('nvcc')}; {env.get('cmake')}; torch CUDA {env.get('torch_cuda')}",
              f"- built for: {env.get('cuda_architectures') or 'the host only (no CUDA library)'}",
              f"- Python {env.get('python')}, {env.get('platform')}, {env.get('cpu_count')} CPUs",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(env.get("versions", {}).items())), ""]
    lines += ["## Steps", "", markdown_table(
        [dict(s, reason=s["reason"].replace("\n", " ").replace("|", "\\|")[:300]) for s in report["steps"]],
        [("name", "step", ""), ("status", "status", ""), ("seconds", "s", ".0f"), ("reason", "reason", "")]), ""]
    tests = steps["cuda-tests"]["data"]
    lines += ["## Correctness checks", ""]
    if tests.get("checks"):
        lines += [f"pytest -m cuda over {', '.join(tests['files'])}: " + ", ".join(f"{v} {k}" for k, v in tests["counts"].items()), "",
                  markdown_table([dict(c, reason=c["reason"].replace("|", "\\|")[:400]) for c in tests["checks"]],
                                 [("check", "check", ""), ("title", "what", ""), ("status", "status", ""),
                                  ("passed", "passed", "d"), ("failed", "failed", "d"), ("skipped", "skipped", "d"),
                                  ("reason", "reason", "")]), ""]
    else:
        lines += [f"not run: {steps['cuda-tests']['reason']}", ""]
    fit = steps["quickstart"]
    lines += ["## Quickstart training (bf16-mixed)", ""]
    if fit["data"].get("samples_per_s_median") is not None:
        d = fit["data"]
        lines += [f"`exodus-lightning {d['command']}`", "",
                  f"{d['accelerator']}: {d['samples_per_s_median']:.0f} samples/s (median of {d['throughput_points']} "
                  f"logged windows of 20 steps; last {d['samples_per_s_last']:.0f}), {d['last_logged_step']} steps, "
                  f"validation accuracy {'–' if d['val_accuracy_last'] is None else format(d['val_accuracy_last'], '.3f')}, "
                  f"{d['wall_s']:.0f} s wall" + ("" if fit["status"] != "skipped" else f" — CPU smoke run only; {fit['reason']}"), ""]
    else:
        lines += [f"{fit['status']}: {fit['reason']}", ""]
    layer = steps["layer-bench"]
    lines += ["## Layer benchmark (Open Neuromorphic protocol)", ""]
    if layer["data"].get("results"):
        d = layer["data"]
        if layer["status"] == "skipped":
            lines += [f"CPU smoke run only ({layer['reason']}):", ""]
        lines += [f"`exodus-lightning {d['command']}`; copy bandwidth of {d['device']}: "
                  f"{d['copy_bandwidth_bytes_per_s'] / 1e9:.0f} GB/s (read + write)", ""]
        cols = [("row", "row", ""), ("forward", "fwd ms", _ms), ("backward", "bwd ms", _ms), ("total", "total ms", _ms),
                ("total_x", "× exodus", _x), ("peak_alloc", "peak MiB", _mib), ("peak_alloc_x", "mem × exodus", _x),
                ("note", "implementation / skipped", "")]
        keys = list(dict.fromkeys((r["variant"], r["n"]) for r in d["results"]))
        for variant, n in keys:
            rows = [dict(r, note=r.get("skipped") or r.get("note", "")) for r in d["results"]
                    if (r["variant"], r["n"]) == (variant, n)]
            head = "Linear(n, n) + LIF" if variant == "linear" else "LIF only"
            lines += [f"**{head}, n = {n}, T = {rows[0]['T']}, batch {rows[0]['batch']}**", "",
                      markdown_table(rows, cols), ""]
        lines += [f"**exodus against the memory-traffic floor** (LIF only: {d['bytes_per_element_floor']} bytes per "
                  f"element / copy bandwidth)", "",
                  markdown_table(d["floor"], [("n", "n", "d"), ("exodus_s", "exodus ms", _ms), ("floor_s", "floor ms", _ms),
                                              ("exodus_over_floor", "exodus / floor", _x)]), ""]
    else:
        lines += [f"{layer['status']}: {layer['reason']}", ""]
    if env.get("exodus_info"):
        lines += ["## exodus-lightning info", "", "```", env["exodus_info"], "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def read_shell_steps(path: Optional[Path]) -> dict[str, Step]:
    """The steps the shell script ran before this one (tab-separated name, status, seconds, reason)."""
    steps: dict[str, Step] = {}
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            name, status, seconds, reason = (line.split("\t") + ["", "", "", ""])[:4]
            if name:
                steps[name] = Step(name, status, float(seconds or 0), reason)
    return steps


def gpu_acceptance_main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning gpu-acceptance`` (see the module docstring)."""
    p = argparse.ArgumentParser(prog="exodus-lightning gpu-acceptance", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--out", required=True, help="folder for report.md, report.json and the logs")
    p.add_argument("--deadline", type=float, default=None,
                   help="end of the wall-time budget, seconds since the epoch (default: now + --budget)")
    p.add_argument("--budget", type=float, default=480.0, help="wall-time budget in s when no --deadline (480)")
    p.add_argument("--started", type=float, default=None,
                   help="when the run began, seconds since the epoch (the shell script's start; default: now)")
    p.add_argument("--steps-file", default=None, help="outcomes of the shell script's steps (wheels, build)")
    p.add_argument("--dry", action="store_true", help="report every GPU step as skipped even if a GPU is present")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="in dry mode, run the training and benchmark commands on the CPU at small sizes")
    p.add_argument("--fit-steps", type=int, default=300, help="training steps of the quickstart (300)")
    p.add_argument("--layer-n", default=",".join(map(str, LAYER_SIZES)), help="layer widths (4096,8192,16384)")
    p.add_argument("--layer-T", type=int, default=500)
    p.add_argument("--layer-batch", type=int, default=16)
    p.add_argument("--layer-repeats", type=int, default=3, help="timed iterations per row (median; 3)")
    p.add_argument("--pytest-args", default="", help="extra pytest arguments (one string, split on spaces)")
    a = p.parse_args(argv)
    if a.fit_steps < 1 or a.layer_repeats < 1 or a.layer_T < 1 or a.layer_batch < 1:
        p.error("--fit-steps, --layer-repeats, --layer-T and --layer-batch must be >= 1")
    try:
        sizes = [int(v) for v in a.layer_n.split(",") if v.strip()]
    except ValueError:
        p.error(f"--layer-n must be comma-separated integers, got {a.layer_n!r}")
    if not sizes or min(sizes) < 1:
        p.error(f"--layer-n must be positive integers, got {a.layer_n!r}")
    t_start = a.started if a.started is not None else time.time()
    budget = Budget(a.deadline if a.deadline is not None else t_start + a.budget)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    gpu = torch.cuda.is_available() and not a.dry
    mode_reason = ("--dry" if a.dry else "torch.cuda.is_available() is False: no CUDA GPU or driver") if not gpu \
        else torch.cuda.get_device_name(0)
    no_gpu = f"no GPU ({mode_reason})"
    shell = read_shell_steps(Path(a.steps_file) if a.steps_file else None)
    steps = {name: shell.get(name, Step(name, "skipped", 0.0, "not run by scripts/gpu_acceptance.sh"))
             for name in ("wheels", "build")}

    steps["environment"] = _timed(Step("environment"), lambda s: environment(s, gpu, out / "info.log"))
    # time kept for the steps after the tests: the quickstart and the benchmark
    steps["cuda-tests"] = _timed(Step("cuda-tests"), lambda s: cuda_tests(
        s, out, budget, reserve=200 if gpu else 0, pytest_args=a.pytest_args.split()))
    if gpu:
        steps["quickstart"] = _timed(Step("quickstart"), lambda s: quickstart(
            s, out, budget, reserve=130, accelerator="gpu", steps=a.fit_steps, extra=[]))
        steps["layer-bench"] = _timed(Step("layer-bench"), lambda s: layer_bench(
            s, out, budget, "cuda", sizes, a.layer_T, a.layer_batch, a.layer_repeats, 1 << 30))
    else:
        steps["quickstart"] = Step("quickstart", reason=f"{no_gpu}: the quickstart trains on the GPU")
        steps["layer-bench"] = Step("layer-bench", reason=f"{no_gpu}: the layer benchmark times the GPU")
        if a.cpu_smoke:  # the same commands on the CPU, small: their command lines and parsing, no figures
            smoke = _timed(Step("quickstart"), lambda s: quickstart(
                s, out, budget, reserve=0, accelerator="cpu", steps=a.fit_steps,
                extra=["--trainer.limit_val_batches=2"]))
            steps["quickstart"].data, steps["quickstart"].seconds = smoke.data, smoke.seconds
            if smoke.status == "failed":
                steps["quickstart"].status, steps["quickstart"].reason = "failed", "CPU smoke run: " + smoke.reason
            smoke = _timed(Step("layer-bench"), lambda s: layer_bench(
                s, out, budget, "cpu", sizes, a.layer_T, a.layer_batch, 1, 64 << 20))
            steps["layer-bench"].data, steps["layer-bench"].seconds = smoke.data, smoke.seconds
            if smoke.status == "failed":
                steps["layer-bench"].status, steps["layer-bench"].reason = "failed", "CPU smoke run: " + smoke.reason

    ordered = [asdict(steps[name]) for name in STEPS]
    checks = steps["cuda-tests"].data.get("checks", [])
    ok = not any(s["status"] == "failed" for s in ordered) and not any(c["status"] == "failed" for c in checks)
    report = {"mode": "gpu" if gpu else "dry", "mode_reason": mode_reason, "ok": ok,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "total_s": time.time() - t_start, "budget_s": budget.deadline - t_start, "steps": ordered, "checks": checks}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "report.md").write_text(render(report))
    print(f"[gpu-acceptance] {'PASS' if ok else 'FAIL'} ({report['mode']} mode); wrote {out / 'report.md'} and "
          f"{out / 'report.json'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(gpu_acceptance_main())
