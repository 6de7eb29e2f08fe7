"""Every bad input of the functional API gets a clear error naming the argument (docs/architecture.md §6)."""

from __future__ import annotations

import math

import pytest
import torch

import exodus_lightning as el
from exodus_lightning import _native
from exodus_lightning.functional import leaky_integrator, lif
from exodus_lightning.neuron_parameters import LIFParameters

X = torch.rand(2, 5, 3)


@pytest.mark.parametrize("fn", [lambda x: lif(x, LIFParameters(tau_mem=5.0)), lambda x: leaky_integrator(x, 5.0)], ids=["lif", "leaky"])
def test_wrong_rank(fn):
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, \*features\).*got shape \(5, 3\)"):
        fn(torch.rand(5, 3))


def test_zero_time_steps():
    with pytest.raises(ValueError, match="x has T = 0 time steps"):
        lif(torch.rand(2, 0, 3), LIFParameters(tau_mem=5.0))


def test_integer_dtype():
    with pytest.raises(TypeError, match="x must be a floating-point tensor.*torch.int64"):
        lif(torch.ones(2, 4, 3, dtype=torch.long), LIFParameters(tau_mem=5.0))


def test_not_a_tensor():
    with pytest.raises(TypeError, match="x must be a torch.Tensor.*list"):
        lif([[[1.0]]], LIFParameters(tau_mem=5.0))


def test_half_precision_on_cpu():
    with pytest.raises(TypeError, match="float16 is supported on CUDA only"):
        lif(X.half(), LIFParameters(tau_mem=5.0))


@pytest.mark.parametrize("arg", ["tau_mem", "threshold", "v0"])
def test_devices_that_differ(arg):
    meta = torch.device("meta")
    p, v0 = LIFParameters(tau_mem=5.0), None
    if arg == "tau_mem":
        p = LIFParameters(tau_mem=torch.full((3,), 5.0, device=meta))
    elif arg == "threshold":
        p = LIFParameters(tau_mem=5.0, threshold=torch.ones(3, device=meta))
    else:
        v0 = torch.zeros(2, 3, device=meta)
    with pytest.raises(ValueError, match=f"{arg} is on meta but x is on cpu"):
        lif(X, p, v0=v0)


@pytest.mark.parametrize("tau", [0.0, -1.0, math.nan, torch.tensor([5.0, -2.0, 3.0]), torch.tensor([math.nan] * 3)])
def test_bad_tau_mem(tau):
    with pytest.raises(ValueError, match="tau_mem must be > 0"):
        lif(X, LIFParameters(tau_mem=tau))


def test_bad_tau_syn_and_leaky_tau():
    with pytest.raises(ValueError, match="tau_syn must be > 0 and finite"):
        lif(X, LIFParameters(tau_mem=5.0, tau_syn=math.inf))
    with pytest.raises(ValueError, match="tau must be > 0"):
        leaky_integrator(X, -3.0)


@pytest.mark.parametrize("theta", [0.0, -0.5, torch.tensor([1.0, 0.0, 1.0])])
def test_bad_threshold(theta):
    with pytest.raises(ValueError, match="threshold must be > 0"):
        lif(X, LIFParameters(tau_mem=5.0, threshold=theta))


def test_norm_input_with_if_neuron():
    with pytest.raises(ValueError, match="norm_input=True needs a finite tau_mem"):
        lif(X, LIFParameters(tau_mem=math.inf, norm_input=True))
    with pytest.raises(ValueError, match="norm_input=True needs a finite tau"):
        leaky_integrator(X, math.inf, norm_input=True)


def test_per_neuron_parameter_that_does_not_broadcast():
    with pytest.raises(ValueError, match=r"tau_mem of shape \(4,\) does not broadcast over the feature shape \(3,\)"):
        lif(X, LIFParameters(tau_mem=torch.full((4,), 5.0)))
    x = torch.rand(2, 5, 4, 6, 6)
    with pytest.raises(ValueError, match=r"threshold of shape \(4, 6\) does not broadcast over the feature shape"):
        lif(x, LIFParameters(tau_mem=5.0, threshold=torch.ones(4, 6)))
    # right-aligned per-channel values do broadcast
    assert lif(x, LIFParameters(tau_mem=torch.full((4, 1, 1), 5.0))).shape == x.shape


