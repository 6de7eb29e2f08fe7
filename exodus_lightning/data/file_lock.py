"""An exclusive lock on a file shared by processes and nodes (``flock``), with a timeout and a
message naming whoever holds it.

The kernel releases a ``flock`` when its holder exits, killed or not, so a crash never leaves a lock
behind. The lock file itself stays (removing it would let two processes lock two different files);
while held it names its holder (host, process id, since when, what for).

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "build.lock")
    >>> with FileLock(path, timeout_s=5.0, purpose="demo"):
    ...     "demo" in open(path).read()
    True
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time

from .errors import CacheError

__all__ = ["FileLock"]

log = logging.getLogger(__name__)


class FileLock:
    """``with FileLock(path, timeout_s):`` holds an exclusive lock on ``path`` (created if missing).

    Args:
        path: the lock file.
        timeout_s: how long to wait for another holder before raising :class:`CacheError`.
        purpose: what the holder does (shown to the processes that wait).
        poll_s: seconds between attempts.
        report_every_s: how often a waiting process logs who holds the lock.
    """

    def __init__(self, path: str, timeout_s: float, purpose: str = "", poll_s: float = 0.2,
                 report_every_s: float = 30.0) -> None:
        if not timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s!r}")
        self.path = path
        self.timeout_s = float(timeout_s)
        self.purpose = purpose
        self.poll_s = poll_s
        self.report_every_s = report_every_s
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (or ``'unknown'``)."""
        try:
            with open(self.path) as f:
                info = json.loads(f.read() or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "an unknown process"
        return (f"process {info.get('pid')} on {info.get('host')} since {info.get('since')}"
                + (f" ({info['purpose']})" if info.get("purpose") else ""))

    def __enter__(self) -> "FileLock":
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        start = last_report = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
            now = time.monotonic()
            if now - start >= self.timeout_s:
                os.close(fd)
                raise CacheError(errno.ETIMEDOUT, f"waited {self.timeout_s:.0f} s for the lock {self.path}, held by "
                                 f"{self.holder()}; if that process is gone on another node, delete the lock file")
            if now - last_report >= self.report_every_s:
                log.warning("waiting for %s, held by %s", self.path, self.holder())
                last_report = now
            time.sleep(self.poll_s)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
