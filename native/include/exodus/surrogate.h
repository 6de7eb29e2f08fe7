// Fused built-in surrogate derivatives f'(v), evaluated inside the backward kernels so that no
// (B, T, N) surrogate tensor is materialised.  Definitions match exodus_lightning/surrogate.py
// (sinabs-compatible); any other surrogate is computed in PyTorch and passed as a tensor.
#pragma once

#include "exodus/common.h"
#include "exodus/fast_exp.h"

namespace exodus {

enum SurrogateId : int32_t {
    kSurrogateTensor = 0,             // precomputed by the caller
    kSurrogateSingleExponential = 1,  // p0 = grad_width, p1 = grad_scale
    kSurrogateFastSigmoid = 2,        // p0 = slope,      p1 = grad_scale
    kSurrogateGaussian = 3,           // p0 = mu, p1 = sigma, p2 = grad_scale
    kSurrogateBoxcar = 4,             // p0 = width,      p1 = grad_scale
};

struct SurrogateSpec {
    int32_t id;
    double p0, p1, p2;
};

template <typename A>
EXODUS_HD A surrogate_single_exponential(A v, A theta, A width, A scale) {
    const A d = v - theta;
    const A ad = d < A(0) ? -d : d;
    const A abs_width = theta * width;
    return scale / abs_width * exp_poly(-ad / abs_width);
}

// The same surrogate with its per-neuron factors precomputed (single_exponential_factors):
// coef exp(-|v - theta| inv_width), a multiply instead of two divisions per element.  It differs
// from surrogate_single_exponential by <= 1 ulp (in the gradient only); the CPU driver uses it in
// its SIMD rows, the CUDA kernels the formula above.
template <typename A>
EXODUS_HD void single_exponential_factors(A theta, A width, A scale, A& inv_width, A& coef) {
    const A abs_width = theta * width;
    inv_width = A(1) / abs_width;
    coef = scale / abs_width;
}

template <typename A>
EXODUS_HD A surrogate_single_exponential_factored(A v, A theta, A inv_width, A coef) {
    const A d = v - theta;
    const A ad = d < A(0) ? -d : d;
    return coef * exp_poly(-ad * inv_width);
}

template <typename A>
EXODUS_HD A surrogate_fast_sigmoid(A v, A theta, A slope, A scale) {
    const A d = v - theta;
    const A q = slope * (d < A(0) ? -d : d) + A(1);
    return scale / (q * q);
}

template <typename A>
EXODUS_HD A surrogate_gaussian(A v, A theta, A mu, A sigma, A scale) {
    const A z = (v - theta) - mu;
    return scale * exp_poly(-(z * z) / (A(2) * sigma * sigma)) / (sigma * A(2.5066282746310002));
}

template <typename A>
EXODUS_HD A surrogate_boxcar(A v, A theta, A width, A scale) {
    const A d = v - theta;
    return (d < A(0) ? -d : d) <= width ? scale / (A(2) * width) : A(0);
}

// Dispatch on the runtime id (used per thread on the GPU; the CPU driver hoists the switch out
// of its SIMD loops and calls the functions above directly).
template <typename A>
EXODUS_HD A surrogate_eval(const SurrogateSpec& sp, A v, A theta) {
    switch (sp.id) {
        case kSurrogateSingleExponential: return surrogate_single_exponential(v, theta, A(sp.p0), A(sp.p1));
        case kSurrogateFastSigmoid: return surrogate_fast_sigmoid(v, theta, A(sp.p0), A(sp.p1));
        case kSurrogateGaussian: return surrogate_gaussian(v, theta, A(sp.p0), A(sp.p1), A(sp.p2));
        case kSurrogateBoxcar: return surrogate_boxcar(v, theta, A(sp.p0), A(sp.p1));
        default: return A(0);
    }
}

}  // namespace exodus
