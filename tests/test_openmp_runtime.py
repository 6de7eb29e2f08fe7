"""One OpenMP runtime per process (exodus_lightning/_openmp.py): the CPU library binds to the runtime
torch loaded instead of bringing its own, so ``torch.set_num_threads`` governs its threads too; and the
allocator settings applied at import (exodus_lightning/_allocator.py) let freed tensors be reused
without page faults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from exodus_lightning import _native, _openmp


def _run(script: str, env: dict | None = None) -> str:
    import os

    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_one_openmp_runtime_is_mapped_and_it_is_torchs():
    out = _run("""
        import torch
        from exodus_lightning import _openmp
        before = _openmp.mapped_runtimes()
        import exodus_lightning
        from exodus_lightning.functional import lif
        x = torch.rand(4, 30, 300, requires_grad=True)
        lif(x, exodus_lightning.LIFParameters(tau_mem=5.0)).sum().backward()
        after = _openmp.mapped_runtimes()
        print(repr(before)); print(repr(after))
    """)
    before, after = (eval(line) for line in out.strip().splitlines()[-2:])
    assert len(before) == 1, before  # torch's own
    assert after == before, f"exodus-lightning mapped another OpenMP runtime: {after}"


def test_the_cpu_library_links_no_openmp_runtime_of_its_own():
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    lib = _native.cpu()
    with open(lib.path, "rb") as f:
        elf = ELFFile(f)
        needed = [tag.needed for sec in elf.iter_sections() if isinstance(sec, DynamicSection)
                  for tag in sec.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
        undefined = {sym.name for sym in elf.get_section_by_name(".dynsym").iter_symbols()
                     if sym["st_shndx"] == "SHN_UNDEF"}
    assert not [n for n in needed if _openmp._RUNTIME.match(n)], needed
    if "OpenMP" in lib.build_info():  # built with OpenMP (GCC): its calls bind to torch's runtime
        assert "GOMP_parallel" in undefined and "omp_get_max_threads" in undefined, sorted(undefined)[:20]


def test_the_cpu_library_follows_torch_set_num_threads():
    lib = _native.cpu()
    before = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            assert lib.max_threads() == n == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_mapped_runtimes_reads_the_maps_format(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f0-7f1 r-xp 00000000 08:01 1 /usr/lib/libgomp.so.1.0.0\n"
        "7f1-7f2 r--p 00000000 08:01 1 /usr/lib/libgomp.so.1.0.0\n"
        "7f2-7f3 r-xp 00000000 08:01 2 /w/site/pkg.libs/libgomp-a34b3233.so.1\n"
        "7f3-7f4 r-xp 00000000 08:01 3 /opt/intel/libiomp5.so\n"
        "7f4-7f5 r-xp 00000000 08:01 4 /usr/lib/libgompish_other.so\n"
        "7f5-7f6 rw-p 00000000 00:00 0 \n")
    assert _openmp.mapped_runtimes(str(maps)) == [
        "/usr/lib/libgomp.so.1.0.0", "/w/site/pkg.libs/libgomp-a34b3233.so.1", "/opt/intel/libiomp5.so"]


_FAULTS = """
    import resource, torch
    import exodus_lightning
    torch.set_num_threads(1)
    n = 48 << 18  # 48 MiB of float32: above glibc's largest dynamic mmap threshold (32 MiB)
    faults = []
    for _ in range(8):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = torch.empty(n); a.fill_(1.0); b = torch.empty(n); b.fill_(2.0)
        del a, b
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(exodus_lightning._allocator.status); print(min(faults[-3:]))
"""


def test_freed_tensors_are_reused_without_page_faults_and_the_opt_out_restores_glibc():
    pages = 2 * (48 << 20) // 4096
    tuned = _run(_FAULTS).strip().splitlines()
    assert tuned[0].startswith("glibc mmap threshold"), tuned
    assert int(tuned[1]) < pages // 10, tuned  # the blocks stay mapped: (almost) no new faults
    default = _run(_FAULTS, {"EXODUS_MALLOC_TUNING": "0"}).strip().splitlines()
    assert default[0].startswith("glibc defaults"), default
    assert int(default[1]) > pages * 9 // 10, default  # every block faulted in again


def test_team_sizing_under_a_busy_core_never_changes_a_bit():
    """The scans' team shrinks while a core is busy and grows back on probes (native
    exodus/thread_team.h); whichever team computes a block, its bits are the same: forward and
    backward with 2 threads next to a spinning co-runner equal the 1-thread results, call after call."""
    import os

    from exodus_lightning import LIFParameters
    from exodus_lightning.functional import leaky_integrator, lif

    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        import pytest

        pytest.skip("needs two cores to pin a co-runner to one of them")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 200, 700, generator=g)
    grad = torch.randn(8, 200, 700, generator=g)
    p = LIFParameters(tau_mem=torch.linspace(3.0, 40.0, 700), threshold=0.8, surrogate=None)

    def step():
        xx = x.clone().requires_grad_()
        s = lif(xx, p)
        y = leaky_integrator(s, 10.0)
        (gx,) = torch.autograd.grad((y * grad).sum(), xx)
        return s, y, gx

    threads = torch.get_num_threads()
    core = sorted(os.sched_getaffinity(0))[-1]
    spinner = subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    try:
        torch.set_num_threads(1)
        reference = step()
        torch.set_num_threads(2)
        for _ in range(40):  # more than the probe period: shrunk and full teams both run
            for a, b in zip(step(), reference):
                assert torch.equal(a, b)
    finally:
        spinner.kill()
        torch.set_num_threads(threads)
