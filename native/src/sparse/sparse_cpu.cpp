// CPU kernels of sparse spiking gradient descent (S3GD, Perez-Nieves & Goodman 2021) and of its
// exact (EXODUS, reset kept in the gradient) variant; see include/exodus/sparse_api.h.
//
// Determinism: every output element is written by exactly one thread in a fixed order (the
// weight gradient is parallel over output rows j, the input gradient over batch samples), so the
// sums never depend on the thread count or the schedule — no atomics (the official CUDA code uses
// atomicAdd, hence order-dependent float sums).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "exodus/sparse_api.h"

namespace {

thread_local std::string g_last_error;

// Neurons per block of the time scans: enough for full SIMD vectors, small enough for L1.
constexpr int64_t kBlock = 256;

struct ArgError : std::exception {
    std::string msg;
    explicit ArgError(std::string m) : msg(std::move(m)) {}
    const char* what() const noexcept override { return msg.c_str(); }
};

void require(bool ok, const char* msg) {
    if (!ok) throw ArgError(msg);
}

template <typename F>
int32_t guarded(F&& f) {
    try {
        f();
        return 0;
    } catch (const ArgError& e) {
        g_last_error = e.msg;
        return 1;
    } catch (const std::exception& e) {
        g_last_error = std::string("internal error: ") + e.what();
        return 4;
    } catch (...) {
        g_last_error = "internal error";
        return 4;
    }
}

template <typename T>
inline bool is_active(T v, T theta, T b_th) {
    // Strict: the active set of the paper is |V - V_th| < B_th (a boundary value is inactive).
    return std::fabs(v - theta) < b_th;
}

// Truncated surrogate of suppl. E.5 eq. (20): g(v) = 1 / (beta_s |v - theta| + 1)^2 inside the
// active set.  Computed the same way in every kernel so sparse and dense agree bit for bit.
template <typename T>
inline T surrogate(T v, T theta, T beta_s) {
    const T den = beta_s * std::fabs(v - theta) + T(1);
    return T(1) / (den * den);
}

// alpha^n for n = 0..T by repeated multiplication (Prop. 1 jumps over n inactive steps at once).
template <typename T>
std::vector<T> powers(T alpha, int64_t T_) {
    std::vector<T> p(size_t(T_) + 1);
    p[0] = T(1);
    for (int64_t n = 1; n <= T_; ++n) p[size_t(n)] = p[size_t(n - 1)] * alpha;
    return p;
}

// ------------------------------------------------------------------------ forward

template <typename T>
void forward_impl(const exodus_sparse_forward_args& a) {
    const int64_t B = a.B, TT = a.T, N = a.N, nblocks = (N + kBlock - 1) / kBlock;
    const T alpha = T(a.alpha), theta = T(a.theta), rs = T(a.reset_scale), b_th = T(a.b_th);
    const T* h = static_cast<const T*>(a.h);
    T* sp = static_cast<T*>(a.spikes);
    T* vo = static_cast<T*>(a.v);
    const bool strict = a.strict != 0, delay = a.delay != 0;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t kb = 0; kb < nblocks; ++kb) {
            const int64_t n0 = kb * kBlock, nn = std::min(kBlock, N - n0);
            alignas(64) T v[kBlock], s[kBlock];
            int64_t cnt[kBlock];
            for (int64_t j = 0; j < nn; ++j) { v[j] = T(0); s[j] = T(0); cnt[j] = 0; }
            for (int64_t t = 0; t < TT; ++t) {
                const int64_t off = (b * TT + t) * N + n0;
                // One-step delay (paper eq. 17): the input of step t - 1 reaches V at step t.
                const T* ht = delay ? (t > 0 ? h + off - N : nullptr) : h + off;
#pragma omp simd
                for (int64_t j = 0; j < nn; ++j) {
                    const T in = ht ? ht[j] : T(0);
                    // (alpha V + h) - rs S: the order of the PyTorch reference, so spikes match.
                    const T vv = alpha * v[j] + in - rs * s[j];
                    const T ss = (strict ? vv > theta : vv >= theta) ? T(1) : T(0);
                    v[j] = vv;
                    s[j] = ss;
                    vo[off + j] = vv;
                    sp[off + j] = ss;
                    cnt[j] += is_active(vv, theta, b_th) ? 1 : 0;
                }
            }
            for (int64_t j = 0; j < nn; ++j) a.counts[b * N + n0 + j] = cnt[j];
        }
    }
}

