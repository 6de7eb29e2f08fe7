// Per-neuron recurrences of event-driven backpropagation (Zhu et al. 2022, suppl. S14-S21), written
// once as EXODUS_HD inline functions and called by the CPU driver (src/event/event_cpu.cpp, SIMD
// across neurons), the CUDA kernels (src/event/event_kernels.cuh, a thread per neuron) and their
// host emulation used in the tests, so that the tests exercise the arithmetic the GPU runs.
//
// Forward, per step (I = weighted input; all traces cleared after an output spike):
//     m = a_m (m + I),  q = a_s (q + I),  g = a_g (g + I),  u = kappa (m - q)
//     s = u >= theta,   du = u - u_post[t-1],   dug = g (before the reset)
// Backward, a reverse scan per neuron: at an output spike t_k the factors of its window
//     wf = G / du[t_k]  (clipped),   inf = G / g(t_k)
// and, at every step t of the window (t_{k-1}, t_k] with d = t_k - t:
//     e_w[t] = wf eps(d),   e_in[t] = inf h(d).
//
// The kernels eps(d) = kappa (a_m^(d+1) - a_s^(d+1)) and h(d) = a_g^(d+1) are powers formed by
// repeated multiplication in double (srm_kernel_advance), the same sequence of products whether
// the CPU tabulates them once per call or a GPU thread carries them along its reverse scan, so
// CPU, emulation and GPU agree bit for bit.
//
// Like lif.h, mode switches are selects without early returns or conditional stores: the CPU
// driver's `omp simd` loops vectorise only without control flow.
#pragma once

#include "exodus/common.h"

namespace exodus {

// One forward step of one SRM neuron (S14-S16). Updates the carried traces (m, q, g) and the
// post-reset membrane of the previous step (u_post) in place; returns the spike (0 / 1), the
// discrete du/dt, the gradient trace before the reset and the membrane before the reset.
template <typename A>
EXODUS_HD void srm_forward_step(A I, A a_m, A a_s, A a_g, A kappa, A theta, A& m, A& q, A& g, A& u_post,
                                A& s_out, A& du_out, A& dug_out, A& u_out) {
    const A mm = a_m * (m + I);
    const A qq = a_s * (q + I);
    const A gg = a_g * (g + I);
    const A uu = kappa * (mm - qq);
    const bool s = uu >= theta;
    s_out = s ? A(1) : A(0);
    du_out = uu - u_post;
    dug_out = gg;
    u_out = uu;
    // Integration restarts after every output spike (S14: the window [t_last + 1, t]).
    m = s ? A(0) : mm;
    q = s ? A(0) : qq;
    g = s ? A(0) : gg;
    u_post = s ? A(0) : uu;
}

// One reverse step of one neuron (S11, S20, S21) at step t, given the stored spike, dL/ds[t] (G),
// du[t] and dug[t]. At a spike, (re)starts the window's factors wf, inf; `dist` is the distance
// d = t_k - t to the next output spike t_k (-1: none, the step gets no gradient). Returns whether
// step t lies in a window. With `clip`, dt/du is clipped to [-lim, 0].
template <typename A, typename I>
EXODUS_HD bool srm_backward_step(A spike, A G, A du, A dug, bool clip, A lim, A& wf, A& inf, I& dist) {
    const bool s = spike != A(0);
    // du > 0 at every spike (u_post[t-1] < theta <= u[t]); the select keeps the division finite
    // at the other steps.
    const A d_u = s ? du : A(1);
    const A dtdu = d_u > A(0) ? -A(1) / d_u : A(0);  // S21: dt/du = -1 / (du/dt)
    const A clipped = dtdu < -lim ? -lim : dtdu;
    const A dtdu_c = clip ? clipped : dtdu;
    const A g = s ? dug : A(1);
    // S20: 1 / g(t_k); g <= 0 has no finite spike-time derivative: no gradient.
    const A ginv = g > A(0) ? A(1) / g : A(0);
    // dL/dt_k = -dL/ds[t_k] (suppl. B: d count / d t_k = -1), so dL/dt_k * dt/du = G / du and the
    // input path dL/dt_k * (-h / g) ... = G h / g.
    wf = s ? -G * dtdu_c : wf;
    inf = s ? G * ginv : inf;
    const I next = dist >= I(0) ? dist + I(1) : I(-1);
    dist = s ? I(0) : next;
    return dist >= I(0);
}

// The errors of step t from the window's factors and the kernels at its distance d.
template <typename A>
EXODUS_HD void srm_backward_errors(bool in_window, A wf, A inf, A eps_d, A h_d, A& e_w, A& e_in) {
    e_w = in_window ? wf * eps_d : A(0);
    e_in = in_window ? inf * h_d : A(0);
}

// Powers a^(d+1) of the three decays for distance d: `restart` gives d = 0, otherwise d -> d + 1.
EXODUS_HD void srm_kernel_advance(bool restart, double a_m, double a_s, double a_g, double& p_m, double& p_s,
                                  double& p_g) {
    p_m = restart ? a_m : p_m * a_m;
    p_s = restart ? a_s : p_s * a_s;
    p_g = restart ? a_g : p_g * a_g;
}

// eps(d) and h(d) from the powers, rounded once to the arithmetic type.
template <typename A>
EXODUS_HD A srm_eps(double kappa, double p_m, double p_s) {
    return A(kappa * (p_m - p_s));
}

template <typename A>
EXODUS_HD A srm_h(double p_g) {
    return A(p_g);
}

}  // namespace exodus
