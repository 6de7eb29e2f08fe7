"""Event-driven backpropagation learns the embedded SpikePatterns task with the spike-count loss
through ``SpikingClassifier`` (reduced honest setup: 5 classes, T = 100, 1000 training samples,
hidden 128, 8 epochs, AdamW lr 1e-2, gradient-norm clip 1, data-dependent init to 2 spikes per
neuron, targets 15 / 2). Chance is 20 %; measured 0.770 validation accuracy with seed 0 (~50 s on 2 cores) (asserted >= 0.60)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from exodus_lightning.algorithms.event_driven import EventDrivenSNN
from exodus_lightning.data import SpikePatternsDataModule
from exodus_lightning.losses import SpikeCountLoss
from exodus_lightning.models import SpikingClassifier


@pytest.mark.slow
def test_learns_spike_patterns_with_spike_count_loss() -> None:
    pl.seed_everything(0, workers=True)
    torch.set_num_threads(2)
    data = SpikePatternsDataModule(n_train=1000, n_val=300, n_test=10, n_classes=5, n_time_steps=100,
                                   max_shift_steps=10, batch_size=32)
    net = EventDrivenSNN("100-128l-5l", tau_mem=8.0, tau_syn=4.0, tau_grad=3.0, calibrate_spikes=2.0)
    model = SpikingClassifier(net, num_classes=5, loss=SpikeCountLoss(n_correct=15.0, n_wrong=2.0),
                              optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=5e-4))
    trainer = pl.Trainer(max_epochs=8, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                         num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    acc = trainer.validate(model, datamodule=data, verbose=False)[0]["val/accuracy"]
    print(f"event-driven SpikePatterns validation accuracy: {acc:.3f}")
    assert acc >= 0.60
