"""Writes checkpoint k = 0, 1, 2, ... (64 tensors of 1 MiB, all equal to k) to DIR/last.ckpt through a
checkpoint IO plugin, printing "saved k" after each, until killed (or after one save with --once).

usage: checkpoint_writer.py {atomic,lightning} DIR [--once]
"""

import sys
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from exodus_lightning.checkpoint_io import AtomicCheckpointIO


def main() -> None:
    io = AtomicCheckpointIO() if sys.argv[1] == "atomic" else TorchCheckpointIO()
    path = Path(sys.argv[2]) / "last.ckpt"
    k = 0
    while True:
        io.save_checkpoint({"state_dict": {f"w{i}": torch.full((1 << 18,), float(k)) for i in range(64)}, "k": k},
                           path)
        print(f"saved {k}", flush=True)
        if "--once" in sys.argv:
            return
        k += 1


if __name__ == "__main__":
    main()
