"""Shared helpers of the benchmark harnesses: machine description, markdown tables, JSON and
PNG output to an ``--out`` directory.

Every harness writes ``<out>/<name>.md`` (the command, the machine, the tables and links to the
figures), ``<out>/<name>.json`` (the same numbers, machine and command, for plots and diffs) and
one or more ``<out>/<name>*.png``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch

Column = tuple[str, str, Union[str, Callable[[Any], str]]]  # (key, header, format spec or function)


def command_line(prog: str, argv: Optional[Sequence[str]]) -> str:
    """The command that reproduces a run, e.g. ``exodus-lightning bench layer --quick``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([prog, *(shlex.quote(a) for a in args)])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> Optional[str]:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "exodus_lightning", "native"],
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: Union[str, torch.device] = "cpu") -> dict:
    """What produced a result: CPU/GPU model, core count, torch version and threads, commit, date."""
    device = torch.device(device)
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "commit": _git_commit(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    try:
        from importlib.metadata import version

        info["exodus_lightning"] = version("exodus_lightning")
    except Exception:  # noqa: BLE001 - not installed as a distribution (source checkout)
        info["exodus_lightning"] = None
    return info


def machine_line(info: dict) -> str:
    dev = info.get("gpu") or info["cpu"]
    return (f"{info['date']}; {info['device']} ({dev}), {info['cpu_count']} logical CPUs, "
            f"{info['torch_threads']} torch threads, torch {info['torch']}, python {info['python']}, "
            f"commit {info.get('commit') or 'unknown'}"
            + (f", load average {info['load_average_1min']:.1f}" if info.get("load_average_1min") is not None else ""))


def fmt(value: Any, spec: Union[str, Callable[[Any], str]]) -> str:
    if callable(spec):
        return spec(value)
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, (int, float)) and spec:
        return format(value, spec)
    return str(value)


def markdown_table(rows: Iterable[dict], columns: Sequence[Column]) -> str:
    """A GitHub markdown table of ``rows`` (dicts) with ``columns`` = (key, header, format)."""
    rows = list(rows)
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(k), f) for k, _, f in columns) + " |")
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_results(out: Optional[Union[str, Path]], name: str, title: str, command: str, machine: dict,
                  sections: Sequence[str], data: dict, figures: Sequence[tuple[str, Any]] = (),
                  notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``<out>/<name>.md``, ``<out>/<name>.json`` and the figures ``(file name, matplotlib Figure)``.

    Returns the written paths (empty when ``out`` is None: nothing is written, figures are closed).
    """
    plt = pyplot()
    paths: dict[str, Path] = {}
    if out is None:
        for _, fig in figures:
            plt.close(fig)
        return paths
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig_names = []
    for fname, fig in figures:
        p = out / fname
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        fig_names.append(fname)
        paths[fname] = p
    md = [f"# {title}", "", f"Command: `{command}`", "", f"Machine: {machine_line(machine)}", ""]
    for n in notes:
        md += [n, ""]
    for s in sections:
        md += [s, ""]
    for fname in fig_names:
        md += [f"![{fname}]({fname})", ""]
    md_path = out / f"{name}.md"
    md_path.write_text("\n".join(md).rstrip() + "\n")
    paths["md"] = md_path
    js_path = out / f"{name}.json"
    payload = {"benchmark": name, "title": title, "command": command, "machine": machine, **data}
    js_path.write_text(json.dumps(_jsonable(payload), indent=1) + "\n")
    paths["json"] = js_path
    return paths


def print_paths(paths: dict[str, Path]) -> None:
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths.values()))
