// extern "C" entry points of the core (LIF, leaky) in the CPU library: argument checks and the
// choice of the kernels' copy selected by cpu/isa.cpp (cpu/cpu_baseline.cpp, cpu/cpu_avx2.cpp,
// cpu/cpu_avx512.cpp).
#include <cstdio>
#include <exception>
#include <string>

#include "exodus/c_api.h"
#include "exodus/common.h"
#include "exodus/sizes.h"
#include "cpu/isa.h"
#include "runtime/last_error.h"

// The entry points of one copy of the core kernels (cpu/cpu_kernels.inc, compiled per instruction set).
#define EXODUS_CORE_DECLARE_COPY(isa)                                       \
    namespace exodus {                                                      \
    namespace isa {                                                         \
    int32_t lif_forward_entry(const exodus_lif_forward_args&);             \
    int32_t lif_backward_entry(const exodus_lif_backward_args&);           \
    int32_t leaky_forward_entry(const exodus_leaky_forward_args&);         \
    int32_t leaky_backward_entry(const exodus_leaky_backward_args&);       \
    }                                                                       \
    }
EXODUS_CORE_DECLARE_COPY(baseline)
#if defined(EXODUS_HAVE_AVX2)
EXODUS_CORE_DECLARE_COPY(avx2)
#endif
#if defined(EXODUS_HAVE_AVX512)
EXODUS_CORE_DECLARE_COPY(avx512)
#endif

namespace exodus {
namespace {

#if defined(EXODUS_HAVE_AVX512)
#define EXODUS_CORE_CASE_AVX512(entry, a) \
    case EXODUS_ISA_AVX512: return avx512::entry(a);
#else
#define EXODUS_CORE_CASE_AVX512(entry, a)
#endif
#if defined(EXODUS_HAVE_AVX2)
#define EXODUS_CORE_CASE_AVX2(entry, a) \
    case EXODUS_ISA_AVX2: return avx2::entry(a);
#else
#define EXODUS_CORE_CASE_AVX2(entry, a)
#endif
// The kernels' copy cpu/isa.cpp selected.  The copies do the same arithmetic (no FMA), so they give
// the same bits.
#define EXODUS_CORE_RUN(entry, a)              \
    switch (current_isa()) {                   \
        EXODUS_CORE_CASE_AVX512(entry, a)      \
        EXODUS_CORE_CASE_AVX2(entry, a)        \
        default: return baseline::entry(a);    \
    }

template <typename Args>
int32_t check_sizes(const Args& a, const char* fn) {
    if (a.B <= 0 || a.T <= 0 || a.N <= 0)
        return fail(EXODUS_ERR_ARGUMENT, std::string(fn) + ": B, T and N must be positive, got B=" +
                                             std::to_string(a.B) + ", T=" + std::to_string(a.T) +
                                             ", N=" + std::to_string(a.N));
    int64_t count = 0;
    std::string error;
    if (!element_count("B * T * N", {a.B, a.T, a.N}, count, error))
        return fail(EXODUS_ERR_ARGUMENT, std::string(fn) + ": " + error);
    if (a.dtype != kFloat32 && a.dtype != kFloat64)
        return fail(EXODUS_ERR_DTYPE, std::string(fn) + ": the CPU library supports float32 and "
                                                        "float64 only (dtype tag " +
                                          std::to_string(a.dtype) + ")");
    return EXODUS_OK;
}

int32_t null_arg(const char* fn, const char* name) {
    return fail(EXODUS_ERR_ARGUMENT, std::string(fn) + ": required pointer '" + name + "' is NULL");
}

template <typename F>
int32_t guarded(const char* fn, F&& body) {
    try {
        const int32_t rc = body();
        if (rc == EXODUS_ERR_DTYPE) return fail(rc, std::string(fn) + ": unsupported dtype");
        return rc;
    } catch (const std::exception& e) {
        return fail(EXODUS_ERR_INTERNAL, std::string(fn) + ": " + e.what());
    } catch (...) {
        return fail(EXODUS_ERR_INTERNAL, std::string(fn) + ": unknown C++ exception");
    }
}

}  // namespace
}  // namespace exodus

using namespace exodus;

extern "C" {

EXODUS_API int32_t exodus_lif_forward(const exodus_lif_forward_args* a) {
    const char* fn = "exodus_lif_forward";
    if (!a) return null_arg(fn, "args");
    if (int32_t rc = check_sizes(*a, fn)) return rc;
    if (!a->x) return null_arg(fn, "x");
    if (!a->alpha) return null_arg(fn, "alpha");
    if (!a->theta) return null_arg(fn, "theta");
    if (!a->spikes) return null_arg(fn, "spikes");
    if (!a->v) return null_arg(fn, "v");
    if (!a->v_final) return null_arg(fn, "v_final");
    return guarded(fn, [&]() -> int32_t { EXODUS_CORE_RUN(lif_forward_entry, *a) });
}

EXODUS_API int32_t exodus_lif_backward(const exodus_lif_backward_args* a) {
    const char* fn = "exodus_lif_backward";
    if (!a) return null_arg(fn, "args");
    if (int32_t rc = check_sizes(*a, fn)) return rc;
    if (!a->v) return null_arg(fn, "v");
    if (!a->alpha) return null_arg(fn, "alpha");
    if (!a->theta) return null_arg(fn, "theta");
    if (!a->grad_x) return null_arg(fn, "grad_x");
    if (a->surrogate_id == 0 && !a->surrogate) return null_arg(fn, "surrogate");
    if (a->surrogate_id < 0 || a->surrogate_id > 4)
        return fail(EXODUS_ERR_ARGUMENT, std::string(fn) + ": unknown surrogate id " +
                                             std::to_string(a->surrogate_id));
    if (a->grad_alpha && a->norm_input && !a->i_trace) return null_arg(fn, "i_trace");
    return guarded(fn, [&]() -> int32_t { EXODUS_CORE_RUN(lif_backward_entry, *a) });
}

EXODUS_API int32_t exodus_leaky_forward(const exodus_leaky_forward_args* a) {
    const char* fn = "exodus_leaky_forward";
    if (!a) return null_arg(fn, "args");
    if (int32_t rc = check_sizes(*a, fn)) return rc;
    if (!a->x) return null_arg(fn, "x");
    if (!a->alpha) return null_arg(fn, "alpha");
    if (!a->out) return null_arg(fn, "out");
    return guarded(fn, [&]() -> int32_t { EXODUS_CORE_RUN(leaky_forward_entry, *a) });
}

EXODUS_API int32_t exodus_leaky_backward(const exodus_leaky_backward_args* a) {
    const char* fn = "exodus_leaky_backward";
    if (!a) return null_arg(fn, "args");
    if (int32_t rc = check_sizes(*a, fn)) return rc;
    if (!a->grad_out) return null_arg(fn, "grad_out");
    if (!a->alpha) return null_arg(fn, "alpha");
    if (!a->grad_x) return null_arg(fn, "grad_x");
    if (a->grad_alpha && !a->out) return null_arg(fn, "out");
    if (a->grad_alpha && a->norm_input && !a->x) return null_arg(fn, "x");
    return guarded(fn, [&]() -> int32_t { EXODUS_CORE_RUN(leaky_backward_entry, *a) });
}

}  // extern "C"