template <typename T>
void collect_impl(const exodus_sparse_collect_args& a) {
    const int64_t B = a.B, TT = a.T, N = a.N, nblocks = (N + kBlock - 1) / kBlock;
    const T theta = T(a.theta), b_th = T(a.b_th), beta_s = T(a.beta_s);
    const T* v = static_cast<const T*>(a.v);
    T* fv = static_cast<T*>(a.fvals);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t kb = 0; kb < nblocks; ++kb) {
            const int64_t n0 = kb * kBlock, nn = std::min(kBlock, N - n0);
            int64_t pos[kBlock];
            for (int64_t j = 0; j < nn; ++j) pos[j] = a.offsets[b * N + n0 + j];
            for (int64_t t = 0; t < TT; ++t) {
                const T* vt = v + (b * TT + t) * N + n0;
                for (int64_t j = 0; j < nn; ++j) {
                    if (is_active(vt[j], theta, b_th)) {
                        a.times[pos[j]] = int32_t(t);
                        fv[pos[j]] = surrogate(vt[j], theta, beta_s);
                        ++pos[j];
                    }
                }
            }
        }
    }
}

template <typename T>
void trace_impl(const exodus_sparse_trace_args& a) {
    const int64_t B = a.B, TT = a.T, N = a.N, nblocks = (N + kBlock - 1) / kBlock;
    const T alpha = T(a.alpha);
    const T* x = static_cast<const T*>(a.x);
    T* tr = static_cast<T*>(a.trace);
    const bool delay = a.delay != 0;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t kb = 0; kb < nblocks; ++kb) {
            const int64_t n0 = kb * kBlock, nn = std::min(kBlock, N - n0);
            alignas(64) T acc[kBlock];
            for (int64_t j = 0; j < nn; ++j) acc[j] = T(0);
            for (int64_t t = 0; t < TT; ++t) {
                const int64_t off = (b * TT + t) * N + n0;
                const T* xt = delay ? (t > 0 ? x + off - N : nullptr) : x + off;
#pragma omp simd
                for (int64_t j = 0; j < nn; ++j) {
                    acc[j] = alpha * acc[j] + (xt ? xt[j] : T(0));
                    tr[off + j] = acc[j];
                }
            }
        }
    }
}

// ------------------------------------------------------------------------ sparse backward

// Step 1: the error at every active entry, e = dL/dS * f (paper eq. 5/6).  For the exact variant
// the reset term -rs f g_v[t+1] is folded in (e-hat), which turns the exact recursion
//   g_v[t] = f[t] (dL/dS[t] - rs g_v[t+1]) + alpha g_v[t+1]
// into the pure-decay one g_v[t] = e_hat[t] + alpha g_v[t+1] that the trace formula for dW and
// the Prop. 1 walk rely on; e_hat needs g_v[t+1], which only changes at active entries, so this
// walk still touches active entries only (jumps of alpha^n across inactive stretches).
template <typename T>
void errors(const exodus_sparse_backward_args& a, const std::vector<T>& pw) {
    const int64_t B = a.B, TT = a.T, N = a.N_out;
    const T alpha = T(a.alpha), rs = T(a.reset_scale);
    const T* gs = static_cast<const T*>(a.grad_spikes);
    const T* fv = static_cast<const T*>(a.fvals);
    T* e = static_cast<T*>(a.e);
    const bool exact = a.exact != 0;
#pragma omp parallel for schedule(dynamic, 64)
    for (int64_t bj = 0; bj < B * N; ++bj) {
        const int64_t b = bj / N, j = bj % N;
        const int64_t lo = a.offsets[bj], hi = a.offsets[bj + 1];
        if (!exact) {
            for (int64_t k = lo; k < hi; ++k) e[k] = gs[(b * TT + a.times[k]) * N + j] * fv[k];
            continue;
        }
        T gv = T(0);           // g_v[tpos]
        int64_t tpos = TT;     // g_v[T] = 0
        for (int64_t k = hi - 1; k >= lo; --k) {
            const int64_t t = a.times[k];
            const T gv1 = gv * pw[size_t(tpos - t - 1)];  // g_v[t + 1]
            const T g = gs ? gs[(b * TT + t) * N + j] : T(0);
            const T eh = g * fv[k] - rs * fv[k] * gv1;
            e[k] = eh;
            gv = eh + alpha * gv1;
            tpos = t;
        }
    }
}

