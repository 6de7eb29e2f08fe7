"""Reading a rendered sbatch script back, for the tests: its ``#SBATCH`` directives, the Trainer
arguments of its ``srun`` line, and the checks that they agree (an oracle independent of
:class:`exodus_lightning.slurm.SbatchSpec`, which the package checks before it renders)."""

from __future__ import annotations

import re
import shlex
from typing import Optional


def _count(value: str) -> Optional[int]:
    """A device count written as ``4`` or as a list of device ids ``[0, 1]``."""
    v = value.strip().strip("'\"")
    if v.isdigit():
        return int(v)
    if v.startswith("[") and v.endswith("]"):
        return len(re.findall(r"\d+", v))
    return None



def parse_directives(text: str) -> dict[str, str]:
    """``#SBATCH --key=value`` lines (before the first command) as ``{key: value}`` (flags map to '')."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or (s.startswith("#") and not s.startswith("#SBATCH")):
            continue
        if not s.startswith("#SBATCH"):
            break  # sbatch stops reading directives at the first command
        body = s[len("#SBATCH"):].split("#", 1)[0].strip()
        for tok in shlex.split(body):
            if tok.startswith("--"):
                k, _, v = tok[2:].partition("=")
                out[k] = v
    return out


def parse_srun_trainer_args(text: str) -> dict[str, str]:
    """The ``--trainer.<key>=value`` arguments of the script's ``srun`` command (continuation lines
    joined; later values win, as in LightningCLI)."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [ln for ln in joined.splitlines() if re.match(r"^\s*srun\s", ln)]
    if len(lines) != 1:
        raise ValueError(f"expected exactly one srun line in the script, found {len(lines)}")
    tokens = shlex.split(lines[0], posix=True)
    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        m = re.match(r"^--trainer\.([A-Za-z_][A-Za-z0-9_]*)(=(.*))?$", tokens[i])
        if m:
            if m.group(2) is not None:
                out[m.group(1)] = m.group(3)
            elif i + 1 < len(tokens):
                out[m.group(1)] = tokens[i + 1]
                i += 1
        i += 1
    return out


def validate_script(text: str) -> dict[str, str]:
    """Check a rendered script: its directives agree with the Trainer arguments of its srun line
    (nodes == num_nodes; ntasks-per-node == devices; gpus-per-node == devices unless CPU; the
    requeue directives are present). Returns the directives; raises ValueError naming both values."""
    d = parse_directives(text)
    t = parse_srun_trainer_args(text)
    for key in ("nodes", "ntasks-per-node", "signal", "requeue", "open-mode"):
        if key not in d:
            raise ValueError(f"the script has no #SBATCH --{key} directive")
    if not d["signal"].startswith("SIGUSR1@") and not d["signal"].startswith("USR1@"):
        raise ValueError(f"#SBATCH --signal={d['signal']} must send SIGUSR1 (Lightning's auto-requeue signal)")
    if d["open-mode"] != "append":
        raise ValueError(f"#SBATCH --open-mode={d['open-mode']} must be append (one log across requeues)")
    for key in ("num_nodes", "devices", "accelerator"):
        if key not in t:
            raise ValueError(f"the srun line passes no --trainer.{key}")
    if _count(t["num_nodes"]) != _count(d["nodes"]) or "[" in t["num_nodes"]:
        raise ValueError(f"#SBATCH --nodes={d['nodes']} does not match --trainer.num_nodes={t['num_nodes']}")
    devices = _count(t["devices"])
    if devices is None or devices != _count(d["ntasks-per-node"]):
        raise ValueError(
            f"#SBATCH --ntasks-per-node={d['ntasks-per-node']} does not match --trainer.devices={t['devices']}"
        )
    gpus = d.get("gpus-per-node")
    if gpus is None and "gres" in d:
        m = re.search(r"gpu(?::[^:,]+)?:(\d+)", d["gres"])
        gpus = m.group(1) if m else None
    if t["accelerator"] == "cpu":
        if gpus not in (None, "0"):
            raise ValueError(f"#SBATCH --gpus-per-node={gpus} on a job with --trainer.accelerator=cpu")
    else:
        if gpus is None:
            raise ValueError(f"--trainer.accelerator={t['accelerator']} but the script requests no GPUs (#SBATCH --gpus-per-node)")
        if _count(gpus) != devices:
            raise ValueError(f"#SBATCH --gpus-per-node={gpus} does not match --trainer.devices={t['devices']}")
    return d
