"""Runs ``exodus-lightning ARGS`` in this process with a disk that has room for BUDGET more bytes:
every file Python opens for writing (``open``) shares the budget, and a write past it fails with
``OSError(ENOSPC)`` as on a full disk (nothing of it is written).

usage: disk_full_cli.py BUDGET ARGS...
"""

import builtins
import errno
import sys

_open = builtins.open
left = int(sys.argv[1])


class _FullDiskFile:
    def __init__(self, f):
        self._f = f

    def write(self, data):
        global left
        n = len(data)
        if n > left:
            raise OSError(errno.ENOSPC, "No space left on device")
        left -= n
        return self._f.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _open_on_a_small_disk(file, mode="r", *args, **kwargs):
    f = _open(file, mode, *args, **kwargs)
    return _FullDiskFile(f) if any(c in mode for c in "wax+") else f


builtins.open = _open_on_a_small_disk

from exodus_lightning.cli import main  # noqa: E402  (after the patch, as a process on a small disk)

sys.exit(main(sys.argv[2:]))
