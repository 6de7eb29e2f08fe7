// CPU kernels of event-driven backpropagation (Zhu et al. 2022, suppl. S14-S21).
// OpenMP across (batch, neuron block), SIMD along the contiguous neuron axis, the time loop
// outside (the same layout as the EXODUS LIF kernels in src/cpu/cpu_kernels.inc). Compiled with
// the library's strict floating-point flags: no FMA contraction, no fast-math. The per-neuron
// arithmetic is include/exodus/event_neuron.h, shared with the CUDA drivers (event_kernels.cuh).
#include <cstdint>
#include <string>
#include <vector>

#include "exodus/event_api.h"
#include "exodus/event_neuron.h"
#include "exodus/sizes.h"
#include "../runtime/last_error.h"

namespace {

using namespace exodus;

// Neurons per block: a full set of SIMD vectors, while the block's state stays in L1.
constexpr int64_t kBlock = 256;

bool bad_decay(double a) { return !(a > 0.0 && a < 1.0); }

template <typename T, bool kWriteU>
void srm_forward_impl(const exodus_event_srm_forward_args& a) {
    const int64_t B = a.B, TT = a.T, N = a.N;
    const int64_t nblocks = (N + kBlock - 1) / kBlock;
    // The decays are rounded once to the data type, as the Python reference does with a tensor.
    const T am = T(a.decay_m), as = T(a.decay_s), ag = T(a.decay_g), kappa = T(a.kappa), theta = T(a.theta);
    const T* cur = static_cast<const T*>(a.current);
    T* spk = static_cast<T*>(a.spikes);
    T* du = static_cast<T*>(a.du);
    T* dug = static_cast<T*>(a.dug);
    T* uo = static_cast<T*>(a.u);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t blk = 0; blk < nblocks; ++blk) {
            const int64_t n0 = blk * kBlock;
            const int64_t nn = (N - n0) < kBlock ? (N - n0) : kBlock;
            // m, q: the two exponential traces whose difference is the dual-exponential membrane;
            // g: the gradient trace (backward kernel h); up: the post-reset membrane of t - 1.
            T m[kBlock], q[kBlock], g[kBlock], up[kBlock];
            for (int64_t j = 0; j < nn; ++j) m[j] = q[j] = g[j] = up[j] = T(0);
            for (int64_t t = 0; t < TT; ++t) {
                const int64_t off = (b * TT + t) * N + n0;
#pragma omp simd
                for (int64_t j = 0; j < nn; ++j) {
                    T s, d_u, gg, uu;
                    srm_forward_step<T>(cur[off + j], am, as, ag, kappa, theta, m[j], q[j], g[j], up[j], s, d_u,
                                        gg, uu);
                    spk[off + j] = s;
                    du[off + j] = d_u;
                    dug[off + j] = gg;
                    if (kWriteU) uo[off + j] = uu;
                }
            }
        }
    }
}

template <typename T>
void srm_backward_impl(const exodus_event_srm_backward_args& a) {
    const int64_t B = a.B, TT = a.T, N = a.N;
    const int64_t nblocks = (N + kBlock - 1) / kBlock;
    // Kernel tables indexed by d = t_k - t >= 0, built with the same decays as the forward
    // recurrence, so eps and h are exactly the kernels the traces realise (h and the normaliser
    // g(t_k) share one decay, so h / g is consistent). A GPU thread forms the same powers along its
    // scan (event_neuron.h), which keeps the two drivers equal bit for bit.
    std::vector<T> eps(static_cast<size_t>(TT)), h(static_cast<size_t>(TT));
    {
        double pm = 0.0, ps = 0.0, pg = 0.0;
        for (int64_t d = 0; d < TT; ++d) {
            srm_kernel_advance(d == 0, a.decay_m, a.decay_s, a.decay_g, pm, ps, pg);
            eps[d] = srm_eps<T>(a.kappa, pm, ps);
            h[d] = srm_h<T>(pg);
        }
    }
    const T* ep = eps.data();
    const T* hp = h.data();
    const bool clip = a.max_dudt_inv > 0.0;
    const T lim = clip ? T(a.max_dudt_inv) : T(0);
    const T* gs = static_cast<const T*>(a.grad_spikes);
    const T* spk = static_cast<const T*>(a.spikes);
    const T* du = static_cast<const T*>(a.du);
    const T* dug = static_cast<const T*>(a.dug);
    T* ew = static_cast<T*>(a.e_w);
    T* ein = static_cast<T*>(a.e_in);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t blk = 0; blk < nblocks; ++blk) {
            const int64_t n0 = blk * kBlock;
            const int64_t nn = (N - n0) < kBlock ? (N - n0) : kBlock;
            // Per neuron: the weight-path and input-path factors of the next output spike and the
            // distance d to it (-1: no later spike, the step gets no gradient).
            T wf[kBlock], inf[kBlock];
            int64_t dist[kBlock];
            for (int64_t j = 0; j < nn; ++j) {
                wf[j] = inf[j] = T(0);
                dist[j] = -1;
            }
            for (int64_t t = TT - 1; t >= 0; --t) {
                const int64_t off = (b * TT + t) * N + n0;
                // GCC 12 keeps this loop scalar on baseline x86-64 (it turns the spike selects into
                // branches around loads, and SSE2 has no masked loads); the forward loop vectorises.
#pragma omp simd
                for (int64_t j = 0; j < nn; ++j) {
                    const bool act = srm_backward_step<T>(spk[off + j], gs[off + j], du[off + j], dug[off + j], clip,
                                                          lim, wf[j], inf[j], dist[j]);
                    const int64_t k = act ? dist[j] : int64_t(0);
                    T e_w, e_in;
                    srm_backward_errors<T>(act, wf[j], inf[j], ep[k], hp[k], e_w, e_in);
                    ew[off + j] = e_w;
                    ein[off + j] = e_in;
                }
            }
        }
    }
}

