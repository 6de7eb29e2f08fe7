"""The ``exodus-lightning`` command.

    exodus-lightning info                                       versions, native libraries, CUDA set-up
    exodus-lightning bench lif [--device cuda] [--shape B,T,N]   EXODUS vs SLAYER vs BPTT, floor ratio
    exodus-lightning bench data                                 DataModule throughput
    exodus-lightning fit -c configs/quickstart.yaml              train (LightningCLI: fit, validate,
                                                                test, predict, --print_config)
    exodus-lightning slurm --config C --nodes 2 --gpus-per-node 4 [--submit]   sbatch script for a cluster

Each sub-command lives in its own module and is imported only when it runs, so ``--help`` and the
light commands never load the native libraries or Lightning.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Optional

# sub-command -> (module, function taking argv and returning an exit code)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": ("exodus_lightning.lightning_cli", "cli_main", "train a model (LightningCLI; -c config.yaml)"),
    "validate": ("exodus_lightning.lightning_cli", "cli_main", "evaluate on the validation set"),
    "test": ("exodus_lightning.lightning_cli", "cli_main", "evaluate on the test set"),
    "predict": ("exodus_lightning.lightning_cli", "cli_main", "predict with a trained model"),
    "bench": ("exodus_lightning.bench", "main", "run a benchmark: lif, data"),
    "info": ("exodus_lightning.info", "info_main", "versions, native libraries and CUDA set-up (for bug reports)"),
    "slurm": ("exodus_lightning.slurm", "slurm_main",
              "write (and --submit) an sbatch script whose directives match the Trainer"),
}
# LightningCLI sub-commands get the whole argument list (it parses the sub-command itself).
_PASS_COMMAND = {"fit", "validate", "test", "predict"}


def _usage() -> str:
    lines = ["usage: exodus-lightning COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def command(name: str) -> Callable[[list[str]], int]:
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}; choose one of {', '.join(COMMANDS)}")
    module, fn, _ = COMMANDS[name]
    return getattr(importlib.import_module(module), fn)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    try:
        fn = command(argv[0])
    except ValueError as e:
        print(f"exodus-lightning: error: {e}\n{_usage()}", file=sys.stderr)
        return 2
    return int(fn(argv if argv[0] in _PASS_COMMAND else argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
