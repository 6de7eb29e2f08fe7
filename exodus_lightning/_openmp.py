"""One OpenMP runtime per process: torch's (docs/architecture.md §2).

Two OpenMP runtimes in one process mean two thread pools competing for the same cores, and
``torch.set_num_threads`` reaching only one of them.  The CPU library is therefore compiled with OpenMP
but linked against no OpenMP runtime (no ``DT_NEEDED`` entry, native/CMakeLists.txt): its ``GOMP_*`` and
``omp_*`` symbols bind, when it is loaded, to the runtime torch has already loaded into the global
symbol scope (``libtorch_global_deps`` is opened ``RTLD_GLOBAL``).  A wheel built from it has nothing
for ``auditwheel repair`` to bundle, and a source install needs no soname to match.  Since the
library's parallel regions run in the caller's thread with torch's runtime, they use
``torch.get_num_threads()`` threads.
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

# File names of the OpenMP runtimes: GNU (libgomp, and auditwheel's renamed libgomp-<hash>), Intel
# (libiomp5) and LLVM (libomp).
_RUNTIME = re.compile(r"^lib(gomp|iomp5|omp)([-.].*)?\.so(\.\d+)*$")


def mapped_runtimes(maps: str = "/proc/self/maps") -> list[str]:
    """Paths of the OpenMP runtime files mapped into this process (Linux), each once, in map order."""
    seen: list[str] = []
    try:
        text = Path(maps).read_text()
    except OSError:
        return seen
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and _RUNTIME.match(os.path.basename(parts[5].strip())):
            path = parts[5].strip()
            if path not in seen:
                seen.append(path)
    return seen


def share_torch_runtime() -> list[str]:
    """Make the OpenMP runtime that torch loaded visible to libraries loaded after it (promoted to the
    global scope; a no-op where torch already did so), so that the CPU library binds to it instead of
    loading its own.  Without one (a torch built without OpenMP), the system's ``libgomp.so.1`` is
    loaded globally: then it is the process's only runtime.  Returns the runtimes now mapped."""
    import torch  # noqa: F401  (loads torch's runtime)

    runtimes = mapped_runtimes()
    noload = getattr(os, "RTLD_NOLOAD", 4)
    for path in runtimes:
        ctypes.CDLL(path, mode=os.RTLD_GLOBAL | noload)
    if not runtimes:
        try:
            ctypes.CDLL("libgomp.so.1", mode=os.RTLD_GLOBAL)
        except OSError:
            pass  # the CPU library's load then names the missing symbol (NativeLibraryError)
    return mapped_runtimes()