// Sizes and dtype; `count` receives B * T * N, the elements of every tensor of the call.
int32_t check_common(int64_t B, int64_t T, int64_t N, int32_t dtype, int64_t& count) {
    if (B < 0 || T < 0 || N < 0) return fail(EXODUS_ERR_ARGUMENT, "B, T and N must be >= 0");
    std::string error;
    if (!element_count("B * T * N", {B, T, N}, count, error)) return fail(EXODUS_ERR_ARGUMENT, error);
    if (dtype != 0 && dtype != 1)
        return fail(EXODUS_ERR_DTYPE, "dtype must be 0 (float32) or 1 (float64) on the CPU");
    return EXODUS_OK;
}

}  // namespace

extern "C" {

EXODUS_API int32_t exodus_event_srm_forward(const exodus_event_srm_forward_args* a) {
    if (!a) return fail(EXODUS_ERR_ARGUMENT, "args is NULL");
    int64_t count = 0;
    if (int32_t rc = check_common(a->B, a->T, a->N, a->dtype, count)) return rc;
    if (bad_decay(a->decay_m) || bad_decay(a->decay_s) || bad_decay(a->decay_g))
        return fail(EXODUS_ERR_ARGUMENT, "decays must lie in (0, 1)");
    if (!(a->theta > 0.0)) return fail(EXODUS_ERR_ARGUMENT, "theta must be > 0");
    if (count == 0) return EXODUS_OK;
    if (!a->current || !a->spikes || !a->du || !a->dug)
        return fail(EXODUS_ERR_ARGUMENT, "current, spikes, du and dug must not be NULL");
    const bool wu = a->u != nullptr;
    if (a->dtype == 0) {
        wu ? srm_forward_impl<float, true>(*a) : srm_forward_impl<float, false>(*a);
    } else {
        wu ? srm_forward_impl<double, true>(*a) : srm_forward_impl<double, false>(*a);
    }
    return EXODUS_OK;
}

EXODUS_API int32_t exodus_event_srm_backward(const exodus_event_srm_backward_args* a) {
    if (!a) return fail(EXODUS_ERR_ARGUMENT, "args is NULL");
    int64_t count = 0;
    if (int32_t rc = check_common(a->B, a->T, a->N, a->dtype, count)) return rc;
    if (bad_decay(a->decay_m) || bad_decay(a->decay_s) || bad_decay(a->decay_g))
        return fail(EXODUS_ERR_ARGUMENT, "decays must lie in (0, 1)");
    if (count == 0) return EXODUS_OK;
    if (!a->grad_spikes || !a->spikes || !a->du || !a->dug || !a->e_w || !a->e_in)
        return fail(EXODUS_ERR_ARGUMENT, "grad_spikes, spikes, du, dug, e_w and e_in must not be NULL");
    if (a->dtype == 0) srm_backward_impl<float>(*a);
    else srm_backward_impl<double>(*a);
    return EXODUS_OK;
}

}  // extern "C"
