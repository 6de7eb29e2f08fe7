/* Plain C ABI of sparse spiking gradient descent (Perez-Nieves & Goodman, NeurIPS 2021, "S3GD").  Raw pointers and sizes only: no torch or Python headers, so one
 * build serves every torch and Python version (docs/architecture.md §2).  Every entry point returns 0 on
 * success or an EXODUS_ERR_* code (exodus/runtime.h), the message being available from the
 * library's last_error().
 *
 * Neuron (one layer, fused with its weight product h = x W^T, W of shape (N_out, N_in)):
 *   delay = 1 (paper):  V[t+1] = alpha V[t] + h[t] - reset_scale S[t],   V[0] = 0
 *   delay = 0:          V[t]   = alpha V[t-1] + h[t] - reset_scale S[t-1], V[-1] = 0
 *   S[t] = V[t] > theta (strict = 1, paper) or V[t] >= theta (strict = 0).
 * reset_scale is (V_th - V_r) for the paper's reset after the leak, alpha (V_th - V_r) for a reset
 * before the leak.  Truncated surrogate f(V) = 1 / (beta_s |V - theta| + 1)^2 when |V - theta| < b_th,
 * else 0; its support is the ACTIVE SET.  Active entries are stored per (b, j) as a CSR:
 * offsets[b * N + j] .. offsets[b * N + j + 1] index times (int32, ascending) and fvals (f).
 * Layout: (B, T, N) contiguous.  dtype: 0 float32, 1 float64.  Sizes may be 0: a pointer to an empty
 * tensor may be NULL (the Python side passes NULL for every empty tensor); every other pointer a call
 * reads or writes is checked (an error naming it), and so is every size product (int64 overflow).
 * The arrays of the active entries (times, fvals, e) may be NULL only when B T N is 0.
 *
 * Each library of exodus/runtime.h exports these operations with the same structs: libexodus_native
 * (CPU, exodus_sparse_*), libexodus_native_cuda (exodus_sparse_cuda_*, pointers on CUDA device
 * `device`, kernels on `stream`, asynchronous like any CUDA launch) and libexodus_cuda_emulation
 * (exodus_sparse_emu_*: the CUDA drivers compiled for the host, for the tests).  The CUDA entry
 * points additionally need the fields marked "CUDA" below (workspaces the caller allocates, so the
 * library never allocates device memory). */
#pragma once

#include <stdint.h>

#include "exodus/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct exodus_sparse_forward_args {
    int64_t B, T, N;
    int32_t dtype;
    const void* h;          /* (B, T, N) weighted input x W^T */
    double alpha, theta, reset_scale, b_th, beta_s;
    int32_t delay, strict;
    void* spikes;           /* (B, T, N) out */
    void* v;                /* (B, T, N) out: membrane (needed by collect / the dense backward) */
    int64_t* counts;        /* (B * N) out: active entries per (b, j) */
    /* ABI 2, every struct: where the pointers live (CUDA library; the CPU library ignores them). */
    int32_t device;         /* CUDA device index of every pointer */
    void* stream;           /* the caller's cudaStream_t on that device (NULL: legacy default stream) */
} exodus_sparse_forward_args;

typedef struct exodus_sparse_collect_args {
    int64_t B, T, N;
    int32_t dtype;
    const void* v;          /* (B, T, N) */
    double theta, b_th, beta_s;
    const int64_t* offsets; /* (B * N + 1) exclusive prefix sum of forward's counts on this v */
    int32_t* times;         /* (K + 1) out, K = offsets[B * N]: the times of the entries, then a status
                             * element set to -1 when v does not match offsets (the caller's error:
                             * the kernels never write past an entry's slot), left as it is else */
    void* fvals;            /* (K) out: truncated surrogate at the active entries */
    int32_t device;         /* ABI 2: as in exodus_sparse_forward_args */
    void* stream;
} exodus_sparse_collect_args;

typedef struct exodus_sparse_trace_args {
    int64_t B, T, N;
    int32_t dtype;
    const void* x;          /* (B, T, N) input spikes */
    double alpha;
    int32_t delay;          /* 1: tr[t] = alpha tr[t-1] + x[t-1]; 0: tr[t] = alpha tr[t-1] + x[t] */
    void* trace;            /* (B, T, N) out: dV[t]/dW ignoring the reset */
    int32_t device;         /* ABI 2: as in exodus_sparse_forward_args */
    void* stream;
} exodus_sparse_trace_args;

