"""Every way of building a model, each trained for two steps and checkpointed (``save``), or those
checkpoints loaded with ``Model.load_from_checkpoint(path)`` and nothing else (``load``); both write the model's
output on a fixed input next to its checkpoint, for the test to compare.

usage: checkpoint_roundtrip.py {save,load} DIR    (every case, each in DIR/<case>/; a failure in
DIR/<case>/<mode>.error)
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from exodus_lightning.algorithms.event_driven import EventDrivenSNN
from exodus_lightning.algorithms.ottt import build_online_network
from exodus_lightning.algorithms.sparse_sgd import SparseSNN
from exodus_lightning.losses import ActivityRegularizer, SpikeCountLoss
from exodus_lightning.models import OnlineSpikingClassifier, SpikeTrainRegressor, SpikingClassifier
from exodus_lightning.nn import LIF, IF, LeakyIntegrator, SpikingSequential, SumPool2d, build_network
from exodus_lightning.surrogate import FastSigmoid

IMAGE = (2, 8, 8)  # C, H, W of the conv case


def _adam(lr):
    import functools

    return functools.partial(torch.optim.Adam, lr=lr)


CASES = {
    # architecture string + neuron templates (per-neuron trained tau, a non-default surrogate)
    "string_templates": lambda: SpikingClassifier(
        "12-16l-16l-4l", num_classes=4,
        neuron=LIF(tau_mem=torch.linspace(10.0, 30.0, 16), train_tau=True, shape=(16,), surrogate=FastSigmoid(10.0)),
        readout=LeakyIntegrator(tau=15.0), activity_regularizer=ActivityRegularizer(0.1, 2.0, 1.0, 0.01),
        optimizer=_adam(0.01)),
    # a network module: the framework's layers and torch.nn layers, convolutional
    "module_conv": lambda: SpikingClassifier(
        SpikingSequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), IF(threshold=0.5), SumPool2d(2), nn.Dropout(0.2),
                          nn.Flatten(), nn.Linear(64, 4), LeakyIntegrator(tau=10.0)),
        num_classes=4, loss="sum_over_time_cross_entropy"),
    # the module build_network returns, passed as a module
    "module_built": lambda: SpikingClassifier(build_network("12-16l-4l", neuron=LIF(tau_mem=12.0),
                                                            readout=LeakyIntegrator(20.0)), num_classes=4),
    "sparse": lambda: SpikingClassifier(SparseSNN(12, 4, hidden=[16, 16], tau_readout=20.0), num_classes=4,
                                        loss="sum_over_time_cross_entropy"),
    "event": lambda: SpikingClassifier(EventDrivenSNN("12-16l-4l", calibrate_spikes=2.0), num_classes=4,
                                       loss=SpikeCountLoss(n_correct=8.0, n_wrong=1.0)),
    "ottt_module": lambda: OnlineSpikingClassifier(build_online_network("12-16l-4l", tau_mem=10.0 / 3.0, sws=True,
                                                                        input_trace=True), num_classes=4),
    "ottt_string": lambda: OnlineSpikingClassifier("12-16l-4l", num_classes=4, algorithm="ottt_o", tau_mem=2.5),
    "regressor": lambda: SpikeTrainRegressor("12-16l-4l", neuron=LIF(tau_mem=10.0), readout=LIF(tau_mem=10.0),
                                             loss="van_rossum"),
}
CLASSES = {"ottt_module": OnlineSpikingClassifier, "ottt_string": OnlineSpikingClassifier,
           "regressor": SpikeTrainRegressor}


def _data(case: str, n: int = 16, steps: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    shape = IMAGE if case == "module_conv" else (12,)
    x = (torch.rand(n, steps, *shape, generator=g) < 0.3).float()
    y = (torch.rand(n, steps, 4, generator=g) < 0.1).float() if case == "regressor" else torch.arange(n) % 4
    return x, y


def run(mode: str, case: str, folder: Path) -> None:
    x, y = _data(case)
    if mode == "save":
        pl.seed_everything(0)
        model = CASES[case]()
        trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu")
        trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8))
        trainer.save_checkpoint(folder / "model.ckpt")
    else:
        model = CLASSES.get(case, SpikingClassifier).load_from_checkpoint(folder / "model.ckpt")
    model.eval()
    with torch.no_grad():
        torch.save(model(x), folder / f"{mode}.pt")


def main() -> None:
    mode, root = sys.argv[1], Path(sys.argv[2])
    for case in CASES:
        folder = root / case
        folder.mkdir(exist_ok=True)
        try:
            run(mode, case, folder)
        except Exception:  # one case's failure is reported by its own test
            (folder / f"{mode}.error").write_text(traceback.format_exc())


if __name__ == "__main__":
    main()
