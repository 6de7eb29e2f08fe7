"""Exact resume: what Lightning's checkpoints lack for a run that continues bit for bit.

Lightning stores weights, optimizer, schedulers and the loop counters, and — for a train loader with
``state_dict``/``load_state_dict`` — that loader's state.  It stores neither the random-number
generators nor the position inside the epoch's shuffled order.  This module adds both:

- :class:`ResumableSampler` — the epoch's permutation is a pure function of ``(seed, epoch)``,
  split across DDP ranks like ``DistributedSampler`` (it is one, so Lightning leaves it alone), and
  it can start at an offset;
- :class:`ResumableDataLoader` — counts the batches it handed out; its ``state_dict`` is
  ``(epoch, batches consumed)`` and ``load_state_dict`` makes the next iteration skip them without
  loading them;
- :class:`RNGStateCallback` — saves the torch, CUDA, numpy and Python generator states of every rank
  in the checkpoint and restores each rank's own on resume.

A run killed after step k + j and resumed from the step-k checkpoint then ends with the same weights
as an uninterrupted run (CPU, ``Trainer(deterministic=True)``; our kernels have no order-dependent
reductions).

Example:
    >>> s = ResumableSampler(range(10), shuffle=True, seed=3)
    >>> s.set_epoch(1); first = list(s)
    >>> s.set_start(4); list(s) == first[4:]
    True
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator, Optional, Sized

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class ResumableSampler(DistributedSampler):
    """Shuffled (or ordered) indices per epoch from ``torch.Generator().manual_seed(seed + epoch)``,
    this rank's share (``indices[rank::world_size]``, padded like ``DistributedSampler``), starting
    at ``start``."""

    def __init__(self, data_source: Sized, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None) -> None:
        world, me = _world()
        super().__init__(data_source, num_replicas=world if num_replicas is None else num_replicas,
                         rank=me if rank is None else rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share at the next iteration (once)."""
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start = self.start, 0
        return iter(indices[start:])

    def __len__(self) -> int:
        return self.num_samples


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` whose position inside the epoch is part of
    the checkpoint (Lightning saves ``state_dict()`` of stateful train loaders)."""

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 **kwargs: Any) -> None:
        if "sampler" in kwargs or "batch_sampler" in kwargs:
            raise ValueError("ResumableDataLoader builds its own sampler; do not pass sampler or batch_sampler")
        sampler = ResumableSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        # A private generator for the workers' base seed: creating an iterator must not draw from
        # the global torch generator, whose state the resume restores.
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)
        self._consumed = 0  # batches handed out in the current epoch
        self._resume_from = 0
        self._progress: Optional[Callable[[], int]] = None

    def attach_progress(self, fn: Optional[Callable[[], int]]) -> None:
        """Count the epoch's position with ``fn`` (the trainer's batches processed) instead of the
        batches handed out: Lightning fetches one batch ahead of the one it trains on."""
        self._progress = fn

    def __iter__(self):
        sampler: ResumableSampler = self.sampler
        skip = self._resume_from
        self._resume_from = 0
        if skip:
            sampler.set_start(skip * self.batch_size)
        self._consumed = skip
        self.generator.manual_seed(int(sampler.seed) + int(sampler.epoch))
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state_dict(self) -> dict[str, int]:
        consumed = self._progress() if self._progress is not None else self._consumed
        return {"epoch": int(self.sampler.epoch), "batches_consumed": int(consumed),
                "seed": int(self.sampler.seed), "world_size": int(self.sampler.num_replicas)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("world_size", self.sampler.num_replicas) != self.sampler.num_replicas:
            raise ValueError(
                f"the checkpoint's data position was saved with world size {state['world_size']}, this run has "
                f"{self.sampler.num_replicas}: an exact mid-epoch resume needs the same number of processes"
            )
        self.sampler.set_epoch(state["epoch"])
        # A checkpoint written at the end of an epoch has consumed every batch: start the next afresh.
        consumed = state["batches_consumed"]
        self._resume_from = consumed if consumed < len(self) else 0


def rng_state() -> dict[str, Any]:
    """The generator states of this process: torch (CPU and every CUDA device), numpy, Python —
    as tensors and plain Python values, so checkpoints still load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGStateCallback(pl.Callback):
    """Saves every rank's generator states in the checkpoint and restores each rank's own on resume
    (a resumed run draws the same dropout masks, noise and shuffles as an uninterrupted one); and
    points every :class:`ResumableDataLoader` of the fit at the trainer's batch counter, so the
    saved data position is the last batch trained on, not the one prefetched."""

    def __init__(self) -> None:
        super().__init__()
        self._to_restore: Optional[dict[str, Any]] = None

    def state_dict(self) -> dict[str, Any]:
        mine = rng_state()
        world, _ = _world()
        if world == 1:
            return {"ranks": [mine]}
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, mine)
        return {"ranks": gathered}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        world, rank = _world()
        ranks = state_dict.get("ranks", [])
        if len(ranks) != world:
            raise ValueError(f"the checkpoint holds generator states of {len(ranks)} ranks, this run has {world}")
        self._to_restore = ranks[rank]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = trainer.train_dataloader
        for loader in (loaders if isinstance(loaders, (list, tuple)) else [loaders]):
            if isinstance(loader, ResumableDataLoader):
                loader.attach_progress(lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        # After Lightning's own seeding and worker set-up, so nothing re-seeds after the restore.
        if self._to_restore is not None:
            set_rng_state(self._to_restore)
            self._to_restore = None