def test_state_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"v0 must have shape \(B, \*features\) = \(2, 3\), got \(3, 3\)"):
        lif(X, LIFParameters(tau_mem=5.0), v0=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="i0 was given but the neuron has no synapse"):
        lif(X, LIFParameters(tau_mem=5.0), i0=torch.zeros(2, 3))


def test_bad_modes():
    with pytest.raises(ValueError, match="reset must be 'subtract' or 'zero', got 'hard'"):
        lif(X, LIFParameters(tau_mem=5.0, reset="hard"))
    with pytest.raises(ValueError, match="spike must be 'single', 'multi' or an int k >= 1"):
        lif(X, LIFParameters(tau_mem=5.0, spike=0))
    with pytest.raises(ValueError, match="backend must be one of 'exodus', 'slayer', 'bptt', got 'fast'"):
        lif(X, LIFParameters(tau_mem=5.0), backend="fast")
    with pytest.raises(TypeError, match="surrogate must be callable"):
        lif(X, LIFParameters(tau_mem=5.0, surrogate=3))
    with pytest.raises(ValueError, match="backend must be one of"):
        el.set_backend("exact")


def test_nan_input_when_checking_is_enabled():
    x = X.clone()
    x[0, 1, 2] = math.nan
    el.set_check_finite(True)
    try:
        with pytest.raises(ValueError, match="x contains NaN or Inf"):
            lif(x, LIFParameters(tau_mem=5.0))
    finally:
        el.set_check_finite(False)


def test_native_error_is_a_runtime_error_with_the_native_message():
    args = _native.LeakyForwardArgs(B=1, T=1, N=1, dtype=0, device=0, stream=None, x=None, alpha=None,
                                    alpha_per_neuron=0, v0=None, norm_input=0, out=None)
    with pytest.raises(RuntimeError, match="exodus native error.*leaky_forward"):
        _native.cpu().call("leaky_forward", args)


def test_cuda_launch_error_names_driver_and_toolkit():
    """Without a GPU, a launch through the CUDA library fails with a message naming the driver and
    the toolkit (on a GPU machine the same call succeeds, so the test is skipped there)."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the launch succeeds")
    lib = _native.cuda()
    x = torch.rand(1, 2, 3)
    alpha = torch.tensor([0.5])
    out = torch.empty_like(x)
    args = _native.LeakyForwardArgs(B=1, T=2, N=3, dtype=0, device=0, stream=None, x=x.data_ptr(),
                                    alpha=alpha.data_ptr(), alpha_per_neuron=0, v0=None, norm_input=0,
                                    out=out.data_ptr())
    with pytest.raises(RuntimeError, match=r"CUDA error .*driver.*toolkit 1\d\.\d"):
        lib.call("leaky_forward", args)


def test_missing_library_message(monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "candidate_dirs", lambda: [tmp_path])
    monkeypatch.setattr(_native, "_loaded", {})
    with pytest.raises(_native.NativeLibraryError,
                       match=rf"native library libexodus_native_cuda.so not found \(searched: {tmp_path}\)"):
        _native.cuda()


def test_exodus_native_lib_overrides_the_package_folder(monkeypatch, tmp_path):
    import shutil

    installed = _native.find_library(_native.CPU_LIBRARY)
    copy = tmp_path / installed.name
    shutil.copy(installed, copy)
    monkeypatch.setenv("EXODUS_NATIVE_LIB", str(tmp_path))
    assert _native.find_library(_native.CPU_LIBRARY) == copy
    monkeypatch.setenv("EXODUS_NATIVE_LIB", str(copy))
    assert _native.find_library(_native.CPU_LIBRARY) == copy
    monkeypatch.setattr(_native, "_loaded", {})
    assert _native.cpu().path == copy
