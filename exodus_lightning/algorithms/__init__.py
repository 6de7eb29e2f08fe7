"""Training algorithms other than whole-sequence surrogate-gradient BPTT/EXODUS.

- :mod:`exodus_lightning.algorithms.ottt` — online training through time (OTTT_A / OTTT_O,
  Xiao et al., NeurIPS 2022): single-step LIF neurons with a detached temporal path, presynaptic
  traces used for the weight gradient, scaled weight standardisation and the VGG-sWS network.
  The LightningModule is :class:`exodus_lightning.models.online.OnlineSpikingClassifier`.
- :mod:`exodus_lightning.algorithms.sparse_sgd` — sparse spiking gradient descent (Perez-Nieves &
  Goodman, NeurIPS 2021): truncated surrogate, active-set backward in native kernels, fused
  SparseLinearLIF layers and the SparseSNN network.
- :mod:`exodus_lightning.algorithms.event_driven` — event-driven backpropagation (Zhu et al. 2022):
  SRM neurons with a dual-exponential kernel, gradients at output-spike times only, weight
  normalisation, EventDrivenSNN for the spike-count loss.

Modules of this package are imported explicitly (``from exodus_lightning.algorithms.ottt import
...``); this ``__init__`` imports nothing, so one algorithm's dependencies never slow another.
"""
