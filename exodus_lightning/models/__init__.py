"""LightningModules for spiking networks, reusable from other projects and from YAML configs."""

from exodus_lightning.models.activity import SpikeRecorder, spiking_layers
from exodus_lightning.models.classifier import SpikingClassifier
from exodus_lightning.models.online import OnlineSpikingClassifier
from exodus_lightning.models.regressor import SpikeTrainRegressor

__all__ = ["SpikingClassifier", "OnlineSpikingClassifier", "SpikeTrainRegressor", "SpikeRecorder", "spiking_layers"]
