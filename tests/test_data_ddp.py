"""Two-process DDP on CPU (gloo, Lightning ``ddp_spawn``): the ranks see disjoint shards that
together cover the training set (8 samples, divisible by the world size, so the distributed
sampler adds no padding duplicates), as dense batches made from compact ones on each rank. The
packed cache is built once in ``prepare_data``."""

from __future__ import annotations

import json
import os

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from exodus_lightning.data import SHDDataModule
from exodus_lightning.data.dataset_writers import write_shd

N = 8


class _Recorder(pl.LightningModule):
    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.lin = torch.nn.Linear(700, 1)
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y, lengths = batch
        self.seen += lengths.tolist()  # each sample has a unique length: it identifies the sample
        return self.lin(x).mean()

    def on_train_epoch_end(self) -> None:
        with open(os.path.join(self.out_dir, f"rank{self.global_rank}.json"), "w") as f:
            json.dump(self.seen, f)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.slow
def test_ddp_two_ranks_disjoint_cover(tmp_path):
    root = str(tmp_path / "data")
    # sample i spans i+1 bins of 10 ms -> length i+1
    times = [np.array([0.001, (i + 0.5) * 0.01], dtype=np.float32) for i in range(N)]
    units = [np.array([3, 5], dtype=np.uint16) for _ in range(N)]
    write_shd(root, "train", times, units, [i % 20 for i in range(N)])
    write_shd(root, "test", times[:2], units[:2], [0, 1])
    dm = SHDDataModule(root, time_window_ms=10.0, batch_size=2, cache="disk", cache_dir=str(tmp_path / "cache"))
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )
    trainer.fit(_Recorder(str(tmp_path)), datamodule=dm)
    seen = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(2)]
    assert len(seen[0]) == len(seen[1]) == N // 2
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(1, N + 1))
    packed = sorted(f.split("-")[1] for f in os.listdir(tmp_path / "cache") if f.endswith(".packed"))
    assert packed == ["test", "train"]  # built once, in prepare_data
