"""Help and messages of the command line (issue 23, item 6), through the console script: the top
level lists every benchmark; ``--model.help`` shows the model's arguments, not every torch.nn class;
``fit --help`` is rendered once and then read from the cache; a default run prints no deprecation
warnings or adverts; a missing dataset is one message with the flag that downloads it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exodus_lightning.bench import BENCHMARKS

ROOT = Path(__file__).resolve().parents[1]


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "exodus-lightning"
    return [str(script)] if script.exists() else [sys.executable, "-m", "exodus_lightning.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {**env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1", "COLUMNS": "100", **extra}


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_console_script(), *args], cwd=tmp_path, env=_env(tmp_path, **env), capture_output=True,
                          text=True, timeout=600)


def test_top_level_help_lists_every_benchmark(tmp_path):
    done = _run(tmp_path, "--help")
    assert done.returncode == 0
    (bench,) = [line for line in done.stdout.splitlines() if line.strip().startswith("bench ")]
    assert re.findall(r"[\w-]+", bench.split(":", 1)[1]) == list(BENCHMARKS)
    assert {"lif", "data", "sparse", "event", "cli"} <= set(BENCHMARKS)


def test_model_help_shows_our_arguments_not_every_torch_class(tmp_path):
    done = _run(tmp_path, "fit", "--model.help", "SpikingClassifier")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for option, doc in [("--model.num_classes", "number of classes"), ("--model.neuron", "template neuron layer"),
                        ("--model.backend", "without its own"), ("--model.network", "architecture string")]:
        assert option in out and doc in out
    assert "torch.nn.Linear" not in out and "torch.nn.modules" not in out
    assert "--model.neuron.help CLASS shows its arguments" in out
    assert len(out.splitlines()) < 150


def test_fit_help_is_rendered_once_then_read_from_the_cache(tmp_path):
    first = _run(tmp_path, "fit", "--help")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "--trainer.max_epochs" in first.stdout and "--ckpt_path" in first.stdout
    assert "torch.nn.Linear" not in first.stdout
    # our callbacks are named; Lightning's long list of its own is not
    assert "exodus_lightning.callbacks.RasterPlot" in first.stdout
    assert "lightning.pytorch.callbacks.BackboneFinetuning" not in first.stdout
    # the second time Lightning cannot even be imported, and the help is the same
    no_lightning = ("import sys; sys.modules['lightning'] = None; from exodus_lightning.cli import main; "
                    "sys.exit(main(['fit', '--help']))")
    cached = subprocess.run([sys.executable, "-c", no_lightning], cwd=tmp_path, env=_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert cached.returncode == 0, cached.stderr[-2000:]
    assert cached.stdout == first.stdout
    # another terminal width is another text: rendered again (here: fails without Lightning)
    wider = subprocess.run([sys.executable, "-c", no_lightning], cwd=tmp_path, env=_env(tmp_path, COLUMNS="150"),
                           capture_output=True, text=True, timeout=120)
    assert wider.returncode != 0


def test_a_default_run_prints_no_deprecation_warnings_or_adverts(tmp_path):
    done = _run(tmp_path, "fit", "-c", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.max_epochs", "1",
                "--data.init_args.n_train", "192", "--data.init_args.n_val", "64", "--trainer.log_every_n_steps", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    for noise in ["deprecat", "Tip:", "litlogger", "anonymous", "Warning", "warn("]:
        assert noise not in out, f"{noise!r} in the output of a default run:\n{out[-3000:]}"
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in out


def test_a_missing_dataset_is_one_message_with_the_download_flag(tmp_path):
    done = _run(tmp_path, "fit", "-c", str(ROOT / "configs" / "shd.yaml"), "--data.init_args.data_dir",
                str(tmp_path / "nowhere"), "--trainer.max_epochs", "1")
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.startswith("exodus-lightning: error: ") or "\nexodus-lightning: error: " in done.stderr
    assert "--data.init_args.download true" in done.stderr
    assert str(tmp_path / "nowhere" / "SHD" / "shd_train.h5") in done.stderr


@pytest.mark.slow
def test_bench_cli_prints_every_row_and_the_ratios(tmp_path):
    done = _run(tmp_path, "bench", "cli", "--repeats", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    for row in ["import lightning.pytorch", "fit --help (rendered)", "fit --help (cached)",
                "fit --model.help SpikingClassifier"]:
        assert re.search(rf"^{re.escape(row)}\s+\d+\.\d+\s+\d+$", done.stdout, re.M), done.stdout
    assert re.search(r"fit --help cached / rendered: \d+\.\d+x", done.stdout)
