// The plain C ABI of the core operations (LIF, leaky) between the native libraries and Python
// (ctypes). Raw pointers, sizes, a dtype tag, a device index and a stream; no torch or Python
// types. Every entry point returns EXODUS_OK or an EXODUS_ERR_* code (exodus/runtime.h), with the
// message available from the library's last_error().
// Layout: tensors are (B, T, N) contiguous, states (B, N); per-neuron parameters are arrays of N
// values in the accumulation dtype (float64 for float64 data, float32 otherwise) or a single value
// when the matching *_per_neuron flag is 0.
#pragma once

#include <stdint.h>

#include "exodus/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct exodus_lif_forward_args {
    int64_t B, T, N;
    int32_t dtype;
    int32_t device;
    void* stream;
    const void* x;        /* (B, T, N) */
    const void* alpha;    /* N or 1 */
    const void* theta;    /* N or 1 */
    const void* beta;     /* N or 1; NULL: no synapse */
    int32_t alpha_per_neuron, theta_per_neuron, beta_per_neuron;
    const void* v0;       /* (B, N); NULL: zeros */
    const void* i0;       /* (B, N); NULL: zeros */
    int32_t reset_mode;
    int64_t max_spikes;
    int32_t has_clamp;
    double v_min;
    int32_t norm_input;
    void* spikes;         /* (B, T, N) out */
    void* v;              /* (B, T, N) out: pre-reset membrane */
    void* v_final;        /* (B, N) out: post-reset membrane at T - 1 */
    void* i_final;        /* (B, N) out, or NULL */
    void* i_trace;        /* (B, T, N) out, or NULL: synaptic current i[t] */
    int32_t* nonfinite;   /* NULL: no check; else set to 1 (never cleared) when an element of x is
                             NaN or +-Inf, found while the scan reads x (no extra pass) */
} exodus_lif_forward_args;

typedef struct exodus_lif_backward_args {
    int64_t B, T, N;
    int32_t dtype;
    int32_t device;
    void* stream;
    const void* grad_spikes;   /* (B, T, N) or NULL (zeros) */
    const void* grad_v;        /* (B, T, N) or NULL: upstream gradient of the returned membrane */
    const void* grad_v_final;  /* (B, N) or NULL */
    const void* grad_i_final;  /* (B, N) or NULL */
    const void* v;             /* (B, T, N) saved pre-reset membrane */
    const void* surrogate;     /* (B, T, N) precomputed f'(v), used when surrogate_id == 0 */
    int32_t surrogate_id;
    double surrogate_p0, surrogate_p1, surrogate_p2;
    const void* alpha;
    const void* theta;
    const void* beta;          /* NULL: no synapse */
    int32_t alpha_per_neuron, theta_per_neuron, beta_per_neuron;
    const void* v0;            /* (B, N) or NULL; needed for grad_alpha */
    const void* i_trace;       /* (B, T, N): i[t] for grad_alpha with norm_input (x without synapse) */
    int32_t reset_mode;
    int64_t max_spikes;
    int32_t has_clamp;
    double v_min;
    int32_t norm_input;
    int32_t backward_mode;     /* 0 exodus, 1 slayer */
    void* grad_x;              /* (B, T, N) out */
    void* grad_v0;             /* (B, N) out or NULL */
    void* grad_i0;             /* (B, N) out or NULL */
    void* grad_alpha;          /* (B, N) out or NULL: per (batch, neuron), summed by the caller */
} exodus_lif_backward_args;

typedef struct exodus_leaky_forward_args {
    int64_t B, T, N;
    int32_t dtype;
    int32_t device;
    void* stream;
    const void* x;        /* (B, T, N) */
    const void* alpha;    /* N or 1 */
    int32_t alpha_per_neuron;
    const void* v0;       /* (B, N) or NULL */
    int32_t norm_input;
    void* out;            /* (B, T, N) */
} exodus_leaky_forward_args;

typedef struct exodus_leaky_backward_args {
    int64_t B, T, N;
    int32_t dtype;
    int32_t device;
    void* stream;
    const void* grad_out;  /* (B, T, N) */
    const void* alpha;
    int32_t alpha_per_neuron;
    const void* v0;        /* (B, N) or NULL */
    const void* out;       /* (B, T, N) forward output, needed for grad_alpha */
    const void* x;         /* (B, T, N) forward input, needed for grad_alpha with norm_input */
    int32_t norm_input;
    void* grad_x;          /* (B, T, N) out */
    void* grad_v0;         /* (B, N) out or NULL */
    void* grad_alpha;      /* (B, N) out or NULL */
} exodus_leaky_backward_args;

/* CPU library (libexodus_native) */
EXODUS_API int32_t exodus_lif_forward(const exodus_lif_forward_args* a);
EXODUS_API int32_t exodus_lif_backward(const exodus_lif_backward_args* a);
EXODUS_API int32_t exodus_leaky_forward(const exodus_leaky_forward_args* a);
EXODUS_API int32_t exodus_leaky_backward(const exodus_leaky_backward_args* a);

/* CUDA library (libexodus_native_cuda): the same calls on device pointers, launched on `stream`
   of device `device`; the host emulation (libexodus_cuda_emulation, tests) exports them as
   exodus_emu_*. */
EXODUS_API int32_t exodus_cuda_lif_forward(const exodus_lif_forward_args* a);
EXODUS_API int32_t exodus_cuda_lif_backward(const exodus_lif_backward_args* a);
EXODUS_API int32_t exodus_cuda_leaky_forward(const exodus_leaky_forward_args* a);
EXODUS_API int32_t exodus_cuda_leaky_backward(const exodus_leaky_backward_args* a);

#ifdef __cplusplus
}
#endif
