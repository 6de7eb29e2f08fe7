// CUDA drivers: one thread per neuron with the time loop inside, consecutive threads on
// consecutive neurons (coalesced along the contiguous N axis), grid-stride loops and 64-bit
// indices.  Included by exodus_cuda.cu (nvcc) and by emu/cuda_emulation.cpp (host, tests):
// the file must stay thin — index arithmetic, bounds, launch — and call include/exodus/lif.h.
// Before including, define EXODUS_LAUNCH and either compile with nvcc or include
// exodus/cuda_emu.h.
#pragma once

#include <algorithm>
#include <string>

#include "exodus/c_api.h"
#include "exodus/common.h"
#include "exodus/lif.h"
#include "exodus/surrogate.h"
#include "../cuda/launch_grid.cuh"

namespace exodus {
namespace cuda_driver {

using namespace exodus::launch;  // kThreads, grid_for, first_index, grid_step, load, store

template <typename A>
__device__ __forceinline__ A param(const void* p, int32_t per_neuron, int64_t n) {
    return static_cast<const A*>(p)[per_neuron ? n : 0];
}

template <typename T>
__global__ void lif_forward_kernel(exodus_lif_forward_args a) {
    using A = typename AccumOf<T>::type;
    const int64_t total = a.B * a.N;
    const LifModes m{a.reset_mode, a.max_spikes, a.has_clamp, a.norm_input, a.beta != nullptr};
    const A v_min = A(a.v_min);
    for (int64_t idx = first_index(); idx < total; idx += grid_step()) {
        const int64_t b = idx / a.N;
        const int64_t n = idx - b * a.N;
        const A alpha = param<A>(a.alpha, a.alpha_per_neuron, n);
        const A c = input_scale(alpha, m.norm_input);
        const A theta = param<A>(a.theta, a.theta_per_neuron, n);
        const A beta = m.has_syn ? param<A>(a.beta, a.beta_per_neuron, n) : A(0);
        A v_post = a.v0 ? load<A, T>(a.v0, idx) : A(0);
        A i_syn = a.i0 ? load<A, T>(a.i0, idx) : A(0);
        A probe = A(0);  // nonfinite_probe_step: 0 for finite x, NaN after a NaN or +-Inf
        for (int64_t t = 0; t < a.T; ++t) {
            const int64_t off = (b * a.T + t) * a.N + n;
            const A x = load<A, T>(a.x, off);
            A s, v;
            lif_forward_step<A>(x, alpha, c, theta, beta, v_min, m, v_post, i_syn, s, v);
            static_cast<T*>(a.spikes)[off] = T(s);
            static_cast<T*>(a.v)[off] = T(v);
            if (a.i_trace) static_cast<T*>(a.i_trace)[off] = T(m.has_syn ? i_syn : x);
            if (a.nonfinite) probe = nonfinite_probe_step(probe, x);
        }
        // every writing thread stores the same 1 (no read-modify-write, so no atomic needed)
        if (a.nonfinite && probe != probe) *a.nonfinite = 1;
        static_cast<T*>(a.v_final)[idx] = T(v_post);
        if (a.i_final) static_cast<T*>(a.i_final)[idx] = T(i_syn);
    }
}

template <typename T>
__global__ void lif_backward_kernel(exodus_lif_backward_args a) {
    using A = typename AccumOf<T>::type;
    const int64_t total = a.B * a.N;
    const LifModes m{a.reset_mode, a.max_spikes, a.has_clamp, a.norm_input, a.beta != nullptr};
    const SurrogateSpec sp{a.surrogate_id, a.surrogate_p0, a.surrogate_p1, a.surrogate_p2};
    const A v_min = A(a.v_min);
    const A norm = a.norm_input ? A(1) : A(0);
    for (int64_t idx = first_index(); idx < total; idx += grid_step()) {
        const int64_t b = idx / a.N;
        const int64_t n = idx - b * a.N;
        const A alpha = param<A>(a.alpha, a.alpha_per_neuron, n);
        const A c = input_scale(alpha, m.norm_input);
        const A theta = param<A>(a.theta, a.theta_per_neuron, n);
        const A beta = m.has_syn ? param<A>(a.beta, a.beta_per_neuron, n) : A(0);
        A g_post = a.grad_v_final ? load<A, T>(a.grad_v_final, idx) : A(0);
        A g_isyn = a.grad_i_final ? load<A, T>(a.grad_i_final, idx) : A(0);
        A g_alpha = A(0);
        for (int64_t t = a.T - 1; t >= 0; --t) {
            const int64_t off = (b * a.T + t) * a.N + n;
            const A v = load<A, T>(a.v, off);
            const A f = sp.id == kSurrogateTensor ? load<A, T>(a.surrogate, off)
                                                  : surrogate_eval<A>(sp, v, theta);
            const A gs = a.grad_spikes ? load<A, T>(a.grad_spikes, off) : A(0);
            const A gv = a.grad_v ? load<A, T>(a.grad_v, off) : A(0);
            const A g_v = lif_backward_step<A>(v, f, gs, gv, theta, v_min, m, a.backward_mode, g_post);
            const A g_x = lif_carry_backward_step<A>(g_v, alpha, c, beta, m.has_syn, g_post, g_isyn);
            static_cast<T*>(a.grad_x)[off] = T(g_x);
            if (a.grad_alpha) {
                const A vp = t > 0 ? lif_post_from_v<A>(load<A, T>(a.v, off - a.N), theta, v_min, m)
                                   : (a.v0 ? load<A, T>(a.v0, idx) : A(0));
                const A i = a.i_trace ? load<A, T>(a.i_trace, off) : A(0);
                g_alpha += alpha_grad_term<A>(g_v, vp, norm, i);
            }
        }
        if (a.grad_v0) static_cast<T*>(a.grad_v0)[idx] = T(g_post);
        if (a.grad_i0) static_cast<T*>(a.grad_i0)[idx] = T(m.has_syn ? g_isyn : A(0));
        if (a.grad_alpha) static_cast<T*>(a.grad_alpha)[idx] = T(g_alpha);
    }
}

template <typename T>
__global__ void leaky_forward_kernel(exodus_leaky_forward_args a) {
    using A = typename AccumOf<T>::type;
    const int64_t total = a.B * a.N;
    for (int64_t idx = first_index(); idx < total; idx += grid_step()) {
        const int64_t b = idx / a.N;
        const int64_t n = idx - b * a.N;
        const A alpha = param<A>(a.alpha, a.alpha_per_neuron, n);
        const A c = input_scale(alpha, a.norm_input);
        A v = a.v0 ? load<A, T>(a.v0, idx) : A(0);
        for (int64_t t = 0; t < a.T; ++t) {
            const int64_t off = (b * a.T + t) * a.N + n;
            v = leaky_forward_step<A>(load<A, T>(a.x, off), alpha, c, a.norm_input, v);
            static_cast<T*>(a.out)[off] = T(v);
        }
    }
}

template <typename T>
__global__ void leaky_backward_kernel(exodus_leaky_backward_args a) {
    using A = typename AccumOf<T>::type;
    const int64_t total = a.B * a.N;
    const A norm = a.norm_input ? A(1) : A(0);
    for (int64_t idx = first_index(); idx < total; idx += grid_step()) {
        const int64_t b = idx / a.N;
        const int64_t n = idx - b * a.N;
        const A alpha = param<A>(a.alpha, a.alpha_per_neuron, n);
        const A c = input_scale(alpha, a.norm_input);
        A g = A(0), g_alpha = A(0);
        for (int64_t t = a.T - 1; t >= 0; --t) {
            const int64_t off = (b * a.T + t) * a.N + n;
            const A g_x = leaky_backward_step<A>(load<A, T>(a.grad_out, off), alpha, c, g);
            static_cast<T*>(a.grad_x)[off] = T(g_x);
            if (a.grad_alpha) {
                const A vp = t > 0 ? load<A, T>(a.out, off - a.N) : (a.v0 ? load<A, T>(a.v0, idx) : A(0));
                const A x = a.x ? load<A, T>(a.x, off) : A(0);
                g_alpha += alpha_grad_term<A>(g, vp, norm, x);
            }
        }
        if (a.grad_v0) static_cast<T*>(a.grad_v0)[idx] = T(alpha * g);
        if (a.grad_alpha) static_cast<T*>(a.grad_alpha)[idx] = T(g_alpha);
    }
}

}  // namespace cuda_driver
}  // namespace exodus
