"""``exodus-lightning bench cli``: how long the command line takes to answer, each command in a
fresh process (wall time, median of the repeats; rows interleaved so they share the machine's state).

Rows: the interpreter alone; ``import lightning.pytorch`` (what any LightningCLI help costs before it
prints a line); ``exodus-lightning --help``; ``exodus-lightning fit --help`` rendered by
LightningCLI (an empty help cache) and read from the cache (:mod:`exodus_lightning.help_cache`);
``exodus-lightning fit --model.help SpikingClassifier`` (never cached).  Printed with the ratios
rendered / Lightning import and cached / rendered, and the number of lines of each help.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

_PY = [sys.executable]
_CLI = [sys.executable, "-m", "exodus_lightning.cli"]
ROWS = [
    ("python -c pass", _PY + ["-c", "pass"]),
    ("import lightning.pytorch", _PY + ["-c", "import lightning.pytorch"]),
    ("exodus-lightning --help", _CLI + ["--help"]),
    ("fit --help (rendered)", _CLI + ["fit", "--help"]),
    ("fit --help (cached)", _CLI + ["fit", "--help"]),
    ("fit --model.help SpikingClassifier", _CLI + ["fit", "--model.help", "SpikingClassifier"]),
]


def _run(argv: list[str], cache: str) -> tuple[float, int]:
    env = {**os.environ, "XDG_CACHE_HOME": cache, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr[-2000:]}")
    return wall, done.stdout.count("\n")


def bench_cli(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="exodus-lightning bench cli", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs of each command (median reported)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats must be >= 1, got {a.repeats}")
    times: dict[str, list[float]] = {name: [] for name, _ in ROWS}
    lines: dict[str, int] = {}
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as cache:  # each repeat starts with an empty help cache
            for name, command in ROWS:
                wall, n = _run(command, cache)
                times[name].append(wall)
                lines[name] = n
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"{'command':<38} {'wall s':>8} {'lines':>6}")
    for name, _ in ROWS:
        print(f"{name:<38} {median[name]:8.2f} {lines[name]:6d}")
    print(f"fit --help rendered / import lightning.pytorch: "
          f"{median['fit --help (rendered)'] / median['import lightning.pytorch']:.2f}x")
    print(f"fit --help cached / rendered: {median['fit --help (cached)'] / median['fit --help (rendered)']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(bench_cli())
