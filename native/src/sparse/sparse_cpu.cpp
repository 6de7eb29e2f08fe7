// C entry points of sparse spiking gradient descent in the CPU library (include/exodus/sparse_api.h):
// argument checks, error text, and the copy of the kernels (sparse_cpu_kernels.inc) that the
// library's instruction-set selection (../cpu/isa.cpp) chose: baseline ISA, compiled here, AVX2
// (sparse_cpu_avx2.cpp) or AVX-512 (sparse_cpu_avx512.cpp).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <utility>

#include "../cpu/isa.h"
#include "../runtime/last_error.h"
#include "exodus/sizes.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define EXODUS_SPARSE_ISA baseline
#include "sparse_cpu_kernels.inc"

// The other copies' entry points (the same five functions in each ISA's namespace).
#define EXODUS_SPARSE_DECLARE_COPY(isa)                              \
    namespace exodus_sparse_cpu {                                    \
    namespace isa {                                                  \
    void forward(const exodus_sparse_forward_args& a);               \
    void collect(const exodus_sparse_collect_args& a);               \
    void trace(const exodus_sparse_trace_args& a);                   \
    void backward(const exodus_sparse_backward_args& a);             \
    void dense_backward(const exodus_sparse_dense_backward_args& a); \
    }                                                                \
    }
#if defined(EXODUS_HAVE_AVX2)
EXODUS_SPARSE_DECLARE_COPY(avx2)
#endif
#if defined(EXODUS_HAVE_AVX512)
EXODUS_SPARSE_DECLARE_COPY(avx512)
#endif

namespace {

#if defined(EXODUS_HAVE_AVX512)
#define EXODUS_SPARSE_CASE_AVX512(fn, args) \
    case EXODUS_ISA_AVX512: exodus_sparse_cpu::avx512::fn(args); break;
#else
#define EXODUS_SPARSE_CASE_AVX512(fn, args)
#endif
#if defined(EXODUS_HAVE_AVX2)
#define EXODUS_SPARSE_CASE_AVX2(fn, args) \
    case EXODUS_ISA_AVX2: exodus_sparse_cpu::avx2::fn(args); break;
#else
#define EXODUS_SPARSE_CASE_AVX2(fn, args)
#endif
// The kernels of the selected ISA.  The copies do the same arithmetic (no FMA; sums over a fixed
// lane layout), so they give the same bits.
#define EXODUS_SPARSE_RUN(fn, args)                                  \
    switch (exodus::current_isa()) {                                 \
        EXODUS_SPARSE_CASE_AVX512(fn, args)                          \
        EXODUS_SPARSE_CASE_AVX2(fn, args)                            \
        default: exodus_sparse_cpu::baseline::fn(args); break;       \
    }

struct ArgError : std::exception {
    std::string msg;
    explicit ArgError(std::string m) : msg(std::move(m)) {}
    const char* what() const noexcept override { return msg.c_str(); }
};

void require(bool ok, const char* msg) {
    if (!ok) throw ArgError(msg);
}

void require(bool ok, const std::string& msg) {
    if (!ok) throw ArgError(msg);
}

template <typename F>
int32_t guarded(F&& f) {
    try {
        f();
        return EXODUS_OK;
    } catch (const ArgError& e) {
        return exodus::fail(EXODUS_ERR_ARGUMENT, e.msg);
    } catch (const std::exception& e) {
        return exodus::fail(EXODUS_ERR_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return exodus::fail(EXODUS_ERR_INTERNAL, "internal error");
    }
}

void check_dims(int64_t B, int64_t T, int64_t N, int32_t dtype) {
    require(B >= 0 && T >= 0 && N >= 0, "negative size");
    require(T < (int64_t(1) << 31), "T must fit in int32");
    require(dtype == 0 || dtype == 1, "dtype must be float32 (0) or float64 (1) on the CPU");
}

// The element count of a tensor of dimensions `dims` (named `what` in the error when it overflows).
int64_t elements(const char* what, std::initializer_list<int64_t> dims) {
    int64_t count = 0;
    std::string error;
    require(exodus::element_count(what, dims, count, error), error);
    return count;
}

// A tensor of `count` elements at `p`: NULL only when it is empty (the Python side passes NULL for
// every empty tensor; the kernels then touch none of it).
void require_tensor(const void* p, int64_t count, const char* fn, const char* name) {
    if (p == nullptr && count != 0)
        throw ArgError(std::string(fn) + ": " + name + " is NULL (" + std::to_string(count) + " elements expected)");
}

}  // namespace

extern "C" {

EXODUS_API int32_t exodus_sparse_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

EXODUS_API int32_t exodus_sparse_forward(const exodus_sparse_forward_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        const int64_t n = elements("B * T * N", {a->B, a->T, a->N});
        for (auto [p, name] : {std::pair<const void*, const char*>{a->h, "h"}, {a->spikes, "spikes"}, {a->v, "v"}})
            require_tensor(p, n, "forward", name);
        require_tensor(a->counts, elements("B * N", {a->B, a->N}), "forward", "counts");
        EXODUS_SPARSE_RUN(forward, *a);
    });
}

