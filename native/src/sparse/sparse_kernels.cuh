// CUDA drivers of sparse spiking gradient descent (S3GD; include/exodus/sparse_api.h), thin like the
// core's src/cuda/kernels.cuh: one thread per output element with its loop inside, consecutive
// threads on the contiguous axis (coalesced), grid-stride loops and 64-bit indices; the arithmetic
// is include/exodus/sparse_neuron.h, shared with the CPU library.  Included by sparse_cuda.cu (nvcc)
// and by sparse_emulation.cpp (host, tests): no shared memory, no __syncthreads (the emulation runs
// the threads of a grid one after another) and no atomics.
//
// Determinism: every output element is written by exactly one thread, which sums in a fixed
// order, so results do not depend on the launch configuration or the scheduling:
//   forward, collect, trace, errors, dense delta, dense backward: one thread per (b, j), time loop
//     inside (the CPU order, so the values equal the CPU's bit for bit);
//   weight gradient: one thread per (j, i), summing over b, then over j's active entries in
//     ascending time (the CPU adds the same terms four at a time: equal to rounding only);
//   sparse input gradient: per (b, j) threads write the memoised delta at the needed times into a
//     workspace; then one thread per (b, i) writes dx at its active entries, each a dot product over
//     j in ascending order (the CPU may reorder that sum with SIMD: equal to rounding only).
#pragma once

#include <algorithm>
#include <cstdint>

#include "exodus/sparse_api.h"
#include "exodus/sparse_neuron.h"
#include "../cuda/launch_grid.cuh"

