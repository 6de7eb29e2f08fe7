"""``exodus-lightning slurm``: write (and optionally submit) an sbatch script whose Slurm directives
and Trainer arguments agree, so nobody hand-edits directives.

    exodus-lightning slurm --config configs/shd.yaml --nodes 2 --gpus-per-node 4 --time 24:00:00 \\
        [--cpus-per-task 8] [--partition gpu] [--job-name exo-shd] [--output exo-shd.sbatch] \\
        [--submit] [-- --trainer.max_epochs=50 --model.init_args.network=...]
    exodus-lightning slurm --config cfg.yaml --cpu --ntasks-per-node 2 --submit     # CPU DDP (gloo)

The script (see :func:`render_sbatch`) has

* ``--nodes`` = ``Trainer(num_nodes)``, ``--ntasks-per-node`` = ``Trainer(devices)`` = ``--gpus-per-node``
  (one task per GPU; ``--cpu``: no GPUs, ``accelerator=cpu``), ``--cpus-per-task``;
* ``--signal=SIGUSR1@90 --requeue --open-mode=append``: SIGUSR1 arrives 90 s before the time limit;
  :class:`~exodus_lightning.callbacks.SlurmAutoRequeue` (added by ``exodus-lightning fit``; DDP-safe,
  unlike Lightning's in-handler save) writes ``<run dir>/hpc_ckpt_<n>.ckpt`` on all ranks at the next
  batch end, requeues the job, and the restarted job resumes from it; the log file keeps growing
  across restarts;
* a stable run directory ``runs/$SLURM_JOB_ID`` (``--trainer.default_root_dir``) and W&B run id
  ``exo-$SLURM_JOB_ID`` (``WANDB_RUN_ID``, ``WANDB_RESUME=allow``): a requeued job keeps its job id,
  so it continues the same run in the same folder;
* a run-time guard: if ``sbatch -N``/``--ntasks-per-node`` on the command line changed the
  allocation, the job stops before ``srun`` with a message instead of starting a mismatched DDP;
* ``srun exodus-lightning fit -c CONFIG --trainer.num_nodes=N --trainer.devices=D ... EXTRA``.

Mismatches are errors before anything is written or submitted (:class:`ValueError` from
:func:`render_sbatch`, which checks the :class:`SbatchSpec` it renders; ``slurm_main`` prints it and
returns 2): e.g. ``--trainer.devices=2`` among the extra arguments with ``--gpus-per-node 4``. The
spec is the one representation that is checked; the tests read the rendered scripts back as their
independent check.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

__all__ = [
    "SbatchSpec",
    "render_sbatch",
    "example_templates",
    "slurm_main",
]

DEFAULT_PROGRAM = "exodus-lightning fit"
RUN_ROOT = "runs"
WANDB_ID_PREFIX = "exo-"
_TIME_RE = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")
_PARTITION_RE = re.compile(r"^[A-Za-z0-9_.,-]+$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$")
# Lightning's SLURMEnvironment treats these job names as interactive sessions and then neither
# uses the Slurm world size nor auto-requeues.
_INTERACTIVE_NAMES = {"bash", "interactive"}
# Trainer options the helper sets itself; extra arguments may repeat them only with the same value.
_MANAGED = ("num_nodes", "devices", "accelerator", "strategy", "default_root_dir")


@dataclass
class SbatchSpec:
    """Everything an sbatch script depends on. ``config=None`` renders a reusable template that takes
    the config as its first argument (``sbatch script.sbatch CONFIG.yaml [extra CLI args]``)."""

    nodes: int = 1
    ntasks_per_node: int = 1
    gpus_per_node: Optional[int] = None  # None: CPU job (--cpu)
    cpus_per_task: int = 8
    time: str = "24:00:00"
    job_name: str = "exo"
    config: Optional[str] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    mem: Optional[str] = None
    log: str = "%x-%j.out"
    chdir: Optional[str] = None
    strategy: Optional[str] = "ddp"
    signal_seconds: int = 90
    program: str = DEFAULT_PROGRAM
    setup: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    command_line: Optional[str] = None  # recorded in the header comment

    @property
    def cpu(self) -> bool:
        return self.gpus_per_node is None

    @property
    def world_size(self) -> int:
        return self.nodes * self.ntasks_per_node

    def trainer_args(self) -> dict[str, str]:
        """The Trainer arguments the script passes (values as written on the srun line)."""
        args = {
            "num_nodes": str(self.nodes),
            "devices": str(self.ntasks_per_node),
            "accelerator": "cpu" if self.cpu else "gpu",
        }
        if self.strategy and self.world_size > 1:
            args["strategy"] = self.strategy
        args["default_root_dir"] = f"{RUN_ROOT}/${{SLURM_JOB_ID}}"
        return args


# ---------------------------------------------------------------------------------------- checks


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        v = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if v <= 0 or str(v) != str(value).strip().lstrip("+"):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return v


def _check_spec(spec: SbatchSpec) -> None:
    _positive_int("--nodes", spec.nodes)
    _positive_int("--ntasks-per-node", spec.ntasks_per_node)
    _positive_int("--cpus-per-task", spec.cpus_per_task)
    if spec.gpus_per_node is not None:
        _positive_int("--gpus-per-node", spec.gpus_per_node)
        if spec.gpus_per_node != spec.ntasks_per_node:
            raise ValueError(
                f"--ntasks-per-node ({spec.ntasks_per_node}) must equal --gpus-per-node ({spec.gpus_per_node}): "
                "Lightning runs one task per GPU (Trainer devices == ntasks-per-node == gpus-per-node)"
            )
    if not _TIME_RE.match(spec.time or ""):
        raise ValueError(
            f"--time must be a Slurm time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS), got {spec.time!r}"
        )
    if not _NAME_RE.match(spec.job_name or ""):
        raise ValueError(f"--job-name must be letters, digits and _.+- only, got {spec.job_name!r}")
    if spec.job_name in _INTERACTIVE_NAMES:
        raise ValueError(
            f"--job-name {spec.job_name!r} makes Lightning treat the job as an interactive session "
            "(no Slurm world size, no auto-requeue); choose another name"
        )
    if spec.partition is not None and not _PARTITION_RE.match(spec.partition):
        raise ValueError(f"--partition must be a partition name (letters, digits, _.,-), got {spec.partition!r}")
    if spec.account is not None and not _NAME_RE.match(spec.account):
        raise ValueError(f"--account must be letters, digits and _.+- only, got {spec.account!r}")
    if spec.mem is not None and not _MEM_RE.match(spec.mem):
        raise ValueError(f"--mem must be a Slurm memory size such as 0, 64G or 32000M, got {spec.mem!r}")
    _positive_int("--signal-seconds", spec.signal_seconds)
    if not spec.program.strip():
        raise ValueError("--program must not be empty")
    if any(c in spec.log for c in "\n\"'$`"):
        raise ValueError(f"--log must be a plain file pattern, got {spec.log!r}")
    if spec.chdir is not None and any(c in spec.chdir for c in "\n\"'$`"):
        raise ValueError(f"--chdir must be a plain path, got {spec.chdir!r}")
    check_extra_args(spec)


def _extra_trainer_values(extra: Sequence[str]) -> dict[str, list[str]]:
    """``--trainer.<key>`` values among the extra arguments (``--k=v`` and ``--k v`` forms)."""
    found: dict[str, list[str]] = {}
    i = 0
    while i < len(extra):
        arg = extra[i]
        m = re.match(r"^--trainer\.([A-Za-z_][A-Za-z0-9_]*)(=(.*))?$", arg)
        if m:
            key = m.group(1)
            if m.group(2) is not None:
                value = m.group(3)
            elif i + 1 < len(extra):
                value = extra[i + 1]
                i += 1
            else:
                raise ValueError(f"extra argument {arg} has no value")
            found.setdefault(key, []).append(value)
        i += 1
    return found


def _as_device_count(value: str) -> Optional[int]:
    v = value.strip().strip("'\"")
    if re.fullmatch(r"\d+", v):
        return int(v)
    m = re.fullmatch(r"\[\s*(\d+(\s*,\s*\d+)*)?\s*,?\s*\]", v)
    if m:
        return len(re.findall(r"\d+", v))
    return None


def check_extra_args(spec: SbatchSpec) -> None:
    """Extra CLI arguments may not contradict the Trainer arguments that the directives imply."""
    managed = spec.trainer_args()
    for key, values in _extra_trainer_values(spec.extra_args).items():
        for value in values:
            if key == "num_nodes":
                if _as_device_count(value) != spec.nodes or "[" in value:
                    raise ValueError(
                        f"--trainer.num_nodes={value} in the extra arguments does not match --nodes {spec.nodes} "
                        f"(#SBATCH --nodes={spec.nodes})"
                    )
            elif key == "devices":
                if _as_device_count(value) != spec.ntasks_per_node:
                    what = "--ntasks-per-node" if spec.cpu else "--gpus-per-node"
                    raise ValueError(
                        f"--trainer.devices={value} in the extra arguments does not match {what} "
                        f"{spec.ntasks_per_node} (#SBATCH --ntasks-per-node={spec.ntasks_per_node}"
                        + ("" if spec.cpu else f", --gpus-per-node={spec.gpus_per_node}")
                        + "); Trainer devices must equal the tasks per node"
                    )
            elif key == "accelerator":
                v = value.strip().lower()
                ok = v == "cpu" if spec.cpu else v in ("gpu", "cuda", "auto")
                if not ok:
                    raise ValueError(
                        f"--trainer.accelerator={value} in the extra arguments does not match the job: "
                        + ("--cpu (accelerator cpu)" if spec.cpu else f"--gpus-per-node {spec.gpus_per_node} (accelerator gpu)")
                    )
            elif key == "strategy":
                if "strategy" in managed and value != managed["strategy"]:
                    raise ValueError(
                        f"--trainer.strategy={value} in the extra arguments conflicts with --strategy "
                        f"{managed['strategy']}; pass it as --strategy {value}"
                    )
            elif key == "default_root_dir":
                raise ValueError(
                    f"--trainer.default_root_dir={value} in the extra arguments replaces the job's stable run "
                    f"directory {RUN_ROOT}/$SLURM_JOB_ID (needed to resume after a requeue); remove it"
                )


# ------------------------------------------------------------------------------------- rendering


def _q(arg: str) -> str:
    return shlex.quote(arg)


def render_sbatch(spec: SbatchSpec) -> str:
    """The sbatch script for ``spec`` (checked first: raises ValueError on bad or mismatched input)."""
    _check_spec(spec)
    d: list[str] = []

    def directive(text: str, comment: str = "") -> None:
        d.append(f"#SBATCH {text:<24} # {comment}" if comment else f"#SBATCH {text}")

    directive(f"--job-name={spec.job_name}")
    if spec.partition:
        directive(f"--partition={spec.partition}")
    if spec.account:
        directive(f"--account={spec.account}")
    directive(f"--nodes={spec.nodes}", "== Trainer(num_nodes)")
    directive(f"--ntasks-per-node={spec.ntasks_per_node}",
              "== Trainer(devices): one task per " + ("process (CPU DDP over gloo)" if spec.cpu else "GPU"))
    if not spec.cpu:
        directive(f"--gpus-per-node={spec.gpus_per_node}", "== Trainer(devices)")
    directive(f"--cpus-per-task={spec.cpus_per_task}", "DataLoader workers per rank")
    if spec.mem:
        directive(f"--mem={spec.mem}")
    directive(f"--time={spec.time}")
    directive(f"--signal=SIGUSR1@{spec.signal_seconds}", "Lightning auto-requeue: checkpoint + requeue before the limit")
    directive("--requeue", "allow the requeue (same job id, same run)")
    directive("--open-mode=append", "one log across restarts")
    directive(f"--output={spec.log}")
    if spec.chdir:
        directive(f"--chdir={spec.chdir}")

    targs = spec.trainer_args()
    if spec.config is None:
        config_line = (
            'CONFIG="${1:?usage: sbatch $0 CONFIG.yaml [extra exodus-lightning fit arguments]}"\nshift\n'
            "# the directives fix these Trainer arguments: refuse them among the extra arguments\n"
            'for arg in "$@"; do\n'
            '  case "$arg" in\n'
            "    --trainer.num_nodes*|--trainer.devices*|--trainer.accelerator*|--trainer.default_root_dir*)\n"
            '      echo "exodus-lightning: $arg contradicts this script\'s #SBATCH directives;'
            ' generate a matching script with exodus-lightning slurm" >&2\n'
            "      exit 2 ;;\n"
            "  esac\n"
            "done"
        )
        extra = '"$@"'
    else:
        config_line = f"CONFIG={_q(spec.config)}"
        extra = " ".join(_q(a) for a in spec.extra_args)
    cmd = [spec.program.strip(), '-c "$CONFIG"']
    for key, value in targs.items():
        if key == "default_root_dir":
            cmd.append('--trainer.default_root_dir="$RUN_DIR"')
        else:
            cmd.append(f"--trainer.{key}={value}")
    srun = (
        f"srun --kill-on-bad-exit=1 --cpus-per-task={spec.cpus_per_task} \\\n    "
        + " \\\n    ".join(cmd)
        + (f" \\\n    {extra}" if extra else "")
    )
    header = "# Generated by exodus_lightning.slurm.render_sbatch"
    if spec.command_line:
        header += f":\n#   {spec.command_line}"
    if spec.config is None:
        header += ("\n# Usage: sbatch THIS_SCRIPT CONFIG.yaml [extra exodus-lightning fit arguments]"
                   "\n# (add --partition/--account on the sbatch command line if your site needs them).")
    header += ("\n# Regenerate instead of editing the directives (they must match the Trainer arguments below):"
               "\n#   exodus-lightning slurm --config CONFIG.yaml --nodes N --gpus-per-node G [--submit]")
    setup = "\n".join(spec.setup)
    alloc_check = (
        f'if [ "${{SLURM_JOB_NUM_NODES:-{spec.nodes}}}" != "{spec.nodes}" ] || '
        f'[ "${{SLURM_NTASKS_PER_NODE:-{spec.ntasks_per_node}}}" != "{spec.ntasks_per_node}" ]; then\n'
        f'  echo "exodus-lightning: allocation nodes=${{SLURM_JOB_NUM_NODES:-?}} ntasks-per-node=${{SLURM_NTASKS_PER_NODE:-?}}'
        f' does not match Trainer num_nodes={spec.nodes} devices={spec.ntasks_per_node};'
        f' regenerate the script with exodus-lightning slurm" >&2\n'
        f"  exit 2\nfi"
    )
    return f"""#!/bin/bash
{chr(10).join(d)}
{header}
set -euo pipefail

