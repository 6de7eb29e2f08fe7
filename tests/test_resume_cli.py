"""``--ckpt_path last`` the way users type it (issue 23, item 1): a run of the quickstart stopped
after epoch 1 and started again with ``--ckpt_path last`` continues the same run — same checkpoint
folder, same W&B run id — and ends with the weights of an uninterrupted run, bit for bit (CPU,
RNGStateCallback in the shipped config).  Every launch is a fresh process of the console script."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from exodus_lightning.experiment import experiment_name, experiments_with_checkpoints, is_run_of, \
    newest_last_checkpoint
from tests.wandb_run_file import read_offline_run

ROOT = Path(__file__).resolve().parents[1]
TINY = ["-c", str(ROOT / "configs" / "quickstart.yaml"), "--data.init_args.n_train", "192",
        "--data.init_args.n_val", "64", "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false"]


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "exodus-lightning"
    return [str(script)] if script.exists() else [sys.executable, "-m", "exodus_lightning.cli"]


def _fit(cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONUNBUFFERED"] = "1"
    done = subprocess.run([*_console_script(), "fit", *TINY, *extra], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _final(cwd: Path) -> tuple[str, dict[str, torch.Tensor]]:
    (path,) = glob.glob(str(cwd / "exodus-lightning" / "*" / "checkpoints" / "last.ckpt"))
    return Path(path).parents[1].name, torch.load(path)["state_dict"]


@pytest.mark.slow
def test_ckpt_path_last_continues_the_run_bit_for_bit(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    straight.mkdir(), split.mkdir()
    _fit(straight, "--trainer.max_epochs", "3")

    # the first launch may already say --ckpt_path last: nothing to resume yet, a new run starts
    first = _fit(split, "--trainer.max_epochs", "1", "--ckpt_path", "last")
    assert "has no last.ckpt" in first.stderr
    resumed = _fit(split, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr

    run_id, weights = _final(split)
    _, reference = _final(straight)
    assert weights.keys() == reference.keys()
    for name in weights:
        assert torch.equal(weights[name], reference[name]), f"{name} differs from the uninterrupted run"

    # both launches wrote to one W&B run: the id of the checkpoint folder; the second one from epoch 1 on
    segments = [read_offline_run(d) for d in sorted(glob.glob(str(split / "wandb" / "offline-run-*")))]
    assert [s.run_id for s in segments] == [run_id, run_id]
    assert set(segments[0].metric("epoch")) == {0}
    assert set(segments[1].metric("epoch")) == {1, 2}


def test_the_experiment_is_the_model_data_and_seed():
    config = {"seed_everything": 0, "trainer": {"max_epochs": 1},
              "model": {"class_path": "exodus_lightning.models.SpikingClassifier", "init_args": {"network": "4-2l"}},
              "data": {"class_path": "D", "init_args": {"batch_size": 8, "data_dir": "/data", "num_workers": 2}}}
    name = experiment_name(config, "configs/shd.yaml")
    assert name.startswith("shd-")

    def changed(section: str, key: str, value) -> str:
        other = {**config, section: {**config[section], "init_args": {**config[section]["init_args"], key: value}}}
        return experiment_name(other, "configs/shd.yaml")

    # where the data is and how it is loaded, and the trainer, leave the experiment as it is
    assert changed("data", "data_dir", "/elsewhere") == name
    assert changed("data", "num_workers", 8) == name
    assert experiment_name({**config, "trainer": {"max_epochs": 50}}, "configs/shd.yaml") == name
    # what is learned makes another one
    assert changed("data", "batch_size", 16) != name
    assert changed("model", "network", "4-3l") != name
    assert experiment_name({**config, "seed_everything": 1}, "configs/shd.yaml") != name
    assert experiment_name(config, "configs/shd.yaml", name="My run #2") == "my-run-2"


def test_last_is_the_newest_last_checkpoint_of_the_experiment(tmp_path):
    def checkpoint(run: str, name: str, age: float) -> Path:
        path = tmp_path / run / "checkpoints" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (time.time() - age, time.time() - age))
        return path

    checkpoint("exp-0123abcd-00000001", "last.ckpt", 30)
    newest = checkpoint("exp-0123abcd-00000002", "last.ckpt", 10)
    checkpoint("exp-0123abcd-00000002", "epoch=3-step=9.ckpt", 0)  # not a last checkpoint
    checkpoint("exp-0123abcd-x-00000003", "last.ckpt", 0)  # a run of another experiment
    checkpoint("other-99999999-00000004", "last.ckpt", 0)
    found = newest_last_checkpoint(tmp_path, "exp-0123abcd")
    assert found is not None and found.path == newest and found.run_id == "exp-0123abcd-00000002"
    # a given run id (Slurm's WANDB_RUN_ID, --trainer.logger.init_args.id) looks in that run only
    assert newest_last_checkpoint(tmp_path, "exp-0123abcd", "exp-0123abcd-00000001").run_id == \
        "exp-0123abcd-00000001"
    assert newest_last_checkpoint(tmp_path, "nothing-here") is None
    assert newest_last_checkpoint(tmp_path / "missing", "exp-0123abcd") is None
    assert experiments_with_checkpoints(tmp_path) == ["exp-0123abcd", "exp-0123abcd-x", "other-99999999"]
    assert is_run_of("exp-0123abcd-00000002", "exp-0123abcd") and not is_run_of("exp-0123abcd-x-00000003",
                                                                                 "exp-0123abcd")
