"""The sbatch templates under ``slurm/`` and the scripts ``exodus-lightning slurm`` generates: valid
bash, directives that match the Trainer arguments, mismatches and bad input rejected before anything
is written or submitted. No Slurm needed (``sbatch``/``srun`` are faked where a script is run)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from exodus_lightning.slurm import SbatchSpec, example_templates, render_sbatch, slurm_main
from tests.sbatch_script import parse_directives, parse_srun_trainer_args, validate_script

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((ROOT / "slurm").glob("*.sbatch"))
BASH = shutil.which("bash")


def bash_n(path: Path) -> None:
    r = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, f"bash -n {path}: {r.stderr}"


@pytest.fixture
def cfg(tmp_path) -> Path:
    p = tmp_path / "shd.yaml"
    p.write_text("trainer:\n  max_epochs: 1\n")
    return p


def gen(tmp_path: Path, cfg: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / "job.sbatch"
    rc = slurm_main(["--config", str(cfg), "--output", str(out), *args])
    return rc, out


# ------------------------------------------------------------------------------ checked-in files


def test_templates_exist():
    names = {p.name for p in TEMPLATES}
    assert {"single_node.sbatch", "multi_node.sbatch"} <= names, names
    assert (ROOT / "slurm" / "README.md").is_file()


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_passes_bash_n(path):
    bash_n(path)


def test_templates_are_rendered_not_hand_edited():
    expected = example_templates()
    for name, text in expected.items():
        assert (ROOT / "slurm" / name).read_text() == text, (
            f"slurm/{name} differs from exodus_lightning.slurm.example_templates(); regenerate it")


@pytest.mark.parametrize("name,nodes,tasks", [("single_node.sbatch", "1", "4"), ("multi_node.sbatch", "2", "4")])
def test_template_directives_match_trainer(name, nodes, tasks):
    text = (ROOT / "slurm" / name).read_text()
    d = validate_script(text)
    t = parse_srun_trainer_args(text)
    assert d["nodes"] == nodes == t["num_nodes"]
    assert d["ntasks-per-node"] == tasks == t["devices"] == d["gpus-per-node"]
    assert t["accelerator"] == "gpu" and t["strategy"] == "ddp"
    assert d["signal"] == "SIGUSR1@90" and "requeue" in d and d["open-mode"] == "append"
    assert "cpus-per-task" in d
    assert "srun " in text and "exodus-lightning fit" in text and '-c "$CONFIG"' in text
    assert 'RUN_DIR="runs/${SLURM_JOB_ID}"' in text and '--trainer.default_root_dir="$RUN_DIR"' in text
    assert 'export WANDB_RUN_ID="exo-${SLURM_JOB_ID}"' in text and "export WANDB_RESUME=allow" in text


# --------------------------------------------------------------------------- generated scripts


@pytest.mark.parametrize("nodes,gpus", [(1, 1), (1, 4), (2, 4), (4, 8)])
def test_generated_gpu_script(tmp_path, cfg, nodes, gpus):
    rc, out = gen(tmp_path, cfg, "--nodes", str(nodes), "--gpus-per-node", str(gpus), "--cpus-per-task", "6",
                  "--time", "1-00:00:00", "--partition", "gpu", "--job-name", "exo-t", "--",
                  "--trainer.max_epochs=3")
    assert rc == 0
    bash_n(out)
    text = out.read_text()
    d, t = parse_directives(text), parse_srun_trainer_args(text)
    assert d["nodes"] == t["num_nodes"] == str(nodes)
    assert d["ntasks-per-node"] == d["gpus-per-node"] == t["devices"] == str(gpus)
    assert d["cpus-per-task"] == "6" and d["time"] == "1-00:00:00" and d["partition"] == "gpu"
    assert d["job-name"] == "exo-t" and d["chdir"] == os.getcwd()
    assert t["accelerator"] == "gpu" and t["max_epochs"] == "3"
    assert ("strategy" in t) == (nodes * gpus > 1)
    assert f"CONFIG={cfg.resolve()}" in text
    validate_script(text)


def test_generated_cpu_script(tmp_path, cfg):
    rc, out = gen(tmp_path, cfg, "--cpu", "--ntasks-per-node", "2", "--cpus-per-task", "1")
    assert rc == 0
    bash_n(out)
    text = out.read_text()
    d, t = validate_script(text), parse_srun_trainer_args(text)
    assert "gpus-per-node" not in d and "gres" not in d
    assert d["nodes"] == t["num_nodes"] == "1" and d["ntasks-per-node"] == t["devices"] == "2"
    assert t["accelerator"] == "cpu" and t["strategy"] == "ddp"


def test_default_job_name_and_output(tmp_path, cfg, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert slurm_main(["--config", str(cfg), "--gpus-per-node", "2"]) == 0
    text = (tmp_path / "exo-shd.sbatch").read_text()
    assert parse_directives(text)["job-name"] == "exo-shd"


def test_output_to_stdout(cfg, capsys):
    assert slurm_main(["--config", str(cfg), "--gpus-per-node", "2", "--output", "-"]) == 0
    assert capsys.readouterr().out.startswith("#!/bin/bash\n#SBATCH --job-name=exo-shd")


def test_help(capsys):
    assert slurm_main(["--help"]) == 0
    assert "--gpus-per-node" in capsys.readouterr().out


def test_extra_args_are_quoted(tmp_path, cfg):
    rc, out = gen(tmp_path, cfg, "--gpus-per-node", "1", "--", "--model.init_args.network=100-32l-20l; rm -rf /",
                  "--trainer.max_epochs", "2")
    assert rc == 0
    bash_n(out)
    text = out.read_text()
    assert "'--model.init_args.network=100-32l-20l; rm -rf /'" in text
    assert parse_srun_trainer_args(text)["max_epochs"] == "2"


def test_matching_duplicates_in_extra_args_are_fine(tmp_path, cfg):
    rc, out = gen(tmp_path, cfg, "--nodes", "2", "--gpus-per-node", "4", "--", "--trainer.devices=4",
                  "--trainer.num_nodes", "2", "--trainer.accelerator=gpu", "--trainer.devices=[0,1,2,3]")
    assert rc == 0
    validate_script(out.read_text())


# ---------------------------------------------------------------------------------- mismatches


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--nodes", "2", "--gpus-per-node", "4", "--", "--trainer.devices=2"], ["--trainer.devices=2", "4"]),
        (["--gpus-per-node", "4", "--", "--trainer.devices", "8"], ["--trainer.devices=8", "4"]),
        (["--gpus-per-node", "4", "--", "--trainer.devices=auto"], ["--trainer.devices=auto", "4"]),
        (["--nodes", "2", "--gpus-per-node", "4", "--", "--trainer.num_nodes=1"], ["--trainer.num_nodes=1", "--nodes 2"]),
        (["--gpus-per-node", "4", "--", "--trainer.accelerator=cpu"], ["--trainer.accelerator=cpu", "--gpus-per-node 4"]),
        (["--cpu", "--ntasks-per-node", "2", "--", "--trainer.accelerator=gpu"], ["--trainer.accelerator=gpu", "--cpu"]),
        (["--cpu", "--ntasks-per-node", "2", "--", "--trainer.devices=4"], ["--trainer.devices=4", "--ntasks-per-node 2"]),
        (["--gpus-per-node", "4", "--ntasks-per-node", "2"], ["--ntasks-per-node (2)", "--gpus-per-node (4)"]),
        (["--cpu", "--gpus-per-node", "2"], ["--gpus-per-node 2", "--cpu"]),
        (["--gpus-per-node", "2", "--", "--trainer.strategy=fsdp"], ["--trainer.strategy=fsdp", "ddp"]),
        (["--gpus-per-node", "2", "--", "--trainer.default_root_dir=/tmp/x"], ["--trainer.default_root_dir=/tmp/x"]),
    ],
)
def test_mismatch_is_an_error_before_writing_or_submitting(tmp_path, cfg, capsys, monkeypatch, args, needles):
    calls = tmp_path / "sbatch_calls"
    fake_bin = _fake_bin(tmp_path, "sbatch", f'echo "$@" >> {calls}; echo 4242')
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    rc, out = gen(tmp_path, cfg, "--submit", *args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "error:" in err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists(), "a mismatched script was written"
    assert not calls.exists(), "sbatch was called for a mismatched script"


def test_build_script_raises_value_error_naming_both_values():
    spec = SbatchSpec(nodes=2, ntasks_per_node=4, gpus_per_node=4, config="c.yaml", extra_args=["--trainer.devices=2"])
    with pytest.raises(ValueError, match=r"--trainer\.devices=2.*--gpus-per-node 4"):
        render_sbatch(spec)
    with pytest.raises(ValueError, match=r"--ntasks-per-node \(2\) must equal --gpus-per-node \(4\)"):
        render_sbatch(SbatchSpec(nodes=1, ntasks_per_node=2, gpus_per_node=4))


@pytest.mark.parametrize(
    "old,new,needle",
    [
        ("#SBATCH --nodes=2", "#SBATCH --nodes=3", "--nodes=3 does not match --trainer.num_nodes=2"),
        ("#SBATCH --ntasks-per-node=4", "#SBATCH --ntasks-per-node=8", "--ntasks-per-node=8 does not match --trainer.devices=4"),
        ("#SBATCH --gpus-per-node=4", "#SBATCH --gpus-per-node=2", "--gpus-per-node=2 does not match --trainer.devices=4"),
        ("--trainer.devices=4", "--trainer.devices=2", "--ntasks-per-node=4 does not match --trainer.devices=2"),
        ("#SBATCH --signal=SIGUSR1@90", "#SBATCH --signal=SIGTERM@90", "SIGUSR1"),
        ("#SBATCH --open-mode=append", "#SBATCH --open-mode=truncate", "append"),
        ("#SBATCH --requeue", "#", "--requeue"),
    ],
)
def test_validate_script_catches_hand_edits(old, new, needle):
    text = example_templates()["multi_node.sbatch"]
    assert old in text
    with pytest.raises(ValueError) as e:
        validate_script(text.replace(old, new, 1))
    assert needle in str(e.value)


def test_validate_script_cpu_with_gpus_is_an_error(tmp_path, cfg):
    rc, out = gen(tmp_path, cfg, "--cpu", "--ntasks-per-node", "2")
    assert rc == 0
    text = out.read_text().replace("#SBATCH --cpus-per-task", "#SBATCH --gpus-per-node=2\n#SBATCH --cpus-per-task", 1)
    with pytest.raises(ValueError, match="gpus-per-node=2 on a job with --trainer.accelerator=cpu"):
        validate_script(text)


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--nodes", "0", "--gpus-per-node", "1"], "--nodes must be a positive integer, got '0'"),
        (["--nodes", "two", "--gpus-per-node", "1"], "--nodes must be a positive integer, got 'two'"),
        (["--gpus-per-node", "-1"], "--gpus-per-node must be a positive integer, got '-1'"),
        (["--gpus-per-node", "1.5"], "--gpus-per-node must be a positive integer"),
        (["--cpu", "--ntasks-per-node", "0"], "--ntasks-per-node must be a positive integer"),
        (["--gpus-per-node", "1", "--cpus-per-task", "0"], "--cpus-per-task must be a positive integer"),
        (["--nodes", "2"], "--gpus-per-node is required (or --cpu"),
        (["--gpus-per-node", "1", "--time", "tomorrow"], "--time must be a Slurm time limit"),
        (["--gpus-per-node", "1", "--time", "25:00:00:00"], "--time must be a Slurm time limit"),
        (["--gpus-per-node", "1", "--job-name", "bash"], "--job-name 'bash'"),
        (["--gpus-per-node", "1", "--job-name", "my job"], "--job-name must be"),
        (["--gpus-per-node", "1", "--partition", "a b"], "--partition must be"),
        (["--gpus-per-node", "1", "--mem", "lots"], "--mem must be"),
        (["--gpus-per-node", "1", "--signal-seconds", "0"], "--signal-seconds must be a positive integer"),
    ],
)
def test_bad_input_names_the_argument(tmp_path, cfg, capsys, args, needle):
    rc, out = gen(tmp_path, cfg, *args)
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err, err
    assert not out.exists()


def test_missing_config_names_the_argument(tmp_path, capsys):
    rc = slurm_main(["--config", str(tmp_path / "nope.yaml"), "--gpus-per-node", "1", "--output", str(tmp_path / "x")])
    assert rc == 2
    assert "--config: no such file" in capsys.readouterr().err


def test_missing_required_config(capsys):
    assert slurm_main(["--gpus-per-node", "1"]) == 2
    assert "--config" in capsys.readouterr().err


# ------------------------------------------------------------------------ submission and running


def _fake_bin(tmp_path: Path, name: str, body: str) -> Path:
    d = tmp_path / "fakebin"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(f"#!/bin/bash\n{body}\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return d


def test_submit_runs_sbatch_and_prints_job_id(tmp_path, cfg, capsys, monkeypatch):
    calls = tmp_path / "sbatch_calls"
    fake_bin = _fake_bin(tmp_path, "sbatch", f'echo "$@" >> {calls}; echo "4242;cluster"')
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    rc, out = gen(tmp_path, cfg, "--gpus-per-node", "2", "--submit")
    assert rc == 0
    assert capsys.readouterr().out.strip() == "Submitted batch job 4242"
    assert calls.read_text().split() == ["--parsable", str(out)]


def test_submit_reports_sbatch_failure(tmp_path, cfg, capsys, monkeypatch):
    fake_bin = _fake_bin(tmp_path, "sbatch", 'echo "sbatch: error: invalid partition" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    rc, _ = gen(tmp_path, cfg, "--gpus-per-node", "2", "--submit")
    assert rc == 1
    assert "invalid partition" in capsys.readouterr().err


def _run_script(tmp_path: Path, script: Path, env_extra: dict, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run a script with bash as Slurm would (job env vars set), ``srun`` faked: it records its
    arguments and the W&B variables."""
    rec = tmp_path / "srun_record"
    fake_bin = _fake_bin(tmp_path, "srun", f'printf "%s\\n" "$@" > {rec}; echo "WANDB_RUN_ID=$WANDB_RUN_ID WANDB_RESUME=$WANDB_RESUME" >> {rec}')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WANDB_"))}
    env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    env.update(env_extra)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    r = subprocess.run([BASH, str(script), *args], capture_output=True, text=True, env=env, cwd=work, timeout=60)
    return r, rec


