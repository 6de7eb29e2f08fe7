"""Callbacks that log figures (spike rasters, the confusion matrix) to every logger of the Trainer."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from exodus_lightning.models.activity import SpikeRecorder


def _figure_to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def log_figure(trainer: pl.Trainer, key: str, fig) -> bytes:
    """Send a matplotlib figure to every logger of ``trainer`` (``log_image`` on W&B, ``add_figure``
    on TensorBoard, otherwise ``<log dir>/<key>_epoch<NNNN>.png``); returns the PNG bytes.  An image
    a logger cannot store (a full disk: ``OSError``) is a warning, not the end of the training (the
    W&B run's own check reports the incomplete run when the command ends)."""
    png = _figure_to_png(fig)
    for logger in trainer.loggers:
        try:
            _log_png(trainer, logger, key, fig, png)
        except OSError as e:
            rank_zero_warn(f"the {key} image of epoch {trainer.current_epoch} could not be written by "
                           f"{type(logger).__name__}: {e}; training goes on")
    return png


def _log_png(trainer: pl.Trainer, logger: Any, key: str, fig, png: bytes) -> None:
    """One logger's copy of the image (see :func:`log_figure`)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    if isinstance(logger, WandbLogger):
        import numpy as np
        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        logger.log_image(key=key, images=[image], step=trainer.global_step)
    elif isinstance(logger, TensorBoardLogger):
        logger.experiment.add_figure(key, fig, global_step=trainer.global_step, close=False)
    else:
        folder = Path(logger.log_dir if getattr(logger, "log_dir", None) else trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{key}_epoch{trainer.current_epoch:04d}.png").write_bytes(png)


def class_scores(pl_module: pl.LightningModule, output: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """The class scores ``(B, C)`` a classifier predicts with (the prediction is their argmax): the
    module's own ``scores`` (:class:`~exodus_lightning.models.SpikingClassifier`: max or sum over
    time, consistent with its loss), else the sum over time of ``output`` ``(B, T, C)`` (the rule of
    :class:`~exodus_lightning.models.OnlineSpikingClassifier` and of spike-count outputs)."""
    scores = getattr(pl_module, "scores", None)
    if callable(scores):
        return scores(output, lengths)
    from exodus_lightning.losses import sum_over_time

    return sum_over_time(output, lengths)


def _is_class_label(y: Any) -> bool:
    return isinstance(y, Tensor) and y.ndim == 1 and not y.is_floating_point()


class RasterPlot(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, runs the model on the first sample of the first
    validation batch, draws the spike raster of each spiking layer (at most ``max_neurons`` each)
    and the network output over time, and logs the image (:func:`log_figure`).

    The figure is titled with the epoch and, for a classifier, the sample's label and the model's
    prediction (:func:`class_scores`); each raster is titled with the layer's name as the user
    wrote it (:func:`~exodus_lightning.nn.layer_names`: ``"hidden layer 1: 128l (LIF)"`` for an
    architecture string).  When the batch's target is a spike train of the output's shape (the
    Poisson fit, :class:`~exodus_lightning.models.SpikeTrainRegressor`), the output panel shows the
    output spikes with the target spike train overlaid (the artist labelled ``"target"``)."""

    def __init__(self, every_n_epochs: int = 5, max_neurons: int = 100, key: str = "raster") -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs!r}")
        self.every_n_epochs = every_n_epochs
        self.max_neurons = max_neurons
        self.key = key
        self._sample: Optional[tuple[Tensor, Optional[Tensor], Optional[Tensor]]] = None
        self.last_png: Optional[bytes] = None

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and dataloader_idx == 0:
            items = list(batch) if isinstance(batch, (tuple, list)) else [batch]
            x = items[0][:1].detach()
            target = items[1][:1].detach() if len(items) > 1 and isinstance(items[1], Tensor) else None
            lengths = items[2][:1].detach() if len(items) > 2 and isinstance(items[2], Tensor) else None
            self._sample = (x, target, lengths)

    def figure(self, pl_module: pl.LightningModule, x: Tensor, target: Optional[Tensor] = None,
               lengths: Optional[Tensor] = None, epoch: Optional[int] = None):
        """The figure for one sample ``x`` ``(1, T, *input)``; ``target`` is its class label ``(1,)``
        or target spike train ``(1, T, *output)``."""
        from exodus_lightning.nn import layer_name

        plt = _pyplot()
        recorder = SpikeRecorder(pl_module)
        try:
            with torch.no_grad(), recorder.recording():
                out = pl_module(x)
        finally:
            recorder.remove()
        layers = list(recorder.outputs.items())
        fig, axes = plt.subplots(len(layers) + 1, 1, figsize=(8, 2.4 + 1.9 * len(layers)), squeeze=False)
        for ax, (path, s) in zip(axes[:, 0], layers):
            s = s[0].reshape(s.shape[1], -1)[:, : self.max_neurons].float().cpu()
            t, n = torch.nonzero(s, as_tuple=True)
            ax.scatter(t.numpy(), n.numpy(), s=2, marker="|", color="black")
            ax.set_title(layer_name(pl_module, path), fontsize=9)
            ax.set_ylabel("neuron", fontsize=8)
            ax.set_xlim(0, s.shape[0])
        ax = axes[-1, 0]
        o = out[0].reshape(out.shape[1], -1).float().cpu()
        heading = f"epoch {epoch}" if epoch is not None else "validation sample"
        if _is_class_label(target):
            prediction = int(class_scores(pl_module, out, lengths).argmax(-1)[0])
            heading += f": label {int(target[0])}, prediction {prediction}"
            ax.plot(o.numpy(), linewidth=0.8)
            ax.set_title("output", fontsize=9)
        elif target is not None and tuple(target.shape) == tuple(out.shape):
            goal = target[0].reshape(target.shape[1], -1).float().cpu()
            n_out = min(o.shape[1], self.max_neurons)
            ax.eventplot([torch.nonzero(o[:, j]).flatten().numpy() for j in range(n_out)],
                         lineoffsets=list(range(n_out)), linelengths=0.8, colors="black", label="output")
            ax.eventplot([torch.nonzero(goal[:, j]).flatten().numpy() for j in range(n_out)],
                         lineoffsets=list(range(n_out)), linelengths=0.5, linewidths=3, colors="tab:red",
                         alpha=0.5, label="target")
            heading += ": output spikes and the target spike train"
            ax.set_title("output (black) and target (red)", fontsize=9)
            ax.set_ylabel("output neuron", fontsize=8)
            ax.set_yticks(range(0, n_out, max(1, n_out // 8)))
            ax.legend(loc="upper right", fontsize=7)
        else:
            ax.plot(o.numpy(), linewidth=0.8)
            ax.set_title("output", fontsize=9)
        ax.set_xlim(0, o.shape[0])
        ax.set_xlabel("time step")
        fig.suptitle(heading)
        fig.tight_layout()
        return fig

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._sample is None or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        x, target, lengths = (t.to(pl_module.device) if t is not None else None for t in self._sample)
        fig = self.figure(pl_module, x, target, lengths, epoch=trainer.current_epoch)
        self.last_png = log_figure(trainer, self.key, fig)
        _pyplot().close(fig)


class ConfusionMatrixPlot(pl.Callback):
    """At the end of every ``every_n_epochs``-th validation epoch, logs the confusion matrix of the
    classifier on the whole validation set as an image (:func:`log_figure`): rows the true class,
    columns the predicted one (argmax of :func:`class_scores`), each cell the number of samples;
    counted by :class:`torchmetrics.classification.MulticlassConfusionMatrix` (summed over DDP
    ranks).  The predictions come from the validation steps' own forward passes (a forward hook on
    the LightningModule): no extra forward.  ``last_matrix`` holds the latest matrix.

    Needs a module with ``num_classes`` and batches ``(x, y)`` or ``(x, y, lengths)``.

    Example::

        trainer = Trainer(callbacks=[ConfusionMatrixPlot()])
    """

    def __init__(self, every_n_epochs: int = 1, key: str = "confusion_matrix", max_annotated_classes: int = 30) -> None:
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be an int >= 1, got {every_n_epochs!r}")
        self.every_n_epochs = every_n_epochs
        self.key = key
        self.max_annotated_classes = max_annotated_classes
        self._metric: Any = None
        self._hook: Any = None
        self._output: Optional[Tensor] = None
        self.last_matrix: Optional[Tensor] = None
        self.last_png: Optional[bytes] = None

    def _due(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._due(trainer):
            return
        num_classes = getattr(pl_module, "num_classes", None)
        if not isinstance(num_classes, int):
            raise TypeError(f"ConfusionMatrixPlot needs a classifier with an int num_classes; "
                            f"{type(pl_module).__name__} has {num_classes!r}")
        from torchmetrics.classification import MulticlassConfusionMatrix

        self._metric = MulticlassConfusionMatrix(num_classes).to(pl_module.device)
        self._hook = pl_module.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output) -> None:
        self._output = output

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._metric is None or self._output is None:
            return
        y = batch[1]
        lengths = batch[2] if len(batch) > 2 else None
        self._metric.update(class_scores(pl_module, self._output.detach(), lengths).argmax(-1), y)
        self._output = None

    def _stop(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._output = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()
        if self._metric is None:
            return
        matrix = self._metric.compute().cpu()  # collective under DDP: every rank computes
        self._metric = None
        self.last_matrix = matrix
        if trainer.is_global_zero:
            fig = self.figure(matrix, epoch=trainer.current_epoch)
            self.last_png = log_figure(trainer, self.key, fig)
            _pyplot().close(fig)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stop()
        self._metric = None

    def figure(self, matrix: Tensor, epoch: Optional[int] = None):
        """The image of ``matrix`` ``(C, C)`` (rows true, columns predicted), each cell annotated
        with its count when there are at most ``max_annotated_classes`` classes."""
        plt = _pyplot()
        m = matrix.detach().cpu().long()
        c = m.shape[0]
        size = min(3 + 0.35 * c, 14)
        fig, ax = plt.subplots(figsize=(size, size))
        image = ax.imshow(m.numpy(), cmap="Blues", interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        if c <= self.max_annotated_classes:
            high = m.max().item() / 2
            for i in range(c):
                for j in range(c):
                    ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > high else "black")
        ticks = range(0, c, max(1, c // 20))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        total, correct = int(m.sum()), int(m.diagonal().sum())
        accuracy = correct / total if total else float("nan")
        when = f"epoch {epoch}, " if epoch is not None else ""
        ax.set_title(f"validation confusion matrix ({when}{total} samples, accuracy {accuracy:.3f})", fontsize=9)
        fig.tight_layout()
        return fig


__all__ = ["log_figure", "class_scores", "RasterPlot", "ConfusionMatrixPlot"]
