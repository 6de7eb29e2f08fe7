// Plain C ABI of event-driven backpropagation (Zhu et al. 2022, "Training spiking neural networks
// with event-driven backpropagation", suppl. S14-S21). Raw pointers, sizes and a dtype tag; no
// torch or Python types. Every entry point returns EXODUS_OK or an EXODUS_ERR_* code
// (exodus/runtime.h), with the message available from the library's last_error().
// Layout: tensors are (B, T, N) contiguous (batch-first, neurons contiguous).
// Each library of exodus/runtime.h exports these operations: libexodus_native (CPU,
// exodus_event_*), libexodus_native_cuda (exodus_event_cuda_*; runs on `device` and `stream`) and
// its host emulation libexodus_cuda_emulation (exodus_event_emu_*, the CUDA drivers run on the CPU
// for the tests). The CPU library ignores `device` and `stream`.
#pragma once

#include <stdint.h>

#include "exodus/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dtype tags (the same as the core operations, c_api.h): 0 float32, 1 float64; CUDA only: 2 float16, 3 bfloat16
 * (float32 state and arithmetic). */

/* SRM forward (S14-S16) as a two-trace recurrence per neuron, plus the gradient trace:
 *   m[t] = a_m (m[t-1] + I[t]),  q[t] = a_s (q[t-1] + I[t]),  g[t] = a_g (g[t-1] + I[t])
 *   u[t] = kappa (m[t] - q[t]) = sum_{t_last < t' <= t} eps(t - t') I[t'],  kappa = tau_m / (tau_m - tau_s)
 *   s[t] = u[t] >= theta;  du[t] = u[t] - u_post[t-1];  dug[t] = g[t];  on a spike m, q, g <- 0
 * with a_x = exp(-1/tau_x) (paper S16) or 1 - 1/tau_x (official code), chosen by the caller. */
typedef struct exodus_event_srm_forward_args {
    int64_t B, T, N;
    int32_t dtype;
    const void* current;   /* (B, T, N) weighted input I */
    double decay_m, decay_s, decay_g, kappa, theta;
    void* spikes;          /* (B, T, N) out: 0 / 1 */
    void* du;              /* (B, T, N) out: discrete du/dt = u[t] - u_post[t-1] */
    void* dug;             /* (B, T, N) out: gradient trace g[t] before reset (= g(t_k) of S20 at spikes) */
    void* u;               /* (B, T, N) out or NULL: membrane before reset */
    int32_t device;        /* CUDA: the tensors' device index */
    void* stream;          /* CUDA: cudaStream_t of the caller (NULL: the legacy default stream) */
} exodus_event_srm_forward_args;

/* Reverse scan per neuron (S11, S20, S21). For every output spike t_k (previous spike t_{k-1},
 * or -1) and every t in (t_{k-1}, t_k], with G = dL/ds[t_k] and d = t_k - t:
 *   e_w[t]  = G * (-dtdu) * eps(d),   dtdu = -1 / du[t_k], clipped to [-max_dudt_inv, 0] if max_dudt_inv > 0
 *   e_in[t] = G * h(d) / g(t_k)       (0 when g(t_k) <= 0: no finite spike-time derivative)
 * eps(d) = kappa (a_m^{d+1} - a_s^{d+1}),  h(d) = a_g^{d+1}; steps after the last spike get 0.
 * The caller forms dL/dW = sum_t e_w[t]^T s_in[t] and dL/ds_in[t] = (W^T e_in[t]) * s_in[t]. */
typedef struct exodus_event_srm_backward_args {
    int64_t B, T, N;
    int32_t dtype;
    const void* grad_spikes;  /* (B, T, N) dL/ds_out */
    const void* spikes;       /* (B, T, N) */
    const void* du;           /* (B, T, N) */
    const void* dug;          /* (B, T, N) */
    double decay_m, decay_s, decay_g, kappa;
    double max_dudt_inv;      /* <= 0: no clipping */
    void* e_w;                /* (B, T, N) out */
    void* e_in;               /* (B, T, N) out */
    int32_t device;           /* CUDA: the tensors' device index */
    void* stream;             /* CUDA: cudaStream_t of the caller (NULL: the legacy default stream) */
} exodus_event_srm_backward_args;

/* CPU (float32, float64) */
EXODUS_API int32_t exodus_event_srm_forward(const exodus_event_srm_forward_args* a);
EXODUS_API int32_t exodus_event_srm_backward(const exodus_event_srm_backward_args* a);

/* CUDA (float32, float64, float16, bfloat16) */
EXODUS_API int32_t exodus_event_cuda_srm_forward(const exodus_event_srm_forward_args* a);
EXODUS_API int32_t exodus_event_cuda_srm_backward(const exodus_event_srm_backward_args* a);

/* host emulation of the CUDA drivers (float32 and float64 only) */
EXODUS_API int32_t exodus_event_emu_srm_forward(const exodus_event_srm_forward_args* a);
EXODUS_API int32_t exodus_event_emu_srm_backward(const exodus_event_srm_backward_args* a);

#ifdef __cplusplus
}
#endif
