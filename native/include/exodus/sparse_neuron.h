// Per-entry arithmetic of sparse spiking gradient descent (S3GD, Perez-Nieves & Goodman 2021; see
// include/exodus/sparse_api.h), written once as EXODUS_HD inline functions and called by the CPU
// kernels (src/sparse/sparse_cpu_kernels.inc, in each of its ISA copies), the CUDA kernels
// (src/sparse/sparse_kernels.cuh) and their host emulation, so that the CPU tests exercise the
// arithmetic the GPU runs (docs/architecture.md §2).
//
// The operation order of every expression is part of the contract: the CPU and the CUDA drivers
// must round identically (both compiled without FMA contraction), so spikes, active sets and
// surrogate values agree bit for bit between devices.
#pragma once

#include "exodus/common.h"

namespace exodus {
namespace sparse {

// |x| exactly (fabs: +0 for -0, NaN stays NaN) on both sides; the CPU's fabs vectorises to an AND.
template <typename T>
EXODUS_HD T abs_value(T x) {
#if defined(__CUDA_ARCH__)
    return ::fabs(x);
#else
    return std::fabs(x);
#endif
}

// The active set of the paper is |V - V_th| < B_th, strict: a boundary value is inactive.
template <typename T>
EXODUS_HD bool is_active(T v, T theta, T b_th) {
    return abs_value(v - theta) < b_th;
}

// Truncated surrogate of suppl. E.5 eq. (20) inside the active set: 1 / (beta_s |v - theta| + 1)^2.
template <typename T>
EXODUS_HD T surrogate(T v, T theta, T beta_s) {
    const T den = beta_s * abs_value(v - theta) + T(1);
    return T(1) / (den * den);
}

// The surrogate with its truncation: zero off the active set (the dense baseline's f).
template <typename T>
EXODUS_HD T truncated_surrogate(T v, T theta, T b_th, T beta_s) {
    return is_active(v, theta, b_th) ? surrogate(v, theta, beta_s) : T(0);
}

// One step of the neuron (suppl. E.2 eq. 17-19): v <- (alpha v + in) - rs s, s <- v > theta
// (strict) or v >= theta.  `in` is h[t - 1] with the one-step delay, h[t] without; (alpha v + in)
// first is the order of the PyTorch reference, which keeps the spikes equal to it bit for bit.
template <typename T>
EXODUS_HD void forward_step(T in, T alpha, T theta, T rs, bool strict, T& v, T& s) {
    const T vv = alpha * v + in - rs * s;
    s = (strict ? vv > theta : vv >= theta) ? T(1) : T(0);
    v = vv;
}

// Error at an active entry from dL/dS (g), the surrogate f and gv1 = g_v[t + 1]: e = g f
// (detached reset, paper eq. 5/6), or e-hat = g f - rs f g_v[t + 1] (exact, EXODUS), which turns
// the exact recursion into the pure-decay one of decay_step.
template <typename T>
EXODUS_HD T error_step(T g, T f, T rs, T gv1, bool exact) {
    return exact ? g * f - rs * f * gv1 : g * f;
}

// g_v[t] = e[t] + alpha g_v[t + 1]: the whole backward outside the errors is this decay
// (Prop. 1 jumps n inactive steps at once with alpha^n).
template <typename T>
EXODUS_HD T decay_step(T e, T alpha, T gv1) {
    return e + alpha * gv1;
}

// alpha^n for n = 0..steps into pw[0..steps], by repeated multiplication (not pow): Prop. 1 jumps
// n inactive steps at once with alpha^n, and both devices must read the same rounded table (the
// CPU fills it per call, the CUDA driver on one thread of powers_kernel).
template <typename T>
EXODUS_HD void fill_powers(T* pw, T alpha, int64_t steps) {
    pw[0] = T(1);
    for (int64_t n = 1; n <= steps; ++n) pw[n] = pw[n - 1] * alpha;
}

// The input trace of the weight gradient, one step: trace[t] = alpha trace[t - 1] + x_in, where
// x_in is x[t - 1] with the one-step delay (0 at t = 0) and x[t] without (dW = sum e trace).
template <typename T>
EXODUS_HD T trace_step(T acc, T alpha, T x_in) {
    return alpha * acc + x_in;
}

}  // namespace sparse
}  // namespace exodus