// Step 2: dW[j, :] = sum over active (b, t) of e[b, t, j] tr[b, t, :] (suppl. B).  Rows j are
// independent, so threads own rows: deterministic without atomics.
template <typename T>
void weight_grad(const exodus_sparse_backward_args& a) {
    const int64_t B = a.B, TT = a.T, N = a.N_out, Ni = a.N_in;
    const T* e = static_cast<const T*>(a.e);
    const T* tr = static_cast<const T*>(a.trace);
    T* gw = static_cast<T*>(a.grad_w);
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t j = 0; j < N; ++j) {
        T* row = gw + j * Ni;
        std::fill(row, row + Ni, T(0));
        for (int64_t b = 0; b < B; ++b) {
            const int64_t bj = b * N + j;
            for (int64_t k = a.offsets[bj]; k < a.offsets[bj + 1]; ++k) {
                const T c = e[k];
                if (c == T(0)) continue;  // dL/dS = 0 there: nothing to add
                const T* trow = tr + (b * TT + a.times[k]) * Ni;
#pragma omp simd
                for (int64_t i = 0; i < Ni; ++i) row[i] += c * trow[i];
            }
        }
    }
}

// Step 3a: the full delta (dL/dh, all times) — for a dense input gradient and for the tests.
template <typename T>
void dense_delta(const exodus_sparse_backward_args& a) {
    const int64_t B = a.B, TT = a.T, N = a.N_out, nblocks = (N + kBlock - 1) / kBlock;
    const T alpha = T(a.alpha);
    const T* e = static_cast<const T*>(a.e);
    T* d = static_cast<T*>(a.delta);
    const bool delay = a.delay != 0;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t kb = 0; kb < nblocks; ++kb) {
            const int64_t n0 = kb * kBlock, nn = std::min(kBlock, N - n0);
            T gv[kBlock];
            int64_t p[kBlock], lo[kBlock];
            for (int64_t j = 0; j < nn; ++j) {
                gv[j] = T(0);
                lo[j] = a.offsets[b * N + n0 + j];
                p[j] = a.offsets[b * N + n0 + j + 1] - 1;
            }
            for (int64_t t = TT - 1; t >= 0; --t) {
                T* dt = d + (b * TT + t) * N + n0;
                for (int64_t j = 0; j < nn; ++j) {
                    const T next = gv[j];  // g_v[t + 1]
                    T cur = alpha * next;
                    if (p[j] >= lo[j] && a.times[p[j]] == t) { cur = e[p[j]] + alpha * next; --p[j]; }
                    gv[j] = cur;
                    dt[j] = delay ? next : cur;
                }
            }
        }
    }
}

