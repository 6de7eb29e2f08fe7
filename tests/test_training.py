"""Training end to end: the CLI, the offline W&B run it writes, checkpoints, learning, configs."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.wandb_run_file import read_offline_run

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

TINY = textwrap.dedent("""\
    seed_everything: 0
    trainer:
      accelerator: cpu
      devices: 1
      max_epochs: 1
      log_every_n_steps: 2
      enable_progress_bar: false
      callbacks:
        - class_path: lightning.pytorch.callbacks.ModelCheckpoint
          init_args: {save_last: true}
        - class_path: exodus_lightning.callbacks.GradientNormMonitor
          init_args: {every_n_steps: 2}
        - class_path: exodus_lightning.callbacks.RasterPlot
          init_args: {every_n_epochs: 1}
        - class_path: exodus_lightning.callbacks.FiringRateMonitor
        - class_path: exodus_lightning.callbacks.ConfusionMatrixPlot
    model:
      class_path: exodus_lightning.models.SpikingClassifier
      init_args:
        network: "100-32l-20l"
        num_classes: 20
        neuron: {class_path: exodus_lightning.nn.LIF, init_args: {tau_mem: 20.0}}
        readout: {class_path: exodus_lightning.nn.LeakyIntegrator, init_args: {tau: 20.0}}
    data:
      class_path: exodus_lightning.data.SpikePatternsDataModule
      init_args: {n_train: 128, n_val: 64, n_test: 64, batch_size: 32, n_time_steps: 60}
    """)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exodus_lightning.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One epoch of ``exodus-lightning fit`` on the embedded dataset, in a fresh folder."""
    cwd = tmp_path_factory.mktemp("fit")
    (cwd / "tiny.yaml").write_text(TINY)
    proc = _cli(["fit", "-c", "tiny.yaml"], cwd)
    return cwd, proc


def test_fit_through_the_cli_exits_0_and_writes_a_checkpoint(fitted):
    cwd, proc = fitted
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpts = glob.glob(str(cwd / "**" / "last.ckpt"), recursive=True)
    assert ckpts, "no checkpoint written"
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and state["global_step"] == 4
    assert any(k.startswith("network.") for k in state["state_dict"])


def test_fit_writes_a_real_offline_wandb_run_with_the_metrics(fitted):
    cwd, proc = fitted
    runs = glob.glob(str(cwd / "wandb" / "offline-run-*"))
    assert len(runs) == 1, runs
    run = read_offline_run(runs[0])
    acc = run.metric("val/accuracy")
    assert len(acc) == 1 and 0.0 <= acc[0] <= 1.0
    assert run.metric("train/loss_step"), "per-step training loss missing"
    assert any(k.startswith("grad_norm/network.") for row in run.history for k in row)
    assert any(k.startswith("firing_rate/") for row in run.history for k in row)
    assert any(f.startswith("media/images/raster") for f in run.files), run.files
    assert any(f.startswith("media/images/confusion_matrix") for f in run.files), run.files
    assert run.config["network"] == "100-32l-20l" and run.config["num_classes"] == 20
    assert "SpikingClassifier" in run.config["cli_config"]
    assert run.exit_code == 0
    # the resolved config is saved in the run's own folder
    assert (Path(runs[0]) / "files" / "config.yaml").read_text().count("SpikingClassifier") == 1


