// CPU kernels of event-driven backpropagation (Zhu et al. 2022, suppl. S14-S21).
// OpenMP across (batch, neuron block), SIMD along the contiguous neuron axis, the time loop
// outside (the same layout as the EXODUS LIF kernels in src/cpu/cpu_kernels.inc). Compiled with
// the library's strict floating-point flags: no FMA contraction, no fast-math.
#include <cstdint>
#include <string>
#include <vector>

#include "exodus/event_api.h"

namespace {

// Neurons per block: a full set of SIMD vectors, while the block's state stays in L1.
constexpr int64_t kBlock = 256;

thread_local std::string g_last_error;

int32_t fail(int32_t code, const std::string& msg) {
    g_last_error = msg;
    return code;
}

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
                    const T I = cur[off + j];
                    const T mm = am * (m[j] + I);
                    const T qq = as * (q[j] + I);
                    const T gg = ag * (g[j] + I);
                    const T uu = kappa * (mm - qq);
                    const bool s = uu >= theta;
                    spk[off + j] = s ? T(1) : T(0);
                    du[off + j] = uu - up[j];
                    dug[off + j] = gg;
                    if (kWriteU) uo[off + j] = uu;
                    // Integration restarts after every output spike (S14: the window
                    // [t_last + 1, t]): all three traces are cleared.
                    m[j] = s ? T(0) : mm;
                    q[j] = s ? T(0) : qq;
                    g[j] = s ? T(0) : gg;
                    up[j] = s ? T(0) : uu;
                }
            }
        }
    }
}

template <typename T>
void srm_backward_impl(const exodus_event_srm_backward_args& a) {
    const int64_t B = a.B, TT = a.T, N = a.N;
    const int64_t nblocks = (N + kBlock - 1) / kBlock;
    // Kernel tables indexed by d = t_k - t >= 0, built by repeated multiplication with the same
    // decays as the forward recurrence, so eps and h are exactly the kernels the traces realise
    // (h and the normaliser g(t_k) share one decay, so h / g is consistent).
    std::vector<T> eps(static_cast<size_t>(TT)), h(static_cast<size_t>(TT));
    {
        double pm = a.decay_m, ps = a.decay_s, pg = a.decay_g;
        for (int64_t d = 0; d < TT; ++d) {
            eps[d] = T(a.kappa * (pm - ps));
            h[d] = T(pg);
            pm *= a.decay_m;
            ps *= a.decay_s;
            pg *= a.decay_g;
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
#pragma omp simd
                for (int64_t j = 0; j < nn; ++j) {
                    const bool s = spk[off + j] != T(0);
                    const T G = gs[off + j];
                    // du > 0 at every spike (u_post[t-1] < theta <= u[t]); the select keeps the
                    // division finite at the other steps.
                    const T d_u = s ? du[off + j] : T(1);
                    T dtdu = d_u > T(0) ? -T(1) / d_u : T(0);  // S21: dt/du = -1 / (du/dt)
                    if (clip) dtdu = dtdu < -lim ? -lim : dtdu;
                    const T g = s ? dug[off + j] : T(1);
                    // S20: 1 / g(t_k); g <= 0 has no finite spike-time derivative: no gradient.
                    const T ginv = g > T(0) ? T(1) / g : T(0);
                    // dL/dt_k = -dL/ds[t_k] (suppl. B: d count / d t_k = -1), so
                    // dL/dt_k * dt/du = G / du and dL/dt_k * (-1/g) * (-h) ... = G h / g.
                    wf[j] = s ? -G * dtdu : wf[j];
                    inf[j] = s ? G * ginv : inf[j];
                    const int64_t dn = dist[j] >= 0 ? dist[j] + 1 : int64_t(-1);
                    dist[j] = s ? int64_t(0) : dn;
                    const int64_t k = dist[j] >= 0 ? dist[j] : int64_t(0);
                    const bool act = dist[j] >= 0;
                    ew[off + j] = act ? wf[j] * ep[k] : T(0);
                    ein[off + j] = act ? inf[j] * hp[k] : T(0);
                }
            }
        }
    }
}

int32_t check_common(int64_t B, int64_t T, int64_t N, int32_t dtype) {
    if (B < 0 || T < 0 || N < 0) return fail(EXODUS_EVENT_ERR_ARGUMENT, "B, T and N must be >= 0");
    if (dtype != 0 && dtype != 1)
        return fail(EXODUS_EVENT_ERR_DTYPE, "dtype must be 0 (float32) or 1 (float64) on the CPU");
    return EXODUS_EVENT_OK;
}

}  // namespace

extern "C" {

int32_t exodus_event_abi_version(void) { return EXODUS_EVENT_ABI_VERSION; }

const char* exodus_event_last_error(void) { return g_last_error.c_str(); }

int32_t exodus_event_srm_forward(const exodus_event_srm_forward_args* a) {
    if (!a) return fail(EXODUS_EVENT_ERR_ARGUMENT, "args is NULL");
    if (int32_t rc = check_common(a->B, a->T, a->N, a->dtype)) return rc;
    if (bad_decay(a->decay_m) || bad_decay(a->decay_s) || bad_decay(a->decay_g))
        return fail(EXODUS_EVENT_ERR_ARGUMENT, "decays must lie in (0, 1)");
    if (!(a->theta > 0.0)) return fail(EXODUS_EVENT_ERR_ARGUMENT, "theta must be > 0");
    if (a->B * a->T * a->N == 0) return EXODUS_EVENT_OK;
    if (!a->current || !a->spikes || !a->du || !a->dug)
        return fail(EXODUS_EVENT_ERR_ARGUMENT, "current, spikes, du and dug must not be NULL");
    const bool wu = a->u != nullptr;
    if (a->dtype == 0) {
        wu ? srm_forward_impl<float, true>(*a) : srm_forward_impl<float, false>(*a);
    } else {
        wu ? srm_forward_impl<double, true>(*a) : srm_forward_impl<double, false>(*a);
    }
    return EXODUS_EVENT_OK;
}

int32_t exodus_event_srm_backward(const exodus_event_srm_backward_args* a) {
    if (!a) return fail(EXODUS_EVENT_ERR_ARGUMENT, "args is NULL");
    if (int32_t rc = check_common(a->B, a->T, a->N, a->dtype)) return rc;
    if (bad_decay(a->decay_m) || bad_decay(a->decay_s) || bad_decay(a->decay_g))
        return fail(EXODUS_EVENT_ERR_ARGUMENT, "decays must lie in (0, 1)");
    if (a->B * a->T * a->N == 0) return EXODUS_EVENT_OK;
    if (!a->grad_spikes || !a->spikes || !a->du || !a->dug || !a->e_w || !a->e_in)
        return fail(EXODUS_EVENT_ERR_ARGUMENT, "grad_spikes, spikes, du, dug, e_w and e_in must not be NULL");
    if (a->dtype == 0) srm_backward_impl<float>(*a);
    else srm_backward_impl<double>(*a);
    return EXODUS_EVENT_OK;
}

}  // extern "C"
