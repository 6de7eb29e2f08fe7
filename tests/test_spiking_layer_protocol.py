"""Every algorithm's spiking layers are seen by the shared tools (issue 25.4): the shipped quick config of
each algorithm, run through the CLI with ``FiringRateMonitor`` and ``RasterPlot``, logs a firing rate for
each of its spiking layers and draws a raster row for each.

The reference is independent of :class:`~exodus_lightning.nn.SpikingLayer`: the test finds the layers by
their classes and records their spikes with its own forward hooks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from exodus_lightning.callbacks import FiringRateMonitor, RasterPlot

ROOT = Path(__file__).resolve().parents[1]

# the spiking layer classes of each algorithm's quick config
LAYERS = {
    "quickstart": ("LIF", "IF"),
    "sparse_quick": ("SparseLinearLIF",),
    "event_quick": ("EventLinear", "EventConv2d"),
    "ottt_quick": ("OnlineLIF",),
}


def _run(config: str, tmp_path: Path):
    from exodus_lightning.lightning_cli import ExodusCLI

    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        cli = ExodusCLI(args=[
            "-c", str(ROOT / "configs" / f"{config}.yaml"),
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path),
            "--trainer.enable_progress_bar=false", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2",
            "--trainer.num_sanity_val_steps", "0",
            "--trainer.callbacks+=exodus_lightning.callbacks.FiringRateMonitor",
            "--trainer.callbacks+=exodus_lightning.callbacks.RasterPlot",
            "--trainer.callbacks.init_args.every_n_epochs=1",
        ], run=False)
        cli.trainer.fit(cli.model, cli.datamodule)
    finally:
        os.chdir(old)
    return cli


def _val_batches(cli):
    dm = cli.datamodule
    return [dm.on_after_batch_transfer(batch, 0) for batch in dm.val_dataloader()]


def _reference_rates(model: torch.nn.Module, x: torch.Tensor, classes: tuple[str, ...]) -> dict[str, float]:
    """Mean spikes per neuron and step of each layer of ``classes``, by hooks of this test (a layer
    called once per time step is accumulated over its calls)."""
    counts: dict[str, list[float]] = {}
    handles = []
    for path, m in model.named_modules():
        if type(m).__name__ not in classes:
            continue

        def hook(module, inputs, output, path=path):
            s = output[0] if isinstance(output, tuple) else output
            if type(module).__name__ == "OnlineLIF":
                s = (s != 0).to(torch.float64)  # its output carries the neuron's scale
            total, n = counts.setdefault(path, [0.0, 0.0])
            counts[path] = [total + float(s.detach().double().sum()), n + s.numel()]

        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {path: total / n for path, (total, n) in counts.items()}


@pytest.mark.parametrize("config", sorted(LAYERS))
def test_monitor_and_raster_see_every_algorithms_layers(config: str, tmp_path: Path) -> None:
    cli = _run(config, tmp_path)
    model = cli.model.eval()
    classes = LAYERS[config]
    expected = [path for path, m in model.named_modules() if type(m).__name__ in classes]
    assert expected, f"{config}: the test's class list finds no spiking layer"

    logged = {k.removeprefix("firing_rate/"): float(v) for k, v in cli.trainer.callback_metrics.items()
              if k.startswith("firing_rate/")}
    assert sorted(logged) == sorted(expected)

    # the monitor's figure: the mean over the validation batches of each batch's rate
    per_batch = [_reference_rates(model, batch[0], classes) for batch in _val_batches(cli)]
    reference = {path: sum(r[path] for r in per_batch) / len(per_batch) for path in per_batch[0]}
    assert sorted(reference) == sorted(expected)
    for path in expected:
        assert logged[path] == pytest.approx(reference[path], rel=1e-6, abs=1e-9), path
    assert any(r > 0 for r in reference.values()), f"{config}: no layer fired on the validation set"
    x = _val_batches(cli)[0][0]

    raster = [c for c in cli.trainer.callbacks if isinstance(c, RasterPlot)][-1]  # the one added here
    assert raster.last_png is not None and raster.last_png.startswith(b"\x89PNG")
    fig = raster.figure(model, x[:1])
    try:
        # a row per spiking layer, in the network's order, plus the output panel
        assert len(fig.axes) == len(expected) + 1
        T = x.shape[1]
        for ax in fig.axes[:-1]:
            assert ax.get_xlim() == (0.0, float(T))
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    assert any(isinstance(c, FiringRateMonitor) for c in cli.trainer.callbacks)
