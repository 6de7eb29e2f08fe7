// Per-neuron LIF recurrences (docs/architecture.md §3, §4), written once as EXODUS_HD inline functions and
// called by the CPU driver (SIMD across neurons), the CUDA kernels (a thread per neuron) and the
// CUDA emulation used in the tests.  All arithmetic is in the accumulation type A.
//
// Forward, per step:   i = beta (i_prev + x)            (synapse; else i = x)
//                      v = alpha v_post_prev + c i      (c = 1 - alpha if norm_input, else 1)
//                      s = H(v - theta) | max(0, trunc(v / theta)) | min(k, ...)
//                      r = v - theta s  (subtract)  |  v 1[s == 0]  (zero)
//                      v_post = max(r, v_min)       (optional clamp)
// Backward (reverse scan, g_post = dL/dv_post):
//                      g_r = 1[r > v_min] g_post
//                      exodus/subtract: g_v = f (g_s - theta g_r) + g_r
//                      exodus/zero:     g_v = f g_s + 1[s == 0] g_r
//                      slayer:          g_v = f g_s + g_r
//                      g_post_prev = alpha g_v
//                      dL/dx = c g_v, or beta (c g_v + carry) with a synapse (lif_carry_backward_step)
//                      dL/dalpha = sum_t g_v (v_post_prev - norm i)  (alpha_grad_term)
#pragma once

#include "exodus/common.h"