// Step 3b: the input gradient only at the input layer's active entries (suppl. C).  Per sample b:
// the needed times are those at which any input neuron is active; for each output neuron j the
// memoised Prop. 1 walk merges j's active times with the needed times, costing |t_j| + |t_i|
// updates instead of T; then dL/dx[b, t, i] = sum_j W[j, i] delta_j[b, t] for active (b, t, i).
template <typename T>
void sparse_input_grad(const exodus_sparse_backward_args& a, const std::vector<T>& pw) {
    const int64_t B = a.B, TT = a.T, N = a.N_out, Ni = a.N_in;
    const T alpha = T(a.alpha);
    const T* e = static_cast<const T*>(a.e);
    const T* wt = static_cast<const T*>(a.w_t);
    T* gx = static_cast<T*>(a.grad_x);
    T* ws_all = static_cast<T*>(a.workspace);
    const int64_t delay = a.delay != 0 ? 1 : 0;
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = int(std::max<int64_t>(1, std::min<int64_t>(a.n_workspaces, omp_get_max_threads())));
#endif
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t b = 0; b < B; ++b) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        T* D = ws_all + int64_t(tid) * TT * N;
        std::vector<int32_t> kidx(size_t(TT), -1);
        for (int64_t i = 0; i < Ni; ++i)
            for (int64_t k = a.in_offsets[b * Ni + i]; k < a.in_offsets[b * Ni + i + 1]; ++k) kidx[size_t(a.in_times[k])] = 0;
        std::vector<int32_t> nt;
        for (int64_t t = 0; t < TT; ++t)
            if (kidx[size_t(t)] == 0) { kidx[size_t(t)] = int32_t(nt.size()); nt.push_back(int32_t(t)); }
        const int64_t K = int64_t(nt.size());
        if (K == 0) continue;
        // Output neurons in blocks of kWalk, all walked together over the needed times: each
        // write of D is then a contiguous run of kWalk values instead of a column (stride N).
        constexpr int64_t kWalk = 32;
        for (int64_t j0 = 0; j0 < N; j0 += kWalk) {
            const int64_t nj = std::min(kWalk, N - j0);
            T gv[kWalk];
            int64_t tpos[kWalk], p[kWalk], lo[kWalk];
            for (int64_t jj = 0; jj < nj; ++jj) {
                gv[jj] = T(0);
                tpos[jj] = TT;
                lo[jj] = a.offsets[b * N + j0 + jj];
                p[jj] = a.offsets[b * N + j0 + jj + 1] - 1;
            }
            for (int64_t q = K - 1; q >= 0; --q) {
                const int64_t target = nt[size_t(q)] + delay;  // delta[t] = g_v[t + delay]
                T* Dq = D + q * N + j0;
                for (int64_t jj = 0; jj < nj; ++jj) {
                    // Prop. 1: only active entries change g_v beyond the alpha^n decay.
                    for (; p[jj] >= lo[jj] && a.times[p[jj]] >= target; --p[jj]) {
                        const int64_t ta = a.times[p[jj]];
                        gv[jj] = e[p[jj]] + alpha * (gv[jj] * pw[size_t(tpos[jj] - ta - 1)]);
                        tpos[jj] = ta;
                    }
                    Dq[jj] = gv[jj] * pw[size_t(tpos[jj] - target)];
                }
            }
        }
        for (int64_t i = 0; i < Ni; ++i) {
            const T* wrow = wt + i * N;
            for (int64_t k = a.in_offsets[b * Ni + i]; k < a.in_offsets[b * Ni + i + 1]; ++k) {
                const int64_t t = a.in_times[k];
                const T* drow = D + int64_t(kidx[size_t(t)]) * N;
                T s = T(0);
#pragma omp simd reduction(+ : s)
                for (int64_t j = 0; j < N; ++j) s += wrow[j] * drow[j];
                gx[(b * TT + t) * Ni + i] = s;
            }
        }
    }
}

template <typename T>
void backward_impl(const exodus_sparse_backward_args& a) {
    const std::vector<T> pw = powers(T(a.alpha), a.T);
    errors<T>(a, pw);
    if (a.trace && a.grad_w) weight_grad<T>(a);
    if (a.input_mode == 1) dense_delta<T>(a);
    if (a.input_mode == 2) sparse_input_grad<T>(a, pw);
}

// ------------------------------------------------------------------------ dense baseline

