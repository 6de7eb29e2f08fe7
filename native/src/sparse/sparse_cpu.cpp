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

// Whether the sparse input gradient costs less by products (input_mode 3: a row of W per active
// output entry, then a reverse scan of B T N_in) than by dot products (input_mode 2: a row of W^T per
// active input entry, plus delta at the needed times, up to B T N_out, and the transpose of W).
// Costs in multiply-adds of the streamed rows; the weights of the other terms are what they cost per
// element on the CPU (exodus-lightning bench sparse, 2 cores: the scan with its row clearing ~5, the
// delta scan ~4, the transpose ~12): products win from ~500 hidden neurons at equal activity, dot
// products below and whenever few input entries are active.  In double: no int64 overflow, and exact
// (so the same choice as integer arithmetic) below 2^53.
bool products_are_cheaper(int64_t B, int64_t T, int64_t N_out, int64_t N_in, int64_t out_active,
                          int64_t in_active) {
    const double bt = double(B) * double(T);
    const double by_products = double(out_active) * double(N_in) + 5 * bt * double(N_in);
    const double by_dots =
        double(in_active) * double(N_out) + 4 * bt * double(N_out) + 12 * double(N_out) * double(N_in);
    return by_products <= by_dots;
}

int32_t max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

}  // namespace

extern "C" {

EXODUS_API int32_t exodus_sparse_max_threads(void) { return max_threads(); }

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

// The input-gradient path of backward by the cost model (or as asked), and its workspaces: for dot
// products (sparse_input_grad) one T x N_out block of delta per thread, the threads being at most
// one per sample, then the transposed weight (N_in x N_out); products (input_grad_by_products)
// allocate their per-thread lists themselves.  The CPU library writes all of grad_x.
EXODUS_API int32_t exodus_sparse_backward_plan(exodus_sparse_backward_plan_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N_out, a->dtype);
        require(a->N_in >= 0, "backward_plan: negative N_in");
        require(a->out_active >= 0 && a->in_active >= 0,
                "backward_plan: out_active and in_active must be >= 0");
        require(a->input_path >= 0 && a->input_path <= 2,
                "backward_plan: input_path must be 0 (the cheaper), 1 (dot products) or 2 (products), got " +
                    std::to_string(a->input_path));
        const bool products = a->input_path == 2 ||
                              (a->input_path == 0 && products_are_cheaper(a->B, a->T, a->N_out, a->N_in,
                                                                          a->out_active, a->in_active));
        const int64_t size = a->dtype == 1 ? 8 : 4;
        const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(max_threads(), a->B));
        a->zero_grad_x = 0;
        a->powers = a->delta_needed = 0;
        a->n_workspaces = threads;
        if (products) {
            a->input_mode = 3;
            a->workspace = 0;
            // per thread: one sample's errors (row pointer + value) and active inputs (int64) bucketed
            // by time, three (T + 1) int64 index arrays and the scan's row of N_in, for an average sample
            const int64_t samples = std::max<int64_t>(a->B, 1);
            const int64_t per_out = (a->out_active + samples - 1) / samples;
            const int64_t per_in = (a->in_active + samples - 1) / samples;
            const int64_t per_thread = elements("the product path's workspace",
                                                {1, per_out * (8 + size) + per_in * 8 + 3 * (a->T + 1) * 8 +
                                                        a->N_in * size});
            a->workspace_bytes = elements("the product path's workspace bytes", {threads, per_thread});
        } else {
            a->input_mode = 2;
            const int64_t rows = elements("n_workspaces * T * N_out", {threads, a->T, a->N_out});
            const int64_t n_w = elements("N_out * N_in", {a->N_out, a->N_in});
            require(rows <= std::numeric_limits<int64_t>::max() - n_w,
                    "backward_plan: the workspace size overflows int64");
            a->workspace = rows + n_w;
            a->workspace_bytes = elements("the workspace bytes", {a->workspace, size});
        }
    });
}

}  // extern "C"
