"""The ``exodus-lightning`` command.

    exodus-lightning info                                       versions, native libraries, CUDA set-up
    exodus-lightning bench lif [--device cuda] [--shape B,T,N]   EXODUS vs SLAYER vs BPTT, floor ratio
    exodus-lightning bench data                                 DataModule throughput (more: bench --help)
    exodus-lightning fit -c configs/quickstart.yaml              train (LightningCLI: fit, validate,
                                                                test, predict, --print_config)
    exodus-lightning slurm --config C --nodes 2 --gpus-per-node 4 [--submit]   sbatch script for a cluster
    exodus-lightning gpu-acceptance --out DIR                   the CUDA path checked and timed on a GPU

Each sub-command lives in its own module and is imported only when it runs, so ``--help`` and the
light commands never load the native libraries or Lightning; the help of the training commands is
rendered by Lightning once and then read from a cache (:mod:`exodus_lightning.help_cache`).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from typing import Callable, Optional

# sub-command -> (module, function taking argv and returning an exit code)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": ("exodus_lightning.lightning_cli", "cli_main", "train a model (LightningCLI; -c config.yaml)"),
    "validate": ("exodus_lightning.lightning_cli", "cli_main", "evaluate on the validation set"),
    "test": ("exodus_lightning.lightning_cli", "cli_main", "evaluate on the test set"),
    "predict": ("exodus_lightning.lightning_cli", "cli_main", "predict with a trained model"),
    "bench": ("exodus_lightning.bench", "main", "run a benchmark: {benchmarks}"),
    "info": ("exodus_lightning.info", "info_main", "versions, native libraries and CUDA set-up (for bug reports)"),
    "slurm": ("exodus_lightning.slurm", "slurm_main",
              "write (and --submit) an sbatch script whose directives match the Trainer"),
    "gpu-acceptance": ("exodus_lightning.gpu_acceptance", "gpu_acceptance_main",
                       "CUDA tests, quickstart and layer benchmark on a GPU, with a report "
                       "(scripts/gpu_acceptance.sh builds first)"),
}
# LightningCLI sub-commands get the whole argument list (it parses the sub-command itself).
_PASS_COMMAND = {"fit", "validate", "test", "predict"}


def _usage() -> str:
    from exodus_lightning.bench import BENCHMARKS  # a table only: no benchmark is imported

    lines = ["usage: exodus-lightning COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_.format(benchmarks=', '.join(BENCHMARKS))}"
              for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _help(fn: Callable[[list[str]], int], argv: list[str]) -> int:
    """``COMMAND --help`` of a training command, rendered once per key (see help_cache)."""
    from exodus_lightning import help_cache

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            code = fn(argv)
        except SystemExit as e:
            code = e.code
    sys.stdout.write(buffer.getvalue())
    if code in (0, None):
        help_cache.store(argv, buffer.getvalue())
    return code if isinstance(code, int) else int(code is not None)


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
    if argv[0] in _PASS_COMMAND:
        from exodus_lightning import help_cache

        text = help_cache.lookup(argv)
        if text is not None:
            sys.stdout.write(text)
            return 0
    try:
        fn = command(argv[0])
    except ValueError as e:
        print(f"exodus-lightning: error: {e}\n{_usage()}", file=sys.stderr)
        return 2
    if argv[0] in _PASS_COMMAND:
        from exodus_lightning import help_cache

        return _help(fn, argv) if help_cache.cacheable(argv) else int(fn(argv) or 0)
    return int(fn(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
