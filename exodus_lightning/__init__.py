"""exodus-lightning: a Lightning-based training framework for spiking neural networks.

The heart is EXODUS: exact gradients of LIF/IF layers that account for the reset, computed by
native kernels in one O(T) reverse scan per neuron.  Submodules are imported lazily so that
``import exodus_lightning.data`` does not load the native libraries.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("exodus-lightning")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# Freed CPU tensors are reused without page faults (glibc thresholds; EXODUS_MALLOC_TUNING=0 opts out).
from exodus_lightning import _allocator  # noqa: E402

_allocator.apply()

_LAZY = {
    "functional": "exodus_lightning.functional",
    "surrogate": "exodus_lightning.surrogate",
    "ops": "exodus_lightning.ops",
    "nn": "exodus_lightning.nn",
    "data": "exodus_lightning.data",
    "losses": "exodus_lightning.losses",
    "models": "exodus_lightning.models",
    "callbacks": "exodus_lightning.callbacks",
}


_BACKEND_NAMES = ("set_backend", "get_backend", "use_backend")
_NONFINITE_NAMES = ("set_check_finite",)
_PARAMETER_NAMES = ("LIFParameters",)


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    if name in _BACKEND_NAMES:
        return getattr(importlib.import_module("exodus_lightning.backend"), name)
    if name in _NONFINITE_NAMES:
        return getattr(importlib.import_module("exodus_lightning.nonfinite"), name)
    if name in _PARAMETER_NAMES:
        return getattr(importlib.import_module("exodus_lightning.neuron_parameters"), name)
    raise AttributeError(f"module 'exodus_lightning' has no attribute {name!r}")


__all__ = ["__version__", *_BACKEND_NAMES, *_NONFINITE_NAMES, *_PARAMETER_NAMES, *_LAZY]
