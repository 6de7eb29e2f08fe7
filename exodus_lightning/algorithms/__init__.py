"""Training algorithms other than whole-sequence surrogate-gradient BPTT/EXODUS.

- :mod:`exodus_lightning.algorithms.ottt` — online training through time (OTTT_A / OTTT_O,
  Xiao et al., NeurIPS 2022): single-step LIF neurons with a detached temporal path, presynaptic
  traces used for the weight gradient, scaled weight standardisation and the VGG-sWS network.
  The LightningModule is :class:`exodus_lightning.models.online.OnlineSpikingClassifier`.

Modules of this package are imported explicitly (``from exodus_lightning.algorithms.ottt import
...``); this ``__init__`` imports nothing, so one algorithm's dependencies never slow another.
"""