// The dense reverse scan with the same truncated surrogate (the benchmark's baseline and the
// "dense" backend): delta at every (b, t, j); dW and dx then come from two GEMMs in PyTorch.
template <typename T>
void dense_backward_impl(const exodus_sparse_dense_backward_args& a) {
    const int64_t B = a.B, TT = a.T, N = a.N, nblocks = (N + kBlock - 1) / kBlock;
    const T alpha = T(a.alpha), theta = T(a.theta), rs = T(a.reset_scale), b_th = T(a.b_th), beta_s = T(a.beta_s);
    const T* v = static_cast<const T*>(a.v);
    const T* gs = static_cast<const T*>(a.grad_spikes);
    T* d = static_cast<T*>(a.delta);
    const bool exact = a.exact != 0, delay = a.delay != 0;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t kb = 0; kb < nblocks; ++kb) {
            const int64_t n0 = kb * kBlock, nn = std::min(kBlock, N - n0);
            alignas(64) T gv[kBlock];
            for (int64_t j = 0; j < nn; ++j) gv[j] = T(0);
            for (int64_t t = TT - 1; t >= 0; --t) {
                const int64_t off = (b * TT + t) * N + n0;
#pragma omp simd
                for (int64_t j = 0; j < nn; ++j) {
                    const T vv = v[off + j];
                    const T f = is_active(vv, theta, b_th) ? surrogate(vv, theta, beta_s) : T(0);
                    const T next = gv[j];
                    const T eh = exact ? gs[off + j] * f - rs * f * next : gs[off + j] * f;
                    const T cur = eh + alpha * next;
                    gv[j] = cur;
                    d[off + j] = delay ? next : cur;
                }
            }
        }
    }
}

void check_dims(int64_t B, int64_t T, int64_t N, int32_t dtype) {
    require(B >= 0 && T >= 0 && N >= 0, "negative size");
    require(T < (int64_t(1) << 31), "T must fit in int32");
    require(dtype == 0 || dtype == 1, "dtype must be float32 (0) or float64 (1) on the CPU");
}

}  // namespace

extern "C" {

int32_t exodus_sparse_abi_version(void) { return EXODUS_SPARSE_ABI_VERSION; }
const char* exodus_sparse_last_error(void) { return g_last_error.c_str(); }
int32_t exodus_sparse_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int32_t exodus_sparse_forward(const exodus_sparse_forward_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        require(a->h && a->spikes && a->v && a->counts, "forward: h, spikes, v and counts are required");
        if (a->dtype == 1) forward_impl<double>(*a); else forward_impl<float>(*a);
    });
}

int32_t exodus_sparse_collect(const exodus_sparse_collect_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        require(a->v && a->offsets, "collect: v and offsets are required");
        if (a->dtype == 1) collect_impl<double>(*a); else collect_impl<float>(*a);
    });
}

int32_t exodus_sparse_trace(const exodus_sparse_trace_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        require(a->x && a->trace, "trace: x and trace are required");
        if (a->dtype == 1) trace_impl<double>(*a); else trace_impl<float>(*a);
    });
}

int32_t exodus_sparse_backward(const exodus_sparse_backward_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N_out, a->dtype);
        require(a->N_in >= 0, "negative N_in");
        require(a->offsets && a->e, "backward: offsets and e are required");
        require(a->input_mode >= 0 && a->input_mode <= 2, "backward: input_mode must be 0, 1 or 2");
        if (a->input_mode == 1) require(a->delta != nullptr, "backward: input_mode 1 needs delta");
        if (a->input_mode == 2)
            require(a->w_t && a->in_offsets && a->workspace && a->grad_x && a->n_workspaces > 0,
                    "backward: input_mode 2 needs w_t, in_offsets, workspace and grad_x");
        if (a->dtype == 1) backward_impl<double>(*a); else backward_impl<float>(*a);
    });
}

int32_t exodus_sparse_dense_backward(const exodus_sparse_dense_backward_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        require(a->v && a->grad_spikes && a->delta, "dense_backward: v, grad_spikes and delta are required");
        if (a->dtype == 1) dense_backward_impl<double>(*a); else dense_backward_impl<float>(*a);
    });
}

}  // extern "C"