{config_line}
{setup + chr(10) if setup else ""}
{alloc_check}

# Stable across requeues (Slurm keeps the job id): the run directory (checkpoints, hpc_ckpt_*.ckpt
# that Lightning resumes from) and the W&B run id (online: the same run continues; offline: one
# segment per restart with this id, upload in order with `wandb sync`, see slurm/README.md).
RUN_DIR="{RUN_ROOT}/${{SLURM_JOB_ID}}"
mkdir -p "$RUN_DIR"
export WANDB_RUN_ID="{WANDB_ID_PREFIX}${{SLURM_JOB_ID}}"
export WANDB_RESUME=allow
export WANDB_DIR="$RUN_DIR"
export PYTHONUNBUFFERED=1
echo "exodus-lightning: job ${{SLURM_JOB_ID}} restart ${{SLURM_RESTART_COUNT:-0}} on ${{SLURM_JOB_NODELIST:-?}}: run dir $RUN_DIR, W&B id $WANDB_RUN_ID, world size {spec.world_size}"

{srun}
"""


def example_templates() -> dict[str, str]:
    """The templates checked in under ``slurm/`` (tests assert the files equal these)."""
    single = SbatchSpec(nodes=1, ntasks_per_node=4, gpus_per_node=4, cpus_per_task=8, time="24:00:00",
                        job_name="exo-single", mem="0")
    multi = SbatchSpec(nodes=2, ntasks_per_node=4, gpus_per_node=4, cpus_per_task=8, time="24:00:00",
                       job_name="exo-multi", mem="0")
    return {"single_node.sbatch": render_sbatch(single), "multi_node.sbatch": render_sbatch(multi)}


# ---------------------------------------------------------------------------------------- command


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="exodus-lightning slurm",
        allow_abbrev=False,
        description="Write an sbatch script for `exodus-lightning fit` whose Slurm directives match the "
        "Trainer arguments (nodes = num_nodes, ntasks-per-node = devices = gpus-per-node), with "
        "SIGUSR1 auto-requeue, a run dir runs/$SLURM_JOB_ID and W&B run id exo-$SLURM_JOB_ID; "
        "optionally submit it. Arguments after `--` go to `exodus-lightning fit`.",
    )
    p.add_argument("--config", "-c", required=True, help="LightningCLI config file (YAML)")
    p.add_argument("--nodes", default="1", help="nodes = Trainer num_nodes (default 1)")
    p.add_argument("--gpus-per-node", default=None, help="GPUs per node = tasks per node = Trainer devices")
    p.add_argument("--ntasks-per-node", default=None,
                   help="tasks per node = Trainer devices (default: --gpus-per-node; required with --cpu unless 1)")
    p.add_argument("--cpu", action="store_true", help="CPU job: no GPUs, Trainer accelerator cpu (DDP over gloo)")
    p.add_argument("--cpus-per-task", default="8", help="CPUs per task (DataLoader workers per rank; default 8)")
    p.add_argument("--time", default="24:00:00", help="time limit (default 24:00:00)")
    p.add_argument("--partition", default=None, help="Slurm partition")
    p.add_argument("--account", default=None, help="Slurm account")
    p.add_argument("--mem", default=None, help="memory per node (e.g. 0 = all, 64G)")
    p.add_argument("--job-name", default=None, help="job name (default exo-<config name>)")
    p.add_argument("--strategy", default="ddp", help="Trainer strategy when world size > 1 (default ddp)")
    p.add_argument("--signal-seconds", default="90", help="send SIGUSR1 this many seconds before the limit (90)")
    p.add_argument("--log", default="%x-%j.out", help="Slurm log file pattern (default %%x-%%j.out)")
    p.add_argument("--chdir", default=None, help="job working directory (default: the current directory)")
    p.add_argument("--setup", action="append", default=[],
                   help="shell line run before srun (e.g. 'source venv/bin/activate'); repeatable")
    p.add_argument("--program", default=DEFAULT_PROGRAM,
                   help="command srun runs (default 'exodus-lightning fit'; must accept LightningCLI arguments)")
    p.add_argument("--output", "-o", default=None, help="script path to write (default <job-name>.sbatch; '-' = stdout)")
    p.add_argument("--submit", action="store_true", help="submit with sbatch and print the job id")
    return p


def _spec_from_args(ns: argparse.Namespace, extra: list[str], argv: Sequence[str]) -> SbatchSpec:
    config = Path(ns.config)
    if not config.is_file():
        raise ValueError(f"--config: no such file {ns.config!r}")
    nodes = _positive_int("--nodes", ns.nodes)
    cpus = _positive_int("--cpus-per-task", ns.cpus_per_task)
    if ns.cpu:
        if ns.gpus_per_node is not None:
            raise ValueError(f"--gpus-per-node {ns.gpus_per_node} contradicts --cpu (a CPU job requests no GPUs)")
        ntasks = _positive_int("--ntasks-per-node", ns.ntasks_per_node) if ns.ntasks_per_node is not None else 1
        gpus = None
    else:
        if ns.gpus_per_node is None:
            raise ValueError("--gpus-per-node is required (or --cpu for a CPU job)")
        gpus = _positive_int("--gpus-per-node", ns.gpus_per_node)
        ntasks = _positive_int("--ntasks-per-node", ns.ntasks_per_node) if ns.ntasks_per_node is not None else gpus
    job_name = ns.job_name or ("exo-" + re.sub(r"[^A-Za-z0-9_.+-]", "_", config.stem))
    chdir = os.path.abspath(ns.chdir) if ns.chdir else os.getcwd()
    return SbatchSpec(
        nodes=nodes, ntasks_per_node=ntasks, gpus_per_node=gpus, cpus_per_task=cpus, time=ns.time,
        job_name=job_name, config=str(config.resolve()), partition=ns.partition, account=ns.account,
        mem=ns.mem, log=ns.log, chdir=chdir, strategy=ns.strategy,
        signal_seconds=_positive_int("--signal-seconds", ns.signal_seconds), program=ns.program,
        setup=list(ns.setup), extra_args=list(extra),
        command_line="exodus-lightning slurm " + " ".join(shlex.quote(a) for a in argv),
    )


def submit(script: Path) -> str:
    """``sbatch --parsable script``; returns the job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise RuntimeError("--submit: sbatch not found on PATH (is this a Slurm login node?)")
    r = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"sbatch failed (exit {r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip().split(";")[0]