typedef struct exodus_sparse_backward_args {
    int64_t B, T, N_out, N_in;
    int32_t dtype;
    double alpha, reset_scale;
    int32_t exact;          /* 1: keep the reset in the gradient (EXODUS); 0: detached (paper) */
    int32_t delay;
    const int64_t* offsets; /* (B * N_out + 1) this layer's active set */
    const int32_t* times;
    const void* fvals;
    const void* grad_spikes;/* (B, T, N_out) dL/dS */
    void* e;                /* (K) workspace/out: error at the active entries (e-hat for exact) */
    const void* trace;      /* (B, T, N_in): the weight gradient's input trace (with grad_w) */
    void* grad_w;           /* (N_out, N_in) out (overwritten), or NULL: no weight gradient */
    /* input gradient: mode 0 none; 1 dense delta (B, T, N_out) written to delta (all times);
     * 2 sparse: dL/dx written only at the input layer's active entries (in_offsets/in_times), by
     * dot products with delta at the needed times (rows of W^T: one per active input entry);
     * 3 (CPU library only) the same dL/dx by products (rows of W: one per active output entry,
     * then a reverse scan over time); needs w, in_offsets, in_times and grad_x, no workspace. */
    int32_t input_mode;
    void* delta;            /* mode 1: (B, T, N_out) out */
    const void* w_t;        /* mode 2, CPU: (N_in, N_out) W transposed, contiguous; or NULL: the CPU
                             * library transposes w (below) into the tail of workspace itself */
    const int64_t* in_offsets; /* mode 2: (B * N_in + 1) */
    const int32_t* in_times;   /* mode 2 */
    void* workspace;        /* mode 2, CPU: n_workspaces * T * N_out elements (+ N_in * N_out when
                             * w_t is NULL: the transposed weight); exodus_sparse_backward_plan sizes it */
    int64_t n_workspaces;
    void* grad_x;           /* mode 2: (B, T, N_in) out; the CPU library writes all of it (zero off the
                             * active entries), the CUDA library needs it zero-initialised */
    int32_t device;         /* ABI 2: as in exodus_sparse_forward_args */
    void* stream;
    /* CUDA library only (ABI 2): workspaces and lists of the device drivers; in mode 2 the CUDA
     * drivers use w and delta_needed instead of w_t and workspace. */
    void* powers;           /* (T + 1) workspace: alpha^n by repeated multiplication, as on the CPU */
    /* mode 2: the times each sample needs delta at (any input neuron of sample b active), as a CSR
     * over b, with need_index[b * T + t] = position of t in b's list (-1: not needed). */
    const int64_t* need_offsets; /* (B + 1) */
    const int32_t* need_times;   /* (need_offsets[B]) ascending per sample */
    const int32_t* need_index;   /* (B * T) */
    const void* w;          /* mode 2: (N_out, N_in) W itself (CUDA: coalesced along i; CPU: used
                             * when w_t is NULL) */
    void* delta_needed;     /* mode 2: (need_offsets[B], N_out) workspace: delta at the needed times */
} exodus_sparse_backward_args;

typedef struct exodus_sparse_dense_backward_args {
    int64_t B, T, N;
    int32_t dtype;
    const void* v;          /* (B, T, N) */
    const void* grad_spikes;/* (B, T, N) */
    double alpha, theta, reset_scale, b_th, beta_s;
    int32_t exact, delay;
    void* delta;            /* (B, T, N) out: dL/dh */
    int32_t device;         /* ABI 2: as in exodus_sparse_forward_args */
    void* stream;
} exodus_sparse_dense_backward_args;

/* What a backward call with the sparse input gradient (input_mode 2) needs, decided by the
 * library that runs it: the input_mode to pass (the CPU library picks dot products, 2, or products,
 * 3, by its cost model; the CUDA drivers always take 2), n_workspaces, the workspaces to allocate
 * (in elements of dtype) and whether grad_x must be zero-initialised.  The caller allocates what the
 * plan says and passes it to backward unchanged; it never needs the drivers' layouts. */
typedef struct exodus_sparse_backward_plan_args {
    int64_t B, T, N_out, N_in;
    int32_t dtype;
    int32_t input_path;     /* 0: the cheaper path (cost model); 1: dot products; 2: products (CPU
                             * library only; the CUDA drivers take dot products whatever is asked) */
    int64_t out_active;     /* |A| of this layer (offsets[B * N_out]) */
    int64_t in_active;      /* |A| of the input layer (in_offsets[B * N_in]) */
    int64_t needed;         /* CUDA drivers: need_offsets[B], the (b, t) pairs where delta is needed */
    /* out */
    int32_t input_mode;     /* 2 or 3: backward's input_mode */
    int32_t zero_grad_x;    /* 1: grad_x must be zero-initialised (the driver writes the active entries only) */
    int64_t n_workspaces;   /* backward's n_workspaces */
    int64_t workspace;      /* elements of backward's workspace (0: none) */
    int64_t powers;         /* elements of backward's powers (0: none) */
    int64_t delta_needed;   /* elements of backward's delta_needed (0: none) */
    int64_t workspace_bytes;/* every workspace byte of the call: the ones above and those the library
                             * allocates itself (the product path's per-thread lists, for an average
                             * sample) */
    int32_t device;         /* as in exodus_sparse_forward_args */
    void* stream;
} exodus_sparse_backward_plan_args;

/* CPU library: its OpenMP threads (the per-thread workspaces of backward); the copy of the kernels
 * that runs is the library's one selection (exodus_isa, exodus/runtime.h). */
EXODUS_API int32_t exodus_sparse_max_threads(void);
EXODUS_API int32_t exodus_sparse_forward(const exodus_sparse_forward_args* a);
EXODUS_API int32_t exodus_sparse_collect(const exodus_sparse_collect_args* a);
EXODUS_API int32_t exodus_sparse_trace(const exodus_sparse_trace_args* a);
EXODUS_API int32_t exodus_sparse_backward(const exodus_sparse_backward_args* a);
EXODUS_API int32_t exodus_sparse_dense_backward(const exodus_sparse_dense_backward_args* a);
EXODUS_API int32_t exodus_sparse_backward_plan(exodus_sparse_backward_plan_args* a);

#ifdef __cplusplus
}
#endif
