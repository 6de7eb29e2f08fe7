"""A training job for the kill-and-resume test: an SNN with dropout (so the generator state matters)
on SpikePatterns, checkpoints every K steps; optionally SIGKILLs itself after a given step.

usage: resume_job.py ROOT MAX_STEPS [--kill-after STEP] [--ckpt PATH]
"""

import argparse
import os
import signal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from exodus_lightning.data import SpikePatternsDataModule
from exodus_lightning.models import SpikingClassifier
from exodus_lightning.nn import LIF, LeakyIntegrator, SpikingSequential
from exodus_lightning.resume import RNGStateCallback


class KillAfter(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no final checkpoint


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("max_steps", type=int)
    p.add_argument("--kill-after", type=int)
    p.add_argument("--ckpt")
    p.add_argument("--every", type=int, default=5)
    a = p.parse_args()
    pl.seed_everything(0, workers=True)
    net = SpikingSequential(nn.Linear(100, 48), LIF(20.0), nn.Dropout(0.3), nn.Linear(48, 20), LeakyIntegrator(20.0))
    model = SpikingClassifier(net, num_classes=20)
    data = SpikePatternsDataModule(n_train=96, n_val=32, n_test=32, batch_size=16, n_time_steps=60)
    callbacks = [ModelCheckpoint(dirpath=os.path.join(a.root, "ckpt"), every_n_train_steps=a.every, save_top_k=-1,
                                 filename="{step}"), RNGStateCallback()]
    if a.kill_after:
        callbacks.append(KillAfter(a.kill_after))
    trainer = pl.Trainer(max_steps=a.max_steps, accelerator="cpu", devices=1, deterministic=True, logger=False,
                         callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=a.root, limit_val_batches=0)
    trainer.fit(model, data, ckpt_path=a.ckpt)
    torch.save(model.state_dict(), os.path.join(a.root, "final.pt"))


if __name__ == "__main__":
    main()
