"""Lightning callbacks for spiking networks, logging to whatever logger the Trainer has.

- :class:`GradientNormMonitor` — per-layer weight-gradient 2-norms (EXODUS Fig. 2, centre column:
  how EXODUS and SLAYER gradients differ in scale across layers).
- :class:`FiringRateMonitor` — mean spikes per neuron and step of every spiking layer.
- :class:`RasterPlot` — a spike raster of every spiking layer and the readout trace of one
  validation sample, as an image every N epochs (matplotlib), titled with the layer names, epoch,
  label and prediction; the target spike train overlaid for spike-train regression.
- :class:`ConfusionMatrixPlot` — the validation confusion matrix (torchmetrics) as an image.
- :class:`Throughput` — training samples/s and time steps/s, on the progress bar and in the loggers.
- :class:`SlurmAutoRequeue` — Slurm's checkpoint-and-requeue signal handled at a step boundary
  that every DDP rank reaches (Lightning's handler can deadlock DDP).
"""

from exodus_lightning.callbacks.figures import ConfusionMatrixPlot, RasterPlot, class_scores, log_figure
from exodus_lightning.callbacks.monitors import FiringRateMonitor, GradientNormMonitor
from exodus_lightning.callbacks.slurm_requeue import SlurmAutoRequeue
from exodus_lightning.callbacks.throughput import Throughput


__all__ = ["GradientNormMonitor", "FiringRateMonitor", "RasterPlot", "ConfusionMatrixPlot", "SlurmAutoRequeue",
           "Throughput", "log_figure", "class_scores"]