def test_generated_script_runs_srun_with_matching_args(tmp_path, cfg):
    rc, out = gen(tmp_path, cfg, "--nodes", "2", "--gpus-per-node", "4", "--chdir", str(tmp_path / "work"),
                  "--", "--trainer.max_epochs=5")
    assert rc == 0
    r, rec = _run_script(tmp_path, out, {"SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS_PER_NODE": "4"})
    assert r.returncode == 0, r.stderr
    lines = rec.read_text().splitlines()
    assert lines[:2] == ["--kill-on-bad-exit=1", "--cpus-per-task=8"]
    assert lines[2:4] == ["exodus-lightning", "fit"]
    assert lines[4:6] == ["-c", str(cfg.resolve())]
    assert "--trainer.num_nodes=2" in lines and "--trainer.devices=4" in lines and "--trainer.accelerator=gpu" in lines
    assert "--trainer.default_root_dir=runs/77" in lines and lines[-2] == "--trainer.max_epochs=5"
    assert lines[-1] == "WANDB_RUN_ID=exo-77 WANDB_RESUME=allow"
    assert (tmp_path / "work" / "runs" / "77").is_dir()
    assert "job 77 restart 0" in r.stdout


@pytest.mark.parametrize("nodes,tasks", [("1", "4"), ("2", "2")])
def test_generated_script_refuses_a_changed_allocation(tmp_path, cfg, nodes, tasks):
    rc, out = gen(tmp_path, cfg, "--nodes", "2", "--gpus-per-node", "4")
    assert rc == 0
    r, rec = _run_script(tmp_path, out, {"SLURM_JOB_ID": "78", "SLURM_JOB_NUM_NODES": nodes, "SLURM_NTASKS_PER_NODE": tasks})
    assert r.returncode == 2
    assert "does not match Trainer num_nodes=2 devices=4" in r.stderr
    assert not rec.exists(), "srun ran with a mismatched allocation"


def test_checked_in_template_takes_config_and_extra_args(tmp_path, cfg):
    env = {"SLURM_JOB_ID": "79", "SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS_PER_NODE": "4"}
    r, rec = _run_script(tmp_path, ROOT / "slurm" / "single_node.sbatch", env, str(cfg), "--trainer.max_epochs=2")
    assert r.returncode == 0, r.stderr
    lines = rec.read_text().splitlines()
    assert lines[4:6] == ["-c", str(cfg)] and "--trainer.max_epochs=2" in lines and "--trainer.devices=4" in lines
    # the directives fix devices/num_nodes: the template refuses them as extra arguments
    rec.unlink()
    r, rec = _run_script(tmp_path, ROOT / "slurm" / "single_node.sbatch", env, str(cfg), "--trainer.devices=2")
    assert r.returncode == 2 and "--trainer.devices=2 contradicts" in r.stderr
    assert not rec.exists()
    # no config: usage error
    r, rec = _run_script(tmp_path, ROOT / "slurm" / "multi_node.sbatch", {"SLURM_JOB_ID": "80"})
    assert r.returncode != 0 and "usage: sbatch" in r.stderr
