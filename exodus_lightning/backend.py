"""The global default gradient backend, so a whole network switches between EXODUS, SLAYER and
BPTT without being rebuilt.  A layer's own ``backend=`` argument wins over the default.

Example:
    >>> import exodus_lightning as el
    >>> el.get_backend()
    'exodus'
    >>> with el.use_backend("slayer"):
    ...     el.get_backend()
    'slayer'
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

BACKENDS = ("exodus", "slayer", "bptt")

_state = threading.local()
_global_default = "exodus"


def validate_backend(backend: str, argument: str = "backend") -> str:
    if backend not in BACKENDS:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return backend


def set_backend(backend: str) -> None:
    """Set the process-wide default backend ('exodus', 'slayer' or 'bptt')."""
    global _global_default
    _global_default = validate_backend(backend)


def get_backend() -> str:
    """The backend in force: the innermost :func:`use_backend` context, else the global default."""
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else _global_default


def resolve_backend(backend: Optional[str]) -> str:
    return get_backend() if backend is None else validate_backend(backend)


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[str]:
    """Context manager: every layer without its own ``backend=`` uses ``backend`` inside."""
    validate_backend(backend)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(backend)
    try:
        yield backend
    finally:
        stack.pop()
