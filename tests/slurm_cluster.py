"""A one-node Slurm on localhost for the ``slurm``-marked tests (see
``../shared/research/peers_ecosystem.md`` §D): munged (as user munge), slurmctld, ``slurmd -N localhost``
with a container-friendly ``/etc/slurm/slurm.conf`` (no cgroups, no accounting, CPUs=2).

The session fixture :func:`slurm_cluster` skips with the reason when the binaries are missing (install
them with ``.ci/slurm-setup.sh``), when not root, or when the daemons do not come up. Every daemon it
started is stopped by PID at the end (munged only if it started it), jobs it knows of are cancelled
first, and a previous ``/etc/slurm/slurm.conf`` is restored.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

SLURM_CONF = Path("/etc/slurm/slurm.conf")
CTLD_PID = Path("/run/slurmctld.pid")
SLURMD_PID = Path("/run/slurmd.pid")
MUNGE_PID = Path("/run/munge/munged.pid")
LOG_DIR = Path("/var/log/slurm")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "munge", "unmunge")


def slurm_conf(cpus: int = 2, real_memory_mb: int = 8000) -> str:
    """The §D slurm.conf (one node ``localhost``, partition ``debug``)."""
    return f"""\
ClusterName=localcluster
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile={CTLD_PID}
SlurmdPidFile={SLURMD_PID}
SlurmctldLogFile={LOG_DIR}/slurmctld.log
SlurmdLogFile={LOG_DIR}/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={real_memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _which(name: str) -> Optional[str]:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _read_pid(path: Path) -> Optional[int]:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) else None


def _wait(cond, timeout: float, interval: float = 0.2):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            return v
        time.sleep(interval)


def _stop_pid(pid: int, timeout: float = 15.0) -> None:
    if not _pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not _wait(lambda: not _pid_alive(pid), timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait(lambda: not _pid_alive(pid), 5.0)


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} unreadable)"


