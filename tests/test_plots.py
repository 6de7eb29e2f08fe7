"""The figures a researcher puts in a paper: rasters titled with the layer names as the user wrote
them, the epoch, the sample's label and the prediction; the Poisson fit with the target spike train
overlaid; the validation confusion matrix (checked against a brute-force count).  Each runs the
callbacks the way a user does (the CLI with a shipped config, or a Trainer) and inspects the
figure the callback drew."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from exodus_lightning.callbacks import ConfusionMatrixPlot, RasterPlot

ROOT = Path(__file__).resolve().parents[1]


def _capture_figures(callback, monkeypatch) -> list:
    """Keep every figure ``callback.figure`` draws (the callback closes it after logging; a closed
    figure keeps its artists)."""
    figures = []
    draw = callback.figure

    def keep(*args, **kwargs):
        fig = draw(*args, **kwargs)
        figures.append(fig)
        return fig

    monkeypatch.setattr(callback, "figure", keep)
    return figures


def _cli(tmp_path, config: str, *overrides: str):
    from exodus_lightning.lightning_cli import ExodusCLI

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return ExodusCLI(args=["-c", config, "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
                               "--trainer.logger.save_dir", str(tmp_path), "--trainer.enable_progress_bar=false",
                               "--trainer.enable_model_summary=false", *overrides], run=False)
    finally:
        os.chdir(cwd)


def _val_batches(datamodule):
    """The validation batches, dense, from a fresh copy of the run's DataModule (same arguments,
    no Trainer attached: the loader yields ``(x, y, ...)`` tuples on the CPU)."""
    fresh = type(datamodule)(**{k: v for k, v in datamodule.hparams.items() if not k.startswith("_")})  # not _class_path
    fresh.setup("fit")
    return list(fresh.val_dataloader())


def _callback(trainer, cls):
    found = [c for c in trainer.callbacks if isinstance(c, cls)]
    assert len(found) == 1, trainer.callbacks
    return found[0]


TINY = """\
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_epochs: 2
  log_every_n_steps: 1
  enable_checkpointing: false
  callbacks:
    - class_path: exodus_lightning.callbacks.RasterPlot
      init_args: {every_n_epochs: 1}
    - class_path: exodus_lightning.callbacks.ConfusionMatrixPlot
model:
  class_path: exodus_lightning.models.SpikingClassifier
  init_args:
    network: "100-32l-16l-5l"
    num_classes: 5
    neuron: {class_path: exodus_lightning.nn.LIF, init_args: {tau_mem: 20.0}}
    readout: {class_path: exodus_lightning.nn.LeakyIntegrator, init_args: {tau: 20.0}}
data:
  class_path: exodus_lightning.data.SpikePatternsDataModule
  init_args: {n_train: 96, n_val: 40, n_test: 8, n_classes: 5, batch_size: 16, n_time_steps: 60}
"""


@pytest.fixture()
def tiny_run(tmp_path, monkeypatch):
    """Two epochs of a small classifier through the CLI with the raster and confusion-matrix
    callbacks; the figures they drew are kept."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    cli = _cli(tmp_path, str(tmp_path / "tiny.yaml"))
    raster = _callback(cli.trainer, RasterPlot)
    confusion = _callback(cli.trainer, ConfusionMatrixPlot)
    rasters, matrices = _capture_figures(raster, monkeypatch), _capture_figures(confusion, monkeypatch)
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli, rasters, matrices


