"""Every surrogate of :mod:`exodus_lightning.surrogate` against an independent definition.

A surrogate is the derivative of a smooth stand-in for the step function. Each test writes that
stand-in (a primitive, by hand) and lets autograd differentiate it, or, where the surrogate is defined
by a construction rather than a primitive (the periodic exponential), follows the construction by
brute force. Points where the primitive has a kink are kept out of the samples."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning.surrogate import (
    Boxcar,
    FastSigmoid,
    Gaussian,
    Heaviside,
    MultiGaussian,
    PeriodicExponential,
    SigmoidSurrogate,
    SingleExponential,
    SuperSpike,
    fused_spec,
)
from exodus_lightning.neuron_parameters import LIFParameters

THRESHOLDS = (1.0, 0.5, 2.0)


def _samples(threshold: float, kinks: tuple[float, ...] = ()) -> torch.Tensor:
    v = torch.linspace(-3 * threshold, 5 * threshold, 1601, dtype=torch.float64)
    keep = torch.ones_like(v, dtype=torch.bool)
    for k in kinks:
        keep &= (v - k).abs() > 1e-6
    return v[keep]


def _derivative(primitive, v: torch.Tensor) -> torch.Tensor:
    v = v.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(primitive(v).sum(), v)
    return g


def _normal_cdf(x: torch.Tensor, mu: float, sigma: float) -> torch.Tensor:
    return 0.5 * (1 + torch.erf((x - mu) / (sigma * math.sqrt(2))))


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("width, scale", [(0.5, 1.0), (0.3, 2.5)])
def test_single_exponential_is_the_derivative_of_a_two_sided_exponential_step(threshold, width, scale):
    a = threshold * width  # the width is relative to the threshold

    def step(v):  # rises from 0 to 2 * scale around the threshold
        d = v - threshold
        return scale * torch.where(d < 0, torch.exp(d / a), 2 - torch.exp(-d / a))

    v = _samples(threshold, (threshold,))
    torch.testing.assert_close(SingleExponential(width, scale)(v, threshold), _derivative(step, v), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("slope, scale", [(25.0, 1.0), (4.0, 0.7)])
def test_fast_sigmoid_is_the_derivative_of_x_over_one_plus_k_abs_x(threshold, slope, scale):
    def step(v):
        d = v - threshold
        return scale * d / (slope * d.abs() + 1)

    v = _samples(threshold, (threshold,))
    torch.testing.assert_close(FastSigmoid(slope, scale)(v, threshold), _derivative(step, v), rtol=1e-12, atol=1e-12)
    assert SuperSpike is FastSigmoid


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("mu, sigma, scale", [(0.0, 0.5, 1.0), (0.2, 0.3, 3.0)])
def test_gaussian_is_the_derivative_of_the_normal_cdf(threshold, mu, sigma, scale):
    def step(v):
        return scale * _normal_cdf(v - threshold, mu, sigma)

    v = _samples(threshold)
    torch.testing.assert_close(Gaussian(mu, sigma, scale)(v, threshold), _derivative(step, v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_multi_gaussian_is_the_derivative_of_its_mixture_of_normal_cdfs(threshold):
    sigma, h, s, scale = 0.5, 0.15, 6.0, 1.5

    def step(v):
        d = v - threshold
        return scale * ((1 + h) * _normal_cdf(d, 0.0, sigma) - h * _normal_cdf(d, sigma, s * sigma)
                        - h * _normal_cdf(d, -sigma, s * sigma))

    v = _samples(threshold)
    got = MultiGaussian(0.0, sigma, h, s, scale)(v, threshold)
    torch.testing.assert_close(got, _derivative(step, v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("width, scale", [(0.5, 1.0), (0.25, 4.0)])
def test_boxcar_is_the_derivative_of_a_ramp_of_unit_height(threshold, width, scale):
    def step(v):
        return scale * ((v - threshold + width) / (2 * width)).clamp(0.0, 1.0)

    v = _samples(threshold, (threshold - width, threshold + width))
    torch.testing.assert_close(Boxcar(width, scale)(v, threshold), _derivative(step, v), rtol=0, atol=1e-12)
    # the edges belong to the window (these edges are exact binary fractions)
    edges = torch.tensor([threshold - width, threshold + width], dtype=torch.float64)
    assert torch.equal(Boxcar(width, scale)(edges, threshold), torch.full((2,), scale / (2 * width), dtype=torch.float64))


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("window", [1.0, 0.25])
def test_heaviside_is_the_derivative_of_a_hinge_over_theta(threshold, window):
    def step(v):
        return torch.relu(v - (threshold - window)) / threshold

    v = _samples(threshold, (threshold - window,))
    torch.testing.assert_close(Heaviside(window)(v, threshold), _derivative(step, v), rtol=0, atol=1e-15)
    # sinabs' window is closed on the left: v = theta - window counts
    at_edge = torch.tensor([threshold - window], dtype=torch.float64)
    assert Heaviside(window)(at_edge, threshold).item() == 1.0 / threshold


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("width, scale", [(0.5, 1.0), (0.3, 2.0)])
def test_periodic_exponential_peaks_at_every_multiple_of_the_threshold(threshold, width, scale):
    """Below the threshold a single exponential around theta; from it on, around the nearest
    multiple k theta (k >= 1): exp(-distance / width) / theta, the distance found by trying every k."""
    v = _samples(threshold)
    k = torch.arange(1, 12, dtype=torch.float64)
    nearest = (v[:, None] - k[None, :] * threshold).abs().min(1).values
    distance = torch.where(v >= threshold, nearest, (v - threshold).abs())
    expected = scale * torch.exp(-distance / width) / threshold
    torch.testing.assert_close(PeriodicExponential(width, scale)(v, threshold), expected, rtol=1e-9, atol=1e-12)


def test_periodic_exponential_equals_sinabs_formula_at_unit_threshold():
    """sinabs' PeriodicExponential, transcribed (it wraps by floor((v - theta/2) / theta) without
    multiplying by theta, which is the same thing when theta = 1)."""
    v = _samples(1.0)
    shifted = v - 0.5
    periodic = shifted - torch.div(shifted, 1.0, rounding_mode="floor")
    wrapped = shifted * (v < 1.0) + periodic * (v >= 1.0)
    expected = 2.0 * torch.exp(-(wrapped - 0.5).abs() / 0.5) / 1.0
    torch.testing.assert_close(PeriodicExponential(0.5, 2.0)(v, 1.0), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("surrogate", [SingleExponential(0.4, 2.0), FastSigmoid(10.0, 0.5), Gaussian(0.1, 0.3, 2.0),
                                       Boxcar(0.25, 3.0)], ids=lambda s: type(s).__name__)
def test_the_kernels_fused_surrogate_equals_its_formula(surrogate):
    """The native backward computes the built-ins inline (``fused``); its gradient equals the one it
    computes from the same formula evaluated in PyTorch (a plain callable is not fused)."""
    from exodus_lightning.functional import lif

    assert fused_spec(surrogate) is not None
    torch.manual_seed(0)
    x = (torch.rand(3, 40, 6, dtype=torch.float64) * 0.8).requires_grad_(True)
    g = torch.randn(3, 40, 6, dtype=torch.float64)
    fused = torch.autograd.grad(lif(x, LIFParameters(tau_mem=8.0, surrogate=surrogate)), x, g)[0]
    formula = torch.autograd.grad(lif(x, LIFParameters(tau_mem=8.0, surrogate=lambda v, th: surrogate(v, th))), x, g)[0]
    torch.testing.assert_close(fused, formula, rtol=1e-12, atol=1e-12)
    assert fused.abs().sum() > 0


def test_only_the_kernels_surrogates_are_fused():
    for unfused in (MultiGaussian(), PeriodicExponential(), Heaviside(), lambda v, th: v):
        assert fused_spec(unfused) is None


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("alpha", [4.0, 1.5])
def test_sigmoid_is_the_derivative_of_a_logistic_step(threshold, alpha):
    """OTTT's surrogate: d/dv of 1 / (1 + exp(-alpha (v - theta)))."""
    v = _samples(threshold)
    step = lambda u: 1.0 / (1.0 + torch.exp(-alpha * (u - threshold)))  # noqa: E731
    torch.testing.assert_close(SigmoidSurrogate(alpha)(v, threshold), _derivative(step, v), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("surrogate, argument", [
    (lambda: SigmoidSurrogate(alpha=0.0), "alpha"),
    (lambda: SingleExponential(grad_width=0.0), "grad_width"), (lambda: FastSigmoid(slope=-1.0), "slope"),
    (lambda: Gaussian(sigma=float("nan")), "sigma"), (lambda: Boxcar(width=float("inf")), "width"),
])
def test_bad_parameters_name_the_argument(surrogate, argument):
    with pytest.raises(ValueError, match=f"'{argument}' must be a finite number > 0"):
        surrogate()
