"""The help of the training sub-commands, kept between calls.

``exodus-lightning fit --help`` is rendered by LightningCLI, which needs Lightning, torch,
torchmetrics and wandb imported before it prints a line (about 2.5 s of CPU on the 2-core
development machine, most of it in ``import lightning``).  The text depends only on the installed
versions, the framework's own source, the environment variables that set the logger's defaults and
the terminal width, so it is rendered once for each such key and read from
``$XDG_CACHE_HOME/exodus-lightning/help/`` (``~/.cache/...``) afterwards.  Only the bare
``COMMAND --help`` / ``COMMAND -h`` is cached; ``exodus-lightning bench cli`` measures both paths.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> lookup(["fit", "--help"], folder) is None
    True
    >>> store(["fit", "--help"], "usage: ...\\n", folder)
    >>> lookup(["fit", "--help"], folder)
    'usage: ...\\n'
    >>> lookup(["fit", "-c", "x.yaml", "--help"], folder) is None     # only the bare help is kept
    True
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional, Sequence, Union

__all__ = ["cacheable", "lookup", "store", "cache_folder"]

_PACKAGES = ("lightning", "jsonargparse", "docstring-parser", "torch", "torchmetrics", "wandb")
_ENVIRONMENT = ("WANDB_MODE", "WANDB_DIR", "COLUMNS")  # the logger's defaults, the line width
_HELP = ("--help", "-h")


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "exodus-lightning" / "help"


def cacheable(argv: Sequence[str]) -> bool:
    return len(argv) == 2 and argv[1] in _HELP


def _key(argv: Sequence[str]) -> str:
    import exodus_lightning

    parts = [sys.version, argv[0], str(shutil.get_terminal_size().columns)]
    for name in _PACKAGES:
        try:
            parts.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} absent")
    parts += [f"{name}={os.environ.get(name)}" for name in _ENVIRONMENT]
    parts.append(f"WANDB_API_KEY set={bool(os.environ.get('WANDB_API_KEY'))}")
    source = Path(exodus_lightning.__file__).parent
    for root, _, files in sorted(os.walk(source)):
        for name in sorted(files):
            if name.endswith(".py"):
                stat = os.stat(os.path.join(root, name))
                parts.append(f"{os.path.relpath(os.path.join(root, name), source)} {stat.st_size} {stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def lookup(argv: Sequence[str], folder: Optional[Union[str, Path]] = None) -> Optional[str]:
    """The help text ``exodus-lightning *argv`` printed before under the same key, or None."""
    if not cacheable(argv):
        return None
    try:
        return (Path(folder or cache_folder()) / f"{_key(argv)}.txt").read_text()
    except OSError:
        return None


def store(argv: Sequence[str], text: str, folder: Optional[Union[str, Path]] = None) -> None:
    """Keep ``text`` for :func:`lookup` (atomically; a cache that cannot be written is skipped)."""
    if not cacheable(argv) or not text:
        return
    folder = Path(folder or cache_folder())
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, folder / f"{_key(argv)}.txt")
    except OSError:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
