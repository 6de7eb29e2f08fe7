// CUDA drivers of event-driven backpropagation: one thread per (batch, neuron) with the time loop
// inside, consecutive threads on consecutive neurons (coalesced along the contiguous N axis),
// grid-stride loops and 64-bit indices — the layout of the core's src/cuda/kernels.cuh.
// Included by event_cuda.cu (nvcc) and by event_emulation.cpp (host, tests): keep this file thin
// (index arithmetic, bounds, launch) and leave the arithmetic to include/exodus/event_neuron.h.
// Before including, compile with nvcc or include exodus/cuda_emu.h.
#pragma once

#include <algorithm>

#include "exodus/common.h"
#include "exodus/event_api.h"
#include "exodus/event_neuron.h"
#include "../cuda/launch_grid.cuh"

namespace exodus {
namespace event_driver {

using namespace exodus::launch;  // kThreads, grid_for, first_index, grid_step, load, store

template <typename T>
__global__ void srm_forward_kernel(exodus_event_srm_forward_args a) {
    using A = typename AccumOf<T>::type;
    const int64_t total = a.B * a.N;
    // Rounded once to the arithmetic type, as the CPU driver rounds them to the data type.
    const A am = A(a.decay_m), as = A(a.decay_s), ag = A(a.decay_g), kappa = A(a.kappa), theta = A(a.theta);
    for (int64_t idx = first_index(); idx < total; idx += grid_step()) {
        const int64_t b = idx / a.N;
        const int64_t n = idx - b * a.N;
        A m = A(0), q = A(0), g = A(0), up = A(0);
        for (int64_t t = 0; t < a.T; ++t) {
            const int64_t off = (b * a.T + t) * a.N + n;
            A s, du, dug, u;
            srm_forward_step<A>(load<A, T>(a.current, off), am, as, ag, kappa, theta, m, q, g, up, s, du, dug, u);
            store<T>(a.spikes, off, s);
            store<T>(a.du, off, du);
            store<T>(a.dug, off, dug);
            if (a.u) store<T>(a.u, off, u);
        }
    }
}

template <typename T>
__global__ void srm_backward_kernel(exodus_event_srm_backward_args a) {
    using A = typename AccumOf<T>::type;
    const int64_t total = a.B * a.N;
    const bool clip = a.max_dudt_inv > 0.0;
    const A lim = clip ? A(a.max_dudt_inv) : A(0);
    for (int64_t idx = first_index(); idx < total; idx += grid_step()) {
        const int64_t b = idx / a.N;
        const int64_t n = idx - b * a.N;
        A wf = A(0), inf = A(0);
        int64_t dist = -1;
        // The kernel powers at the distance to the next spike, carried along the scan instead of the
        // CPU's tables (no per-call device buffer); the same products, so the same values.
        double pm = 0.0, ps = 0.0, pg = 0.0;
        for (int64_t t = a.T - 1; t >= 0; --t) {
            const int64_t off = (b * a.T + t) * a.N + n;
            const A s = load<A, T>(a.spikes, off);
            const bool in_window = srm_backward_step<A>(s, load<A, T>(a.grad_spikes, off), load<A, T>(a.du, off),
                                                        load<A, T>(a.dug, off), clip, lim, wf, inf, dist);
            srm_kernel_advance(dist == 0, a.decay_m, a.decay_s, a.decay_g, pm, ps, pg);
            A e_w, e_in;
            srm_backward_errors<A>(in_window, wf, inf, srm_eps<A>(a.kappa, pm, ps), srm_h<A>(pg), e_w, e_in);
            store<T>(a.e_w, off, e_w);
            store<T>(a.e_in, off, e_in);
        }
    }
}

}  // namespace event_driver
}  // namespace exodus
