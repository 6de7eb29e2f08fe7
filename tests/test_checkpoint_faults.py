"""Fault injection for what must never be lost (issue 22, item 4): a process SIGKILLed while it
writes a checkpoint leaves the previous ``last.ckpt`` loadable; a truncated or corrupted
``--ckpt_path`` is an error naming the file, not a pickle traceback; no space left while saving a
checkpoint or the W&B run is a clear error and the previous checkpoint stays loadable."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from exodus_lightning.checkpoint_io import AtomicCheckpointIO, CorruptCheckpointError, verify_checkpoint
from exodus_lightning.tracking import IncompleteRunError, check_run_file, finish_wandb_run

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "scripts"
TINY = ["-c", str(ROOT / "configs" / "quickstart.yaml"), "--data.init_args.n_train", "192",
        "--data.init_args.n_val", "64", "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}


def _cli(cwd: Path, *args: str, launcher: tuple[str, ...] = ("-m", "exodus_lightning.cli")) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *launcher, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=600)


def _checkpoints(cwd: Path) -> Path:
    (folder,) = glob.glob(str(cwd / "exodus-lightning" / "*" / "checkpoints"))
    return Path(folder)


def test_a_kill_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path):
    # The system temp folder on another file system (as /tmp on a cluster node and checkpoints on
    # a shared disk): a writer that moves a temp file from there copies it into the target.
    other_fs = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    tmpdir = Path(tempfile.mkdtemp(dir=other_fs))
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    writer = subprocess.Popen([sys.executable, str(SCRIPTS / "checkpoint_writer.py"), "atomic", str(folder)],
                              stdout=subprocess.PIPE, text=True, env=_env(TMPDIR=str(tmpdir)))
    try:
        assert writer.stdout.readline().strip() == "saved 0"
        complete = (folder / "last.ckpt").stat().st_size
        # SIGKILL as soon as the next checkpoint is half-written anywhere in the folder
        caught, deadline = None, time.monotonic() + 120
        while caught is None and time.monotonic() < deadline:
            for entry in os.scandir(folder):
                try:
                    size = entry.stat().st_size
                except FileNotFoundError:
                    continue
                if 0 < size < complete or (entry.name == "last.ckpt" and size != complete):
                    caught = (entry.name, size)
                    break
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(30)
    finally:
        if writer.poll() is None:
            writer.kill()
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert caught is not None, "never saw a checkpoint being written"
    # the previous checkpoint, whole: every tensor equal to its k
    verify_checkpoint(folder / "last.ckpt")
    checkpoint = torch.load(folder / "last.ckpt")
    assert all(torch.equal(t, torch.full_like(t, checkpoint["k"])) for t in checkpoint["state_dict"].values())
    assert len(checkpoint["state_dict"]) == 64
    # the killed writer's temporary file is removed by the next save of that name
    again = subprocess.run([sys.executable, str(SCRIPTS / "checkpoint_writer.py"), "atomic", str(folder), "--once"],
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(os.listdir(folder)) == ["last.ckpt"]


def _bad_checkpoints(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.randn(20000)}, "epoch": 3}, good)
    data = good.read_bytes()
    truncated, flipped, empty = tmp_path / "truncated.ckpt", tmp_path / "flipped.ckpt", tmp_path / "empty.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF  # inside the weights: torch.load would return wrong numbers silently
    flipped.write_bytes(bytes(corrupt))
    empty.write_bytes(b"")
    return {"truncated": truncated, "flipped": flipped, "empty": empty}


def test_bad_checkpoint_files_are_named_errors(tmp_path):
    bad = _bad_checkpoints(tmp_path)
    for kind, why in [("truncated", "truncated"), ("flipped", "CRC-32"), ("empty", "empty")]:
        with pytest.raises(CorruptCheckpointError, match=why) as info:
            AtomicCheckpointIO().load_checkpoint(bad[kind])
        assert str(bad[kind]) in str(info.value)
        assert "good.ckpt" in str(info.value)  # what else there is to resume from


def test_a_corrupted_ckpt_path_is_a_short_error_naming_the_file(tmp_path):
    bad = _bad_checkpoints(tmp_path)
    for kind, why in [("truncated", "is truncated"), ("flipped", "does not match its CRC-32")]:
        done = _cli(tmp_path, "fit", *TINY, "--ckpt_path", str(bad[kind]))
        assert done.returncode == 1
        assert f"exodus-lightning: error: checkpoint {bad[kind]} is " in done.stderr and why in done.stderr
        assert "Traceback" not in done.stderr


def test_no_space_left_while_saving_a_checkpoint_is_a_clear_error_and_keeps_the_previous(tmp_path):
    # room for the first epoch's two checkpoints (about 0.4 MB each) and the config, not the second's
    done = _cli(tmp_path, "1000000", "fit", *TINY, "--trainer.max_epochs", "3",
                launcher=(str(SCRIPTS / "disk_full_cli.py"),))
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    folder = _checkpoints(tmp_path)
    assert f"exodus-lightning: error: could not save checkpoint {folder.relative_to(tmp_path)}" in done.stderr
    assert "no space left on device" in done.stderr and "the previous checkpoint of that name is kept" in done.stderr
    verify_checkpoint(folder / "last.ckpt")
    assert torch.load(folder / "last.ckpt")["epoch"] == 0
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs `unshare -rm` and a tmpfs mount (user namespaces)")
@pytest.mark.parametrize("full", ["run folder", "W&B folder"])
def test_a_really_full_disk(tmp_path, full):
    """A real full file system (a small tmpfs in a private mount namespace): under the whole run
    folder (checkpoints fill it), or under ./wandb only (W&B drops what it cannot write and exits 0)."""
    run = tmp_path / "run"  # the working directory: ./exodus-lightning (checkpoints) and ./wandb
    target, size = (run, "1200k") if full == "run folder" else (run / "wandb", "40k")
    target.mkdir(parents=True)
    command = " ".join([f"mount -t tmpfs -o size={size} tmpfs {target} && cd {run} &&", sys.executable, "-m",
                        "exodus_lightning.cli", "fit", *TINY, "--trainer.max_epochs", "4",
                        f"> {tmp_path / 'out.txt'} 2>&1; echo $? > {tmp_path / 'rc.txt'};",
                        f"cp -r {run / 'exodus-lightning'} {tmp_path / 'kept'}"])  # the tmpfs goes with the namespace
    subprocess.run(["unshare", "-rm", "sh", "-c", command], env=_env(), timeout=600)
    output = (tmp_path / "out.txt").read_text()
    assert (tmp_path / "rc.txt").read_text().strip() == "1", output[-3000:]
    assert "Traceback" not in output
    expected = "could not save checkpoint" if full == "run folder" else "was not written completely"
    assert "exodus-lightning: error: " in output and expected in output and "no space left on device" in output
    (last,) = glob.glob(str(tmp_path / "kept" / "*" / "checkpoints" / "last.ckpt"))
    verify_checkpoint(last)
    assert "state_dict" in torch.load(last)


def test_an_incomplete_w_and_b_run_file_is_detected(tmp_path):
    """A run file cut short (as by a full disk: wandb writes 32 KiB blocks) lacks the exit record."""
    import wandb

    run = wandb.init(project="p", dir=str(tmp_path), id="cutshort", mode="offline",
                     settings=wandb.Settings(silent=True))
    for step in range(2000):
        run.log({"x": float(step)})
    run_dir = Path(run.dir).parent
    finish_wandb_run()  # finish, wait for wandb's service to close the file, check it: complete
    path = run_dir / "run-cutshort.wandb"
    path.write_bytes(path.read_bytes()[:32768])
    with pytest.raises(IncompleteRunError, match="cutshort was not written completely"):
        check_run_file(run_dir, "cutshort")


def test_the_plugin_in_a_python_trainer_verifies_what_it_resumes(tmp_path):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from exodus_lightning.models import SpikingClassifier

    bad = _bad_checkpoints(tmp_path)["flipped"]
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", plugins=[AtomicCheckpointIO()])
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    data = DataLoader(TensorDataset(torch.rand(4, 5, 3), torch.arange(4) % 2), batch_size=2)
    with pytest.raises(CorruptCheckpointError, match="flipped.ckpt is corrupted"):
        trainer.fit(SpikingClassifier("3-2l", num_classes=2), data, ckpt_path=str(bad))
