// Shared definitions for the host (CPU, CUDA emulation) and device (CUDA) builds.
// No torch or Python headers anywhere in native/: the library is a plain C ABI.
#pragma once

#include <cstdint>
#include <cmath>

#if defined(__CUDACC__)
#define EXODUS_HD __host__ __device__ __forceinline__
#else
#define EXODUS_HD inline
#endif

namespace exodus {

// dtype tags shared with Python (exodus_lightning/_native.py keeps the same numbers).
enum DType : int32_t { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Reset modes and backward modes are runtime arguments; only the dtype is a template parameter.
enum ResetMode : int32_t { kResetSubtract = 0, kResetZero = 1 };
enum BackwardMode : int32_t { kBackwardExodus = 0, kBackwardSlayer = 1 };

// Accumulation type: half types keep their state in float.
template <typename T> struct AccumOf { using type = float; };
template <> struct AccumOf<double> { using type = double; };

// Per-run neuron modes, identical for every neuron of one call.
struct LifModes {
    int32_t reset_mode;   // ResetMode
    int64_t max_spikes;   // 1: single spike; 0: unbounded multi spike; k > 1: at most k spikes per step
    int32_t has_clamp;    // lower bound v_min on the post-reset membrane
    int32_t norm_input;   // scale the input by (1 - alpha)
    int32_t has_syn;      // synaptic current i[t] = beta * (i[t-1] + x[t])
};

}  // namespace exodus
