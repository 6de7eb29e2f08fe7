"""DDP-safe Slurm auto-requeue (:class:`exodus_lightning.callbacks.SlurmAutoRequeue`) without a
Slurm cluster: two CPU ranks started the way ``srun`` starts them (``SLURM_*`` variables, so
Lightning picks ``SLURMEnvironment``), a fake ``scontrol`` on PATH that records its arguments, and
the requeue signal delivered to *one* rank in the middle of training — the case in which
Lightning's own handler (checkpoint inside the handler, a collective) deadlocks DDP.  The real
cluster test (``test_slurm_cluster.py``) covers the requeue and the resume end to end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment

from exodus_lightning.callbacks import SlurmAutoRequeue

HELPERS = textwrap.dedent('''\
    import os
    import signal

    import lightning.pytorch as pl


    class SignalOneRank(pl.Callback):
        """Sends SIGUSR1 to rank `rank` only, as training batch `step` starts: that rank takes it
        while the other goes on into the step's forward, backward and gradient all-reduce."""

        def __init__(self, rank: int = 1, step: int = 2) -> None:
            self.rank, self.step = rank, step

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_rank == self.rank and trainer.global_step == self.step:
                print(f"EXO_TEST rank={trainer.global_rank} sends SIGUSR1 at step {self.step}", flush=True)
                os.kill(os.getpid(), signal.SIGUSR1)
    ''')

CONFIG = textwrap.dedent("""\
    seed_everything: 0
    trainer:
      accelerator: cpu
      devices: 2
      num_nodes: 1
      strategy: ddp
      max_steps: 6
      limit_val_batches: 0
      logger: false
      enable_progress_bar: false
      enable_model_summary: false
      enable_checkpointing: false
      callbacks:
        - class_path: exo_requeue_helpers.SignalOneRank
    model:
      class_path: exodus_lightning.models.SpikingClassifier
      init_args:
        network: "100-32l-20l"
        num_classes: 20
        optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1}}
    data:
      class_path: exodus_lightning.data.SpikePatternsDataModule
      init_args: {n_train: 64, n_val: 8, n_test: 8, n_time_steps: 50, max_shift_steps: 5, jitter_steps: 1.0, batch_size: 8}
    """)

FAKE_SCONTROL = '#!/bin/sh\necho "$@" >> "$EXO_SCONTROL_LOG"\n'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_requeue_signal_on_one_rank_checkpoints_all_ranks_and_requeues_once(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    scontrol = bindir / "scontrol"
    scontrol.write_text(FAKE_SCONTROL)
    scontrol.chmod(0o755)
    (tmp_path / "exo_requeue_helpers.py").write_text(HELPERS)
    work = tmp_path / "work"
    work.mkdir()
    (work / "c.yaml").write_text(CONFIG)
    log = tmp_path / "scontrol.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WANDB_", "PYTEST_"))}
    base.update(PATH=f"{bindir}{os.pathsep}{base.get('PATH', '')}", EXO_SCONTROL_LOG=str(log),
                PYTHONPATH=str(tmp_path) + (os.pathsep + base["PYTHONPATH"] if base.get("PYTHONPATH") else ""),
                OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
                SLURM_JOB_ID="4242", SLURM_JOB_NAME="exo-requeue-test", SLURM_NTASKS="2",
                SLURM_NTASKS_PER_NODE="2", SLURM_NODEID="0", SLURM_NODELIST="localhost")
    procs = []
    for rank in (0, 1):
        env = dict(base, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank))
        procs.append(subprocess.Popen([sys.executable, "-m", "exodus_lightning.cli", "fit", "-c", "c.yaml"], cwd=work,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=300)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("the ranks hung after the requeue signal reached one of them (DDP deadlock)")
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out[-4000:]}"
    assert "SLURMEnvironment" in outs[0] or "MEMBER: 1/2" in outs[0], outs[0][-3000:]
    assert "EXO_TEST rank=1 sends SIGUSR1 at step 2" in outs[1], outs[1][-3000:]
    # handled once, by both ranks at the same step boundary, after the batch the signal arrived in
    assert outs[0].count("Handling auto-requeue signal: 10 (at step 3, all ranks)") == 1, outs[0][-3000:]
    assert log.read_text().splitlines() == ["requeue 4242"]
    assert "Requeued SLURM job: 4242" in outs[0]
    (hpc,) = sorted(work.glob("hpc_ckpt_*.ckpt"))
    state = torch.load(hpc, map_location="cpu", weights_only=False)
    assert state["global_step"] == 3
    # training went on to the end (Slurm, not the callback, stops a requeued job)
    assert "`Trainer.fit` stopped: `max_steps=6` reached." in outs[0], outs[0][-3000:]


def _fake_trainer(environment) -> types.SimpleNamespace:
    return types.SimpleNamespace(strategy=types.SimpleNamespace(cluster_environment=environment))


def test_inert_outside_slurm_or_without_auto_requeue(monkeypatch: pytest.MonkeyPatch) -> None:
    """No handler is installed outside Slurm, with auto_requeue=False, or outside fit; inside, the
    handler is installed for fit and the previous one restored at teardown."""
    before = signal.getsignal(signal.SIGUSR1)
    cb = SlurmAutoRequeue()
    cb.setup(_fake_trainer(LightningEnvironment()), None, "fit")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "exo")
    cb.setup(_fake_trainer(SLURMEnvironment(auto_requeue=False)), None, "fit")
    cb.setup(_fake_trainer(SLURMEnvironment()), None, "validate")
    assert signal.getsignal(signal.SIGUSR1) is before
    cb.setup(_fake_trainer(SLURMEnvironment()), None, "fit")
    try:
        assert signal.getsignal(signal.SIGUSR1) not in (before, signal.SIG_DFL, signal.SIG_IGN)
        # SIGUSR1's default action ends the process: reaching the next line shows the handler took it
        # (what it does with it is the end-to-end test above)
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        cb.teardown(_fake_trainer(SLURMEnvironment()), None, "fit")
    assert signal.getsignal(signal.SIGUSR1) is before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_bad_check_interval_names_the_argument(bad) -> None:
    with pytest.raises(ValueError, match="check_every_n_steps"):
        SlurmAutoRequeue(check_every_n_steps=bad)