def test_raster_titles_name_the_layers_epoch_label_and_prediction(tiny_run):
    cli, rasters, _ = tiny_run
    assert len(rasters) == 2  # every_n_epochs = 1, two epochs, no figure in the sanity check
    fig = rasters[-1]
    titles = [ax.get_title() for ax in fig.axes]
    # the layers as the architecture string "100-32l-16l-5l" names them, not module paths
    assert titles == ["hidden layer 1: 32l (LIF)", "hidden layer 2: 16l (LIF)", "output"]
    assert not any("network." in t for t in titles)
    # the sample is the first of the first validation batch; its prediction recomputed by hand
    # (max over time of the readout, the max-over-time loss's rule) with the final weights
    model = cli.model.eval()
    x, y, _ = _val_batches(cli.datamodule)[0]
    with torch.no_grad():
        prediction = int(model.network(x[:1]).amax(1).argmax(-1))
    assert fig._suptitle.get_text() == f"epoch 1: label {int(y[0])}, prediction {prediction}"
    # the raster dots are the spikes of the layer (the network's own modules run by hand)
    with torch.no_grad():
        spikes = model.network[1](model.network[0](x[:1]))[0]
    t, n = torch.nonzero(spikes, as_tuple=True)
    drawn = fig.axes[0].collections[0].get_offsets()
    assert len(t) > 0
    assert sorted(map(tuple, np.asarray(drawn).tolist())) == sorted(zip(t.tolist(), n.tolist()))


def test_confusion_matrix_equals_a_brute_force_count_and_is_drawn(tiny_run, tmp_path):
    cli, _, matrices = tiny_run
    callback = _callback(cli.trainer, ConfusionMatrixPlot)
    model = cli.model.eval()
    count = torch.zeros(5, 5, dtype=torch.long)
    with torch.no_grad():
        for x, y, _ in _val_batches(cli.datamodule):
            predicted = model.network(x).amax(1).argmax(-1)
            for true, guess in zip(y.tolist(), predicted.tolist()):
                count[true, guess] += 1
    assert count.sum() == 40
    assert torch.equal(callback.last_matrix, count)
    fig = matrices[-1]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert np.array_equal(ax.images[0].get_array(), count.numpy())
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert cells == {(i, j): int(count[i, j]) for i in range(5) for j in range(5)}
    accuracy = count.diagonal().sum().item() / 40
    assert ax.get_title() == f"validation confusion matrix (epoch 1, 40 samples, accuracy {accuracy:.3f})"
    # both images went to the logger (CSVLogger: PNG files in its log dir)
    logged = {p.name for p in tmp_path.rglob("*.png")}
    assert {"raster_epoch0001.png", "confusion_matrix_epoch0001.png"} <= logged, logged


def test_poisson_fit_figure_overlays_the_target_spike_train(tmp_path, monkeypatch):
    config = str(ROOT / "configs" / "poisson_fit.yaml")
    cli = _cli(tmp_path, config, "--trainer.max_epochs", "10", "--trainer.check_val_every_n_epoch", "10")
    raster = _callback(cli.trainer, RasterPlot)
    assert raster.every_n_epochs == 10
    figures = _capture_figures(raster, monkeypatch)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert len(figures) == 1
    fig = figures[0]
    x, target = _val_batches(cli.datamodule)[0][:2]
    target_times = torch.nonzero(target[0, :, 0]).flatten().tolist()
    assert len(target_times) == 4  # the supplementary task: 4 target spikes
    output_axis = fig.axes[-1]
    overlays = [c for c in output_axis.collections if c.get_label() == "target"]
    assert len(overlays) == 1, [c.get_label() for c in output_axis.collections]
    assert sorted(overlays[0].get_positions()) == target_times
    with torch.no_grad():
        out = cli.model.eval()(x)
    drawn = [c for c in output_axis.collections if c.get_label() == "output"]
    assert len(drawn) == 1
    assert sorted(drawn[0].get_positions()) == torch.nonzero(out[0, :, 0]).flatten().tolist()
    assert "target" in fig._suptitle.get_text() and fig._suptitle.get_text().startswith("epoch 9")
    assert [ax.get_title() for ax in fig.axes[:-1]] == ["hidden layer 1: 25l (LIF)", "readout: 1l (LIF)"]


def test_confusion_matrix_plot_rejects_a_non_classifier_and_bad_arguments():
    from exodus_lightning.models import SpikeTrainRegressor

    with pytest.raises(ValueError, match="every_n_epochs"):
        ConfusionMatrixPlot(every_n_epochs=0)
    callback = ConfusionMatrixPlot()

    class _Trainer:
        sanity_checking = False
        current_epoch = 0

    with pytest.raises(TypeError, match="num_classes"):
        callback.on_validation_epoch_start(_Trainer(), SpikeTrainRegressor("4-3l"))