EXODUS_API int32_t exodus_sparse_collect(const exodus_sparse_collect_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        const int64_t n = elements("B * T * N", {a->B, a->T, a->N});
        require_tensor(a->v, n, "collect", "v");
        require_tensor(a->offsets, elements("B * N", {a->B, a->N}) + 1, "collect", "offsets");
        // |A| <= B T N entries: fvals may be NULL only when nothing can be active; times always has the
        // status element after the entries
        require(a->times != nullptr, "collect: times is NULL (offsets[B * N] + 1 elements expected)");
        require_tensor(a->fvals, n, "collect", "fvals");
        EXODUS_SPARSE_RUN(collect, *a);
    });
}

EXODUS_API int32_t exodus_sparse_trace(const exodus_sparse_trace_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        const int64_t n = elements("B * T * N", {a->B, a->T, a->N});
        require_tensor(a->x, n, "trace", "x");
        require_tensor(a->trace, n, "trace", "trace");
        EXODUS_SPARSE_RUN(trace, *a);
    });
}

EXODUS_API int32_t exodus_sparse_backward(const exodus_sparse_backward_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N_out, a->dtype);
        require(a->N_in >= 0, "negative N_in");
        const char* fn = "backward";
        const int64_t n_out = elements("B * T * N_out", {a->B, a->T, a->N_out});
        const int64_t n_in = elements("B * T * N_in", {a->B, a->T, a->N_in});
        const int64_t n_w = elements("N_out * N_in", {a->N_out, a->N_in});
        require_tensor(a->offsets, elements("B * N_out", {a->B, a->N_out}) + 1, fn, "offsets");
        for (auto [p, name] : {std::pair<const void*, const char*>{a->times, "times"}, {a->fvals, "fvals"},
                               {a->grad_spikes, "grad_spikes"}, {a->e, "e"}})
            require_tensor(p, n_out, fn, name);
        if (a->grad_w) require_tensor(a->trace, n_in, fn, "trace (the weight gradient's input trace)");
        require(a->input_mode >= 0 && a->input_mode <= 3, "backward: input_mode must be 0, 1, 2 or 3");
        if (a->input_mode == 1) require_tensor(a->delta, n_out, "backward (input_mode 1)", "delta");
        if (a->input_mode == 2 || a->input_mode == 3) {
            const char* mode = a->input_mode == 2 ? "backward (input_mode 2)" : "backward (input_mode 3)";
            require_tensor(a->in_offsets, elements("B * N_in", {a->B, a->N_in}) + 1, mode, "in_offsets");
            require_tensor(a->in_times, n_in, mode, "in_times");
            require_tensor(a->grad_x, n_in, mode, "grad_x");
            require_tensor(a->input_mode == 2 && a->w_t ? a->w_t : a->w, n_w, mode,
                           a->input_mode == 2 ? "w_t or w" : "w");
        }
        if (a->input_mode == 2) {
            require(a->n_workspaces > 0, "backward (input_mode 2): n_workspaces must be > 0");
            // per-thread delta rows, and the transposed weight when w_t is not given
            const int64_t rows = elements("n_workspaces * T * N_out", {a->n_workspaces, a->T, a->N_out});
            require(a->w_t || rows <= std::numeric_limits<int64_t>::max() - n_w,
                    "backward (input_mode 2): the workspace size overflows int64");
            require_tensor(a->workspace, a->w_t ? rows : rows + n_w, "backward (input_mode 2)", "workspace");
        }
        EXODUS_SPARSE_RUN(backward, *a);
    });
}

EXODUS_API int32_t exodus_sparse_dense_backward(const exodus_sparse_dense_backward_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        const int64_t n = elements("B * T * N", {a->B, a->T, a->N});
        for (auto [p, name] : {std::pair<const void*, const char*>{a->v, "v"}, {a->grad_spikes, "grad_spikes"},
                               {a->delta, "delta"}})
            require_tensor(p, n, "dense_backward", name);
        EXODUS_SPARSE_RUN(dense_backward, *a);
    });
}

}  // extern "C"