namespace exodus {
namespace sparse_driver {

using exodus::launch::first_index;
using exodus::launch::grid_for;
using exodus::launch::grid_step;
using exodus::launch::kThreads;

template <typename T>
__global__ void forward_kernel(exodus_sparse_forward_args a) {
    const T alpha = T(a.alpha), theta = T(a.theta), rs = T(a.reset_scale), b_th = T(a.b_th);
    const bool strict = a.strict != 0, delay = a.delay != 0;
    const T* h = static_cast<const T*>(a.h);
    T* sp = static_cast<T*>(a.spikes);
    T* vo = static_cast<T*>(a.v);
    for (int64_t idx = first_index(); idx < a.B * a.N; idx += grid_step()) {
        const int64_t b = idx / a.N, j = idx - b * a.N;
        T v = T(0), s = T(0);
        int64_t count = 0;
        for (int64_t t = 0; t < a.T; ++t) {
            const int64_t off = (b * a.T + t) * a.N + j;
            // One-step delay (paper eq. 17): the input of step t - 1 reaches V at step t.
            const T in = delay ? (t > 0 ? h[off - a.N] : T(0)) : h[off];
            sparse::forward_step(in, alpha, theta, rs, strict, v, s);
            vo[off] = v;
            sp[off] = s;
            count += sparse::is_active(v, theta, b_th) ? 1 : 0;
        }
        a.counts[idx] = count;
    }
}

template <typename T>
__global__ void collect_kernel(exodus_sparse_collect_args a) {
    const T theta = T(a.theta), b_th = T(a.b_th), beta_s = T(a.beta_s);
    const T* v = static_cast<const T*>(a.v);
    T* fv = static_cast<T*>(a.fvals);
    for (int64_t idx = first_index(); idx < a.B * a.N; idx += grid_step()) {
        const int64_t b = idx / a.N, j = idx - b * a.N;
        // never past the slot of (b, j); when v does not match the counts (the caller's error), the
        // status element after the entries is set to -1 (every such thread stores the same value)
        int64_t pos = a.offsets[idx];
        const int64_t end = a.offsets[idx + 1];
        for (int64_t t = 0; t < a.T; ++t) {
            const T vv = v[(b * a.T + t) * a.N + j];
            if (sparse::is_active(vv, theta, b_th)) {
                if (pos < end) {
                    a.times[pos] = int32_t(t);
                    fv[pos] = sparse::surrogate(vv, theta, beta_s);
                }
                ++pos;
            }
        }
        if (pos != end) a.times[a.offsets[a.B * a.N]] = -1;
    }
}

template <typename T>
__global__ void trace_kernel(exodus_sparse_trace_args a) {
    const T alpha = T(a.alpha);
    const bool delay = a.delay != 0;
    const T* x = static_cast<const T*>(a.x);
    T* tr = static_cast<T*>(a.trace);
    for (int64_t idx = first_index(); idx < a.B * a.N; idx += grid_step()) {
        const int64_t b = idx / a.N, i = idx - b * a.N;
        T acc = T(0);
        for (int64_t t = 0; t < a.T; ++t) {
            const int64_t off = (b * a.T + t) * a.N + i;
            acc = sparse::trace_step(acc, alpha, delay ? (t > 0 ? x[off - a.N] : T(0)) : x[off]);
            tr[off] = acc;
        }
    }
}

// alpha^n, n = 0..T (sparse::fill_powers): the CPU's table, so the Prop. 1 jumps round the same.
// A serial O(T) loop on one thread, launched once per backward.
template <typename T>
__global__ void powers_kernel(T* pw, T alpha, int64_t steps) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    sparse::fill_powers(pw, alpha, steps);
}

// The error at every active entry of (b, j), walking its entries backwards (errors in sparse_cpu_kernels.inc).
template <typename T>
__global__ void errors_kernel(exodus_sparse_backward_args a) {
    const T alpha = T(a.alpha), rs = T(a.reset_scale);
    const bool exact = a.exact != 0;
    const T* gs = static_cast<const T*>(a.grad_spikes);
    const T* fv = static_cast<const T*>(a.fvals);
    const T* pw = static_cast<const T*>(a.powers);
    T* e = static_cast<T*>(a.e);
    for (int64_t idx = first_index(); idx < a.B * a.N_out; idx += grid_step()) {
        const int64_t b = idx / a.N_out, j = idx - b * a.N_out;
        T gv = T(0);          // g_v[tpos]
        int64_t tpos = a.T;   // g_v[T] = 0
        for (int64_t k = a.offsets[idx + 1] - 1; k >= a.offsets[idx]; --k) {
            const int64_t t = a.times[k];
            const T gv1 = exact ? gv * pw[tpos - t - 1] : T(0);  // g_v[t + 1]
            const T g = gs ? gs[(b * a.T + t) * a.N_out + j] : T(0);
            const T eh = sparse::error_step(g, fv[k], rs, gv1, exact);
            e[k] = eh;
            gv = sparse::decay_step(eh, alpha, gv1);
            tpos = t;
        }
    }
}

// dW[j, i] = sum over b, then over (b, j)'s active entries, of e * trace[b, t, i]; consecutive
// threads take consecutive i of one row j (coalesced trace reads, broadcast e and times).
template <typename T>
__global__ void weight_grad_kernel(exodus_sparse_backward_args a) {
    const int64_t Ni = a.N_in;
    const T* e = static_cast<const T*>(a.e);
    const T* tr = static_cast<const T*>(a.trace);
    T* gw = static_cast<T*>(a.grad_w);
    for (int64_t idx = first_index(); idx < a.N_out * Ni; idx += grid_step()) {
        const int64_t j = idx / Ni, i = idx - j * Ni;
        T acc = T(0);
        for (int64_t b = 0; b < a.B; ++b) {
            const int64_t bj = b * a.N_out + j;
            for (int64_t k = a.offsets[bj]; k < a.offsets[bj + 1]; ++k) {
                const T c = e[k];
                if (c == T(0)) continue;  // dL/dS = 0 there: nothing to add (as on the CPU)
                acc += c * tr[(b * a.T + a.times[k]) * Ni + i];
            }
        }
        gw[idx] = acc;
    }
}

// Input mode 1: delta = dL/dh at every (b, t, j) by the reverse decay scan.
template <typename T>
__global__ void dense_delta_kernel(exodus_sparse_backward_args a) {
    const T alpha = T(a.alpha);
    const bool delay = a.delay != 0;
    const T* e = static_cast<const T*>(a.e);
    T* d = static_cast<T*>(a.delta);
    for (int64_t idx = first_index(); idx < a.B * a.N_out; idx += grid_step()) {
        const int64_t b = idx / a.N_out, j = idx - b * a.N_out;
        const int64_t lo = a.offsets[idx];
        int64_t p = a.offsets[idx + 1] - 1;
        T gv = T(0);
        for (int64_t t = a.T - 1; t >= 0; --t) {
            const T next = gv;  // g_v[t + 1]
            T cur = alpha * next;
            if (p >= lo && a.times[p] == t) {
                cur = sparse::decay_step(e[p], alpha, next);
                --p;
            }
            gv = cur;
            d[(b * a.T + t) * a.N_out + j] = delay ? next : cur;
        }
    }
}

// Input mode 2, step 1: delta_j[b, t] at sample b's needed times only, by the memoised Prop. 1 walk
// merging j's active times with the needed times (|t_j| + |needed| updates instead of T).
template <typename T>
__global__ void needed_delta_kernel(exodus_sparse_backward_args a) {
    const T alpha = T(a.alpha);
    const int64_t delay = a.delay != 0 ? 1 : 0;
    const T* e = static_cast<const T*>(a.e);
    const T* pw = static_cast<const T*>(a.powers);
    T* D = static_cast<T*>(a.delta_needed);
    for (int64_t idx = first_index(); idx < a.B * a.N_out; idx += grid_step()) {
        const int64_t b = idx / a.N_out, j = idx - b * a.N_out;
        const int64_t lo = a.offsets[idx], q0 = a.need_offsets[b];
        int64_t p = a.offsets[idx + 1] - 1, tpos = a.T;
        T gv = T(0);
        for (int64_t q = a.need_offsets[b + 1] - 1; q >= q0; --q) {
            const int64_t target = a.need_times[q] + delay;  // delta[t] = g_v[t + delay]
            for (; p >= lo && a.times[p] >= target; --p) {
                const int64_t ta = a.times[p];
                gv = sparse::decay_step(e[p], alpha, gv * pw[tpos - ta - 1]);
                tpos = ta;
            }
            D[q * a.N_out + j] = gv * pw[tpos - target];
        }
    }
}

// Input mode 2, step 2: dL/dx[b, t, i] = sum_j W[j, i] delta_j[b, t] at (b, i)'s active entries;
// consecutive threads take consecutive i (coalesced reads of W's rows).
template <typename T>
__global__ void input_grad_kernel(exodus_sparse_backward_args a) {
    const int64_t N = a.N_out, Ni = a.N_in;
    const T* w = static_cast<const T*>(a.w);
    const T* D = static_cast<const T*>(a.delta_needed);
    T* gx = static_cast<T*>(a.grad_x);
    for (int64_t idx = first_index(); idx < a.B * Ni; idx += grid_step()) {
        const int64_t b = idx / Ni, i = idx - b * Ni;
        for (int64_t k = a.in_offsets[idx]; k < a.in_offsets[idx + 1]; ++k) {
            const int64_t t = a.in_times[k];
            const T* drow = D + (a.need_offsets[b] + a.need_index[b * a.T + t]) * N;
            T s = T(0);
            for (int64_t j = 0; j < N; ++j) s += w[j * Ni + i] * drow[j];
            gx[(b * a.T + t) * Ni + i] = s;
        }
    }
}

// The dense reverse scan with the same truncated surrogate (the "dense" backend's delta).
template <typename T>
__global__ void dense_backward_kernel(exodus_sparse_dense_backward_args a) {
    const T alpha = T(a.alpha), theta = T(a.theta), rs = T(a.reset_scale), b_th = T(a.b_th);
    const T beta_s = T(a.beta_s);
    const bool exact = a.exact != 0, delay = a.delay != 0;
    const T* v = static_cast<const T*>(a.v);
    const T* gs = static_cast<const T*>(a.grad_spikes);
    T* d = static_cast<T*>(a.delta);
    for (int64_t idx = first_index(); idx < a.B * a.N; idx += grid_step()) {
        const int64_t b = idx / a.N, j = idx - b * a.N;
        T gv = T(0);
        for (int64_t t = a.T - 1; t >= 0; --t) {
            const int64_t off = (b * a.T + t) * a.N + j;
            const T f = sparse::truncated_surrogate(v[off], theta, b_th, beta_s);
            const T next = gv;
            gv = sparse::decay_step(sparse::error_step(gs[off], f, rs, next, exact), alpha, next);
            d[off] = delay ? next : gv;
        }
    }
}

}  // namespace sparse_driver
}  // namespace exodus
