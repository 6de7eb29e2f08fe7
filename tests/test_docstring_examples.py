"""Every docstring example of the package runs and prints what it shows (torchmetrics-style: one
concept per file, each with a working example)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import exodus_lightning

# Modules that need an optional package to import at all (the example would never run without it).
OPTIONAL = {"exodus_lightning.neurobench": "neurobench", "exodus_lightning.tracking": "wandb"}


def _modules() -> list[str]:
    names = [exodus_lightning.__name__]
    for info in pkgutil.walk_packages(exodus_lightning.__path__, exodus_lightning.__name__ + "."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
