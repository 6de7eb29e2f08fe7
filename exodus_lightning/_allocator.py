"""The allocator settings exodus-lightning applies to its own process at import (docs/architecture.md §2).

Every training step allocates the same large CPU tensors again (spikes, membrane, gradients: ``(B, T, N)``
each).  glibc serves blocks above its mmap threshold (128 KiB, raised dynamically up to 32 MiB) with a
fresh ``mmap`` and gives them back to the kernel on ``free``, and trims the heap's free top above twice
that threshold; so each new tensor is page-faulted in and zeroed by the kernel again, which costs more
than the LIF scan that fills it (issue 26: 11.5 ms instead of 2.7 ms for a (32, 500, 256) forward).

On glibc, :func:`apply` therefore raises both thresholds with ``mallopt``: blocks up to
:data:`MMAP_THRESHOLD` come from the heap, and up to :data:`TRIM_THRESHOLD` of free memory at the heap's
top stays mapped for the next step.  The peak memory is unchanged; what changes is that the process keeps
freed memory for reuse instead of returning it at once (as PyTorch's CUDA caching allocator does on the
GPU).  Nothing is applied when ``EXODUS_MALLOC_TUNING=0`` (the opt-out), when the user tuned malloc
through its own environment variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or a
``glibc.malloc`` tunable in ``GLIBC_TUNABLES``), or off glibc.  No result changes: only where memory
comes from.
"""

from __future__ import annotations

import ctypes
import os
import sys

OPT_OUT_ENV = "EXODUS_MALLOC_TUNING"
# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to 1 GiB from the heap (a (16, 2048, 1024) float32 tensor is 128 MiB); larger ones keep
# their own mapping.  Up to 2 GiB - 1 (mallopt takes an int) of free heap top stays mapped.
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = (1 << 31) - 1

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

# What apply() did, for ``exodus-lightning info`` and the benchmarks.
status = "not applied yet"


def _is_glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False


def apply() -> str:
    """Raise glibc's mmap and trim thresholds for this process (once; see the module docstring).
    Returns and records in :data:`status` what was done and why."""
    global status
    if status != "not applied yet":
        return status
    if os.environ.get(OPT_OUT_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        status = f"glibc defaults ({OPT_OUT_ENV}={os.environ[OPT_OUT_ENV]})"
    elif any(v in os.environ for v in _USER_SETTINGS) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        status = "the user's own malloc settings (environment), left as they are"
    elif not _is_glibc():
        status = "not glibc: allocator left as it is"
    else:
        libc = ctypes.CDLL(None)  # the C library the interpreter runs on
        mallopt = libc.mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        status = (f"glibc mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB "
                  f"(freed tensors are reused without page faults; {OPT_OUT_ENV}=0 turns this off)" if ok else
                  "glibc refused the mallopt settings; allocator left as it is")
    return status
