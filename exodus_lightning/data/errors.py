"""Errors of the data modules: what is missing or unreadable, named so the user can fix it."""

from __future__ import annotations

__all__ = ["DataNotFoundError", "CorruptFileError", "CacheError"]


class DataNotFoundError(FileNotFoundError):
    """Dataset files are missing or ``data_dir`` is wrong; the message says what goes where."""


class CorruptFileError(RuntimeError):
    """A dataset file exists but cannot be read (truncated, wrong format); the message names it."""


class CacheError(OSError):
    """A packed cache cannot be written or waited for (no space left, a lock held too long); the
    message names the folder or file and what is needed."""