def slurm_main(argv: list[str]) -> int:
    """``exodus-lightning slurm ...`` (``argv`` without the sub-command). Returns the exit code."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        own, extra = argv[:cut], argv[cut + 1:]
    else:
        own, extra = argv, []
    try:
        ns = _parser().parse_args(own)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed by argparse
        return int(e.code or 0)
    try:
        spec = _spec_from_args(ns, extra, argv)
        text = render_sbatch(spec)
    except ValueError as e:
        print(f"exodus-lightning slurm: error: {e}", file=sys.stderr)
        return 2
    if ns.output == "-":
        if ns.submit:
            print("exodus-lightning slurm: error: --submit needs a script file (--output PATH, not -)", file=sys.stderr)
            return 2
        sys.stdout.write(text)
        return 0
    out = Path(ns.output or f"{spec.job_name}.sbatch")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as e:
        print(f"exodus-lightning slurm: error: --output {str(out)!r}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (nodes={spec.nodes}, tasks/node={spec.ntasks_per_node}, "
          f"{'cpu' if spec.cpu else f'gpus/node={spec.gpus_per_node}'}, world size {spec.world_size})",
          file=sys.stderr)
    if ns.submit:
        try:
            job_id = submit(out)
        except RuntimeError as e:
            print(f"exodus-lightning slurm: error: {e}", file=sys.stderr)
            return 1
        print(f"Submitted batch job {job_id}")
    return 0


if __name__ == "__main__":
    sys.exit(slurm_main(sys.argv[1:]))
