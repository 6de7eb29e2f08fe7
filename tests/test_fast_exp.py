"""exp_poly (native/include/exodus/fast_exp.h, the exp of every fused surrogate derivative) against
the C library's exp over its whole range, compiled with UndefinedBehaviorSanitizer made fatal: the
exponent bits are built by a left shift that must not overflow a signed type (issue 22, finding 3:
``(ki + 1023) << 52`` on int64 was undefined behaviour on every call)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

INCLUDE = Path(__file__).resolve().parents[1] / "native" / "include"

DRIVER = r"""
#include <cmath>
#include <cstdio>
#include <limits>
#include "exodus/fast_exp.h"

// Largest relative error of exp_poly against std::exp over [lo, hi] (n points), in units of the
// type's epsilon; and whether every argument below lo gives 0 (the documented underflow).
template <typename T>
void sweep(const char* name, T lo, T hi, int n) {
    double worst = 0.0;
    for (int i = 0; i <= n; ++i) {
        const T x = lo + (hi - lo) * T(i) / T(n);
        const double want = std::exp(double(x));
        const double got = double(exodus::exp_poly(x));
        worst = std::fmax(worst, std::fabs(got - want) / want);
    }
    const bool underflow = exodus::exp_poly(T(lo - 1)) == T(0) && exodus::exp_poly(T(-1e4)) == T(0);
    std::printf("%s %.3f %d\n", name, worst / double(std::numeric_limits<T>::epsilon()), int(underflow));
}

int main() {
    sweep<double>("double", -708.0, 709.0, 200001);
    sweep<float>("float", -87.0f, 88.0f, 200001);
    return 0;
}
"""


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH (the native build needs one; set CXX)")
    return cxx


def test_exp_poly_is_accurate_and_free_of_undefined_behaviour(tmp_path):
    src = tmp_path / "exp_poly.cpp"
    src.write_text(DRIVER)
    exe = tmp_path / "exp_poly"
    flags = ["-std=c++17", "-O2", "-ffp-contract=off", "-fno-fast-math",  # the libraries' strict flags
             "-fsanitize=undefined", "-fno-sanitize-recover=all"]
    build = subprocess.run([_compiler(), *flags, f"-I{INCLUDE}", str(src), "-o", str(exe)],
                           capture_output=True, text=True)
    if build.returncode != 0 and "sanitize" in build.stderr:
        pytest.skip(f"the compiler has no UndefinedBehaviorSanitizer runtime: {build.stderr.strip()[:300]}")
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "runtime error" not in run.stderr, f"UBSan: {run.stderr}"
    results = {name: (float(ulps), int(underflow)) for name, ulps, underflow in
               (line.split() for line in run.stdout.splitlines())}
    # ~1 ulp by design (degree-12 / degree-7 polynomials); 4 epsilons leaves room for the C library's own error
    assert results["double"][0] <= 4.0, results
    assert results["float"][0] <= 4.0, results
    assert results["double"][1] == 1 and results["float"][1] == 1, results