def run(cmd: list[str], timeout: float = 30.0, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


@dataclass
class SlurmCluster:
    """A running one-node cluster; ``submitted`` job ids are cancelled at teardown."""

    cpus: int
    pids: dict[str, int] = field(default_factory=dict)  # daemon -> pid (only those we started)
    submitted: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ jobs
    def sbatch(self, script: Path, cwd: Path, env: Optional[dict] = None) -> str:
        r = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=30,
                           cwd=cwd, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"sbatch failed: {r.stderr.strip()}")
        job = r.stdout.strip().split(";")[0]
        self.submitted.append(job)
        return job

    def job_info(self, job: str) -> dict[str, str]:
        """``scontrol show job`` as a dict ({} once the controller forgot the job)."""
        r = run(["scontrol", "-o", "show", "job", job])
        if r.returncode != 0:
            return {}
        info: dict[str, str] = {}
        for tok in r.stdout.split():
            k, sep, v = tok.partition("=")
            if sep:
                info[k] = v
        return info

    def state(self, job: str) -> str:
        return self.job_info(job).get("JobState", "GONE")

    def in_queue(self, job: str) -> bool:
        r = run(["squeue", "-h", "-j", job, "-o", "%i"])
        return r.returncode == 0 and job in r.stdout.split()

    def wait_done(self, job: str, timeout: float) -> str:
        """Wait (bounded) until the job left the queue; returns its final state."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.state(job)
            if st in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                      "DEADLINE", "PREEMPTED", "GONE") and not self.in_queue(job):
                return st
            time.sleep(1.0)
        return f"TIMEOUT_WAITING({self.state(job)})"

    def cancel_all(self) -> None:
        for job in self.submitted:
            run(["scancel", job])
        _wait(lambda: not any(self.in_queue(j) for j in self.submitted), 20.0, 0.5)

    # -------------------------------------------------------------- daemons
    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                _stop_pid(pid)


def _real_memory_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 2000


def start_cluster() -> tuple[Optional[SlurmCluster], str, Optional[str]]:
    """Start munged/slurmctld/slurmd. Returns ``(cluster, "", previous_conf)`` or ``(None, reason, ...)``
    (everything started is stopped again on failure)."""
    missing = [b for b in BINARIES if _which(b) is None]
    if _which("munged") is None:
        missing.append("munged")
    if missing:
        return None, f"Slurm/munge binaries missing: {', '.join(missing)} (run .ci/slurm-setup.sh)", None
    if os.geteuid() != 0:
        return None, "the local Slurm cluster needs root (munged as user munge, slurmd as root)", None
    if _read_pid(CTLD_PID) or _read_pid(SLURMD_PID):
        return None, f"a Slurm is already running here ({CTLD_PID} / {SLURMD_PID}); not touching it", None
    ncpu = os.cpu_count() or 1
    if ncpu < 2:
        return None, f"the 2-task Slurm tests need 2 CPUs, this machine has {ncpu}", None
    cpus = 2
    mem = max(1000, min(8000, _real_memory_mb() - 512))

    for d in ("/var/spool/slurmctld", "/var/spool/slurmd", str(LOG_DIR), "/run/munge"):
        os.makedirs(d, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    previous = SLURM_CONF.read_text() if SLURM_CONF.exists() else None
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(slurm_conf(cpus, mem))

    cluster = SlurmCluster(cpus=cpus)

    def fail(reason: str):
        cluster.stop()
        _restore_conf(previous)
        return None, reason, None

    # munge: reuse a running munged (and leave it running), else start ours as user munge
    if _read_pid(MUNGE_PID) is None:
        r = run(["runuser", "-u", "munge", "--", _which("munged")], timeout=20)
        pid = _wait(lambda: _read_pid(MUNGE_PID), 10.0)
        if r.returncode != 0 or pid is None:
            return fail(f"munged did not start (exit {r.returncode}): {r.stderr.strip()[-500:]}")
        cluster.pids["munged"] = pid
    chk = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, text=True, timeout=20)
    if "STATUS:          Success" not in chk.stdout and "Success" not in chk.stdout:
        return fail(f"munge -n | unmunge failed: {chk.stdout.strip()[-300:]} {chk.stderr.strip()[-300:]}")

    # slurmctld (-c: start from a clean state, no jobs left over from an aborted earlier run)
    r = run([_which("slurmctld"), "-c"], timeout=30)
    pid = _wait(lambda: _read_pid(CTLD_PID), 15.0)
    if pid is None:
        return fail(f"slurmctld did not start (exit {r.returncode}: {r.stderr.strip()[-300:]}); log:\n"
                    + _tail(LOG_DIR / "slurmctld.log"))
    cluster.pids["slurmctld"] = pid
    r = run([_which("slurmd"), "-N", "localhost"], timeout=30)
    pid = _wait(lambda: _read_pid(SLURMD_PID), 15.0)
    if pid is None:
        return fail(f"slurmd did not start (exit {r.returncode}: {r.stderr.strip()[-300:]}); log:\n"
                    + _tail(LOG_DIR / "slurmd.log"))
    cluster.pids["slurmd"] = pid

    def idle() -> bool:
        s = run(["sinfo", "-h", "-o", "%t"])
        return s.returncode == 0 and s.stdout.strip() == "idle"

    if not _wait(idle, 30.0, 0.5):
        s = run(["sinfo"])
        return fail(f"the node did not become idle: {s.stdout.strip()} {s.stderr.strip()}; slurmctld log:\n"
                    + _tail(LOG_DIR / "slurmctld.log"))
    return cluster, "", previous


def _restore_conf(previous: Optional[str]) -> None:
    try:
        if previous is None:
            SLURM_CONF.unlink(missing_ok=True)
        else:
            SLURM_CONF.write_text(previous)
    except OSError:
        pass


@pytest.fixture(scope="session")
def slurm_cluster():
    cluster, reason, previous = start_cluster()
    if cluster is None:
        pytest.skip(reason)
    try:
        yield cluster
    finally:
        cluster.cancel_all()
        cluster.stop()
        _restore_conf(previous)