namespace exodus {

// The mode switches below are written as selects on loop-invariant flags, with no early return
// and no conditional store: the CPU driver's `omp simd` loops vectorise only without control flow,
// and on the GPU every thread of a launch takes the same side anyway.

// Multi-spike counts are computed through an int32 conversion (vectorises on every x86-64); a
// count is therefore capped at 2^30 spikes per step, far beyond any meaningful membrane value.
template <typename A>
EXODUS_HD A spike_count(A v, A theta, int64_t max_spikes) {
    const A single = v >= theta ? A(1) : A(0);
    A q = v / theta;
    q = q > A(0) ? q : A(0);
    q = q < A(1073741824) ? q : A(1073741824);
    const A multi = A(static_cast<int32_t>(q));  // trunc for 0 <= q <= 2^30
    const A k = A(max_spikes);
    const A capped = multi > k ? k : multi;  // k = 0 (unbounded) is handled by the select below
    const A counted = max_spikes > 1 ? capped : multi;
    return max_spikes == 1 ? single : counted;
}

template <typename A>
EXODUS_HD A lif_reset(A v, A s, A theta, int32_t reset_mode) {
    // v * 0 (not a select) so that the sign of zero matches the PyTorch reference bit for bit.
    const A subtracted = v - theta * s;
    const A zeroed = v * (s == A(0) ? A(1) : A(0));
    return reset_mode == kResetSubtract ? subtracted : zeroed;
}

template <typename A>
EXODUS_HD A lif_post(A v, A s, A theta, A v_min, const LifModes& m) {
    const A r = lif_reset(v, s, theta, m.reset_mode);
    const A clamped = r > v_min ? r : v_min;
    return m.has_clamp ? clamped : r;
}

// One forward step of one neuron. Updates the carried state (v_post, i_syn) in place and
// returns the spike count and the pre-reset membrane v through s_out / v_out.
template <typename A>
EXODUS_HD void lif_forward_step(A x, A alpha, A c, A theta, A beta, A v_min, const LifModes& m,
                                A& v_post, A& i_syn, A& s_out, A& v_out) {
    const A i_new = beta * (i_syn + x);
    const A i = m.has_syn ? i_new : x;
    i_syn = m.has_syn ? i_new : i_syn;
    const A leak = alpha * v_post;
    const A drive = m.norm_input ? c * i : i;
    const A v = leak + drive;
    const A s = spike_count(v, theta, m.max_spikes);
    v_post = lif_post(v, s, theta, v_min, m);
    s_out = s;
    v_out = v;
}

// dL/dv[t] from the surrogate value f = f'(v[t]), the upstream dL/ds[t] (gs) and dL/dv[t]
// of the recorded membrane (gv), and g_post = dL/dv_post[t] carried from step t + 1.
template <typename A>
EXODUS_HD A lif_backward_step(A v, A f, A gs, A gv, A theta, A v_min, const LifModes& m,
                              int32_t backward_mode, A g_post) {
    const A s = spike_count(v, theta, m.max_spikes);
    const A r = lif_reset(v, s, theta, m.reset_mode);
    const A g_masked = r > v_min ? g_post : A(0);  // strict mask, as relu(r - v_min) + v_min
    const A g_r = m.has_clamp ? g_masked : g_post;
    const A g_slayer = f * gs + g_r;
    const A g_subtract = f * (gs - theta * g_r) + g_r;
    const A g_zero = f * gs + (s == A(0) ? g_r : A(0));
    const A g_exodus = m.reset_mode == kResetSubtract ? g_subtract : g_zero;
    const A g_v = backward_mode == kBackwardSlayer ? g_slayer : g_exodus;
    return g_v + gv;
}

// Post-reset membrane of step t - 1 recomputed from its stored pre-reset value (the same ops
// as the forward, so the value is bit-identical); needed only for the alpha gradient.
template <typename A>
EXODUS_HD A lif_post_from_v(A v, A theta, A v_min, const LifModes& m) {
    return lif_post(v, spike_count(v, theta, m.max_spikes), theta, v_min, m);
}

// Input scale c = 1 - alpha with norm_input, else 1 (docs/architecture.md §3: v = alpha v_post + c i).
// The forward steps also select on norm_input, so there c only has to be right when it is set.
template <typename A>
EXODUS_HD A input_scale(A alpha, int32_t norm_input) {
    return norm_input ? A(1) - alpha : A(1);
}

// The carries of the reverse scan at step t, from g_v = dL/dv[t]:
//     g_post = dL/dv_post[t-1] = alpha g_v[t]                          (into step t - 1)
//     G_i[t] = c g_v[t] + dL/di[t] via i[t+1],   dL/dx[t] = beta G_i[t]   (synapse)
//     dL/dx[t] = c g_v[t]                                                  (no synapse)
// g_isyn carries dL/dx[t+1] (= beta G_i[t+1]) in and dL/dx[t] out. Returns dL/dx[t].
template <typename A>
EXODUS_HD A lif_carry_backward_step(A g_v, A alpha, A c, A beta, int32_t has_syn, A& g_post, A& g_isyn) {
    g_post = alpha * g_v;
    const A g_in = c * g_v;
    const A g_x = has_syn ? beta * (g_in + g_isyn) : g_in;
    g_isyn = g_x;
    return g_x;
}

// One step's term of the decay gradient, shared by the LIF and the leaky integrator:
// v[t] = alpha v_post[t-1] + c in[t] with c = 1 - alpha (norm_input) gives
//     dL/dalpha += g_v[t] (v_post[t-1] - norm in[t]),   norm = 1 with norm_input, else 0,
// with v_post[-1] = v0 and in = i (LIF, the synaptic current or x) or x (leaky).
template <typename A>
EXODUS_HD A alpha_grad_term(A g_v, A v_post_prev, A norm, A in) {
    return g_v * (v_post_prev - norm * in);
}

// The non-finite check of the forward's input, one step: probe + (x - x) stays 0 while every x is
// finite and turns NaN for a NaN or +-Inf (one add per element, no branch; the driver tests
// probe != probe at the end of the scan).
template <typename A>
EXODUS_HD A nonfinite_probe_step(A probe, A x) {
    return probe + (x - x);
}

// Leaky integrator (ExpLeak / synaptic trace): v[t] = alpha v[t-1] + c x[t].
template <typename A>
EXODUS_HD A leaky_forward_step(A x, A alpha, A c, int32_t norm_input, A v_prev) {
    const A leak = alpha * v_prev;
    const A drive = norm_input ? c * x : x;
    return leak + drive;
}

// Reverse step of the leaky integrator: G[t] = dL/dv[t] = g_out[t] + alpha G[t+1] (g carries
// G[t+1] in and G[t] out); returns the input gradient dL/dx[t] = c G[t].  The carry into the
// initial state is dL/dv0 = alpha G[0].
template <typename A>
EXODUS_HD A leaky_backward_step(A g_out, A alpha, A c, A& g) {
    g = g_out + alpha * g;
    return c * g;
}

}  // namespace exodus
