"""``exodus-lightning info``: the block to paste into a bug report — package versions, which native
libraries (one per device: CPU, CUDA, the host emulation of the CUDA drivers) were found and loaded
and from where, their ABI version, the CPU library's instruction sets (and the one in use), the CUDA
toolkit the CUDA library was built with, the driver found (or why none) and the GPU architectures
compiled in.  A missing or broken library is reported with its fix, never as a traceback.
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Optional

from exodus_lightning import _native

PACKAGES = ("exodus-lightning", "torch", "lightning", "torchmetrics", "tonic", "wandb", "numpy", "nir")

# (library name, what it is for, required?)
LIBRARIES = (
    (_native.CPU_LIBRARY, "CPU kernels", True),
    (_native.CUDA_LIBRARY, "CUDA kernels", False),
    (_native.EMULATION_LIBRARY, "CUDA driver code compiled for the host (tests)", False),
)


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _cuda_version_text(v: int) -> str:
    return "none" if v <= 0 else f"{v // 1000}.{(v % 1000) // 10}"


def library_report(name: str, purpose: str, required: bool) -> list[str]:
    """Lines describing one native library: where it is, whether it loads (with its ABI version),
    what it was built with."""
    path = _native.find_library(name)
    label = _native.library_filename(name)
    if path is None:
        if required:
            return [f"{label}: MISSING ({purpose}). Fix: reinstall (pip install --force-reinstall exodus-lightning) "
                    "or build from source (pip install .); searched: "
                    + ", ".join(str(d) for d in _native.candidate_dirs())]
        if name == _native.CUDA_LIBRARY:
            return [f"{label}: not installed ({purpose}): this build has no CUDA support. Fix: install a wheel "
                    "with CUDA, or build from source with nvcc on PATH (EXODUS_REQUIRE_CUDA=ON pip install .)"]
        return [f"{label}: not installed ({purpose})"]
    try:
        lib = _native.NativeLibrary(name, path)
    except _native.NativeLibraryError as e:
        return [f"{label}: BROKEN at {path}: {e}. Fix: reinstall exodus-lightning (pip install --force-reinstall "
                "exodus-lightning)"]
    lines = [f"{label}: loaded from {path} ({purpose}), ABI version {_native.ABI_VERSION}"]
    build = lib.build_info()
    if build:
        lines.append(f"  built with: {build}")
    if lib.kind == "cpu":
        lines.append(f"  instruction sets: {', '.join(lib.available_isas())} available, using {lib.isa()} "
                     f"(${_native.ISA_ENV} selects another)")
        lines.append(f"  streaming stores for outputs over {lib.stream_threshold() / 2**20:.1f} MiB per call")
    if lib.kind == "cuda":
        runtime = int(lib.function("runtime_version")())
        driver = int(lib.function("driver_version")())
        count = int(lib.function("device_count")())
        lines.append(f"  CUDA runtime (static, built with): {_cuda_version_text(runtime)}")
        if driver <= 0:
            lines.append("  NVIDIA driver: none found (no GPU or no driver installed): the CUDA kernels are unused; "
                         "everything runs on the CPU")
        else:
            lines.append(f"  NVIDIA driver supports CUDA: {_cuda_version_text(driver)}")
            if driver < runtime:
                lines.append(f"  the driver is older than the toolkit ({_cuda_version_text(runtime)}). Fix: update the "
                             "NVIDIA driver, or build from source with a toolkit the driver supports "
                             "(pip install --no-binary exodus-lightning exodus-lightning)")
        if count >= 0:
            lines.append(f"  GPUs visible: {count}")
        else:
            lines.append(f"  GPUs visible: none ({lib.last_error()})")
    return lines


def report() -> str:
    """The whole ``info`` block as text."""
    lines = ["exodus-lightning info", f"python: {sys.version.split()[0]} ({platform.platform()})"]
    lines += [f"{p}: {_version(p)}" for p in PACKAGES]
    try:
        import torch

        lines.append(f"torch CUDA: {torch.version.cuda or 'CPU build'}, GPUs visible to torch: "
                     f"{torch.cuda.device_count() if torch.cuda.is_available() else 0}")
    except Exception as e:  # a broken torch install is itself worth reporting, not a traceback
        lines.append(f"torch: cannot be imported ({e})")
    lines.append("native libraries:")
    for name, purpose, required in LIBRARIES:
        lines += ["  " + line for line in library_report(name, purpose, required)]
    return "\n".join(lines)


def info_main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``exodus-lightning info``; exit code 1 when the required CPU library is missing."""
    if argv:
        print(f"exodus-lightning info takes no arguments, got {' '.join(argv)}", file=sys.stderr)
        return 2
    text = report()
    print(text)
    return 1 if "MISSING" in text or "BROKEN" in text else 0