def test_load_from_checkpoint_in_a_fresh_process_reproduces_predictions(fitted, tmp_path):
    from exodus_lightning.data.spike_patterns import SpikePatternsDataset
    from exodus_lightning.models import SpikingClassifier

    cwd, proc = fitted
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = glob.glob(str(cwd / "**" / "last.ckpt"), recursive=True)[0]
    ds = SpikePatternsDataset(8, split="test", n_time_steps=60)
    x = torch.stack([torch.as_tensor(ds[i][0]) for i in range(8)])
    torch.save(x, tmp_path / "x.pt")
    model = SpikingClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    with torch.no_grad():
        here = model.predict_step((x, torch.zeros(8, dtype=torch.long)), 0)
    script = textwrap.dedent(f"""
        import torch
        from exodus_lightning.models import SpikingClassifier
        m = SpikingClassifier.load_from_checkpoint({ckpt!r}, map_location="cpu").eval()
        x = torch.load({str(tmp_path / 'x.pt')!r})
        with torch.no_grad():
            torch.save(m.predict_step((x, torch.zeros(8, dtype=torch.long)), 0), {str(tmp_path / 'p.pt')!r})
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    there = torch.load(tmp_path / "p.pt")
    assert here.shape == (8, 20)
    assert torch.equal(here, there)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_parses(config, tmp_path):
    proc = _cli(["fit", "-c", str(config), "--print_config"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "class_path: exodus_lightning.models." in proc.stdout
    assert "lightning.pytorch.loggers.WandbLogger" in proc.stdout


def test_unknown_class_path_gives_lightningclis_error(tmp_path):
    proc = _cli(["fit", "--model", "exodus_lightning.models.NoSuchModel", "--data",
                 "exodus_lightning.data.SpikePatternsDataModule"], tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "NoSuchModel" in proc.stderr


def test_missing_required_argument_is_named(tmp_path):
    config = TINY.replace("    num_classes: 20\n", "")
    assert "num_classes" not in config
    (tmp_path / "c.yaml").write_text(config)
    proc = _cli(["fit", "-c", "c.yaml"], tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "num_classes" in proc.stderr


def test_online_only_when_logged_in():
    from exodus_lightning.tracking import wandb_mode

    assert wandb_mode({}) == "offline"
    assert wandb_mode({"WANDB_API_KEY": "x" * 40}) == "online"
    assert wandb_mode({"WANDB_API_KEY": "x" * 40, "WANDB_MODE": "offline"}) == "offline"
    assert wandb_mode({"WANDB_MODE": "online"}) == "online"


def test_backend_argument_switches_the_gradients():
    from exodus_lightning.models import SpikingClassifier
    from exodus_lightning.nn import LIF, LeakyIntegrator

    torch.manual_seed(0)
    x = torch.rand(4, 40, 10) * 1.5
    y = torch.tensor([0, 1, 2, 0])
    grads = {}
    for backend in ("exodus", "slayer"):
        torch.manual_seed(1)
        model = SpikingClassifier("10-16l-3l", num_classes=3, neuron=LIF(10.0), readout=LeakyIntegrator(10.0),
                                  backend=backend)
        loss = model.loss_fn(model(x), y)
        grads[backend] = torch.autograd.grad(loss, model.network[0].weight)[0]
    assert not torch.allclose(grads["exodus"], grads["slayer"])


def test_activity_regulariser_enters_the_loss():
    from exodus_lightning.losses import ActivityRegularizer
    from exodus_lightning.models import SpikingClassifier
    from exodus_lightning.nn import LIF

    torch.manual_seed(0)
    model = SpikingClassifier("10-16l-3l", num_classes=3, neuron=LIF(10.0),
                              activity_regularizer=ActivityRegularizer(upper_strength=1.0, upper_threshold=0.0,
                                                                       lower_strength=0.0))
    batch = (torch.rand(4, 30, 10) * 2, torch.tensor([0, 1, 2, 0]))
    model.log = lambda *a, **k: None
    with_reg = model._shared_step(batch, "train")
    model.activity_regularizer = None
    without = model._shared_step(batch, "train")
    assert with_reg > without


@pytest.mark.slow
def test_quickstart_reaches_the_stated_accuracy(tmp_path):
    """The README's claim: configs/quickstart.yaml reaches >= 80 % validation accuracy in its 20
    epochs (fixed seed; typically 0.88-0.90)."""
    from exodus_lightning.lightning_cli import ExodusCLI

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cli = ExodusCLI(args=["fit", "-c", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.logger=false",
                              "--trainer.enable_progress_bar=false"])
    finally:
        os.chdir(cwd)
    assert cli.trainer.current_epoch == 20
    assert float(cli.trainer.callback_metrics["val/accuracy"]) >= 0.80


def test_spike_train_regressor_fits_the_poisson_task():
    """A few hundred Adam steps on the EXODUS supplementary task reduce the spike-train distance."""
    import lightning.pytorch as pl

    from exodus_lightning.data import PoissonSpikeFitDataModule
    from exodus_lightning.models import SpikeTrainRegressor
    from exodus_lightning.nn import LIF

    pl.seed_everything(0)
    dm = PoissonSpikeFitDataModule(seed=0)
    model = SpikeTrainRegressor("250-25l-1l", neuron=LIF(10.0), readout=LIF(10.0), loss="van_rossum")
    dm.setup("fit")
    x, target = next(iter(dm.train_dataloader()))[:2]
    assert x.shape == (1, 200, 250) and target.shape == (1, 200, 1) and target.sum() == 4
    with torch.no_grad():
        before = model.van_rossum(model(x), target).item()
    trainer = pl.Trainer(max_epochs=300, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, check_val_every_n_epoch=100, accelerator="cpu")
    trainer.fit(model, dm)
    with torch.no_grad():
        after = model.van_rossum(model(x), target).item()
    assert after < 0.5 * before, (before, after)


def test_test_and_predict_subcommands_use_the_checkpoint(fitted):
    cwd, proc = fitted
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = glob.glob(str(cwd / "**" / "last.ckpt"), recursive=True)[0]
    out = _cli(["test", "-c", "tiny.yaml", "--ckpt_path", ckpt, "--trainer.logger=false"], cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "test/accuracy" in out.stdout
    out = _cli(["predict", "-c", "tiny.yaml", "--ckpt_path", ckpt, "--trainer.logger=false",
                "--trainer.callbacks=[]", "--return_predictions=false"], cwd)
    assert out.returncode == 0, out.stderr[-2000:]


def test_default_logger_is_offline_wandb_and_online_with_a_key(monkeypatch):
    from exodus_lightning.lightning_cli import default_logger_config

    for k in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(k)
    cfg = default_logger_config()
    assert cfg["class_path"] == "lightning.pytorch.loggers.WandbLogger"
    assert cfg["init_args"]["offline"] is True and cfg["init_args"]["log_model"] is False
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_DIR", "/runs/42")
    cfg = default_logger_config()
    assert cfg["init_args"]["offline"] is False and cfg["init_args"]["log_model"] is True
    assert cfg["init_args"]["save_dir"] == "/runs/42"
