// C entry points of the sparse spiking gradient descent CPU library (libexodus_sparse; see
// include/exodus/sparse_api.h): argument checks, error text, and the choice between the two
// copies of the kernels (sparse_cpu_kernels.inc): baseline ISA, compiled here, and AVX2
// (sparse_cpu_avx2.cpp), used when the CPU has it.
#include <cstdint>
#include <exception>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#define EXODUS_SPARSE_ISA baseline
#include "sparse_cpu_kernels.inc"

#if defined(EXODUS_SPARSE_HAVE_AVX2)
namespace exodus_sparse_cpu {
namespace avx2 {
void forward(const exodus_sparse_forward_args& a);
void collect(const exodus_sparse_collect_args& a);
void trace(const exodus_sparse_trace_args& a);
void backward(const exodus_sparse_backward_args& a);
void dense_backward(const exodus_sparse_dense_backward_args& a);
}  // namespace avx2
}  // namespace exodus_sparse_cpu
#endif

namespace {

#if defined(EXODUS_SPARSE_HAVE_AVX2)
bool use_avx2() {
    static const bool ok = __builtin_cpu_supports("avx2");
    return ok;
}
#endif

// The kernels of the ISA this CPU runs best.  Both copies do the same arithmetic: no FMA,
// elementwise vector loops, and dot products over a fixed lane layout (GCC vector types).
#if defined(EXODUS_SPARSE_HAVE_AVX2)
#define EXODUS_SPARSE_RUN(fn, args) \
    (use_avx2() ? exodus_sparse_cpu::avx2::fn(args) : exodus_sparse_cpu::baseline::fn(args))
#else
#define EXODUS_SPARSE_RUN(fn, args) exodus_sparse_cpu::baseline::fn(args)
#endif

thread_local std::string g_last_error;

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
        EXODUS_SPARSE_RUN(forward, *a);
    });
}

int32_t exodus_sparse_collect(const exodus_sparse_collect_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        require(a->v && a->offsets, "collect: v and offsets are required");
        EXODUS_SPARSE_RUN(collect, *a);
    });
}

int32_t exodus_sparse_trace(const exodus_sparse_trace_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        require(a->x && a->trace, "trace: x and trace are required");
        EXODUS_SPARSE_RUN(trace, *a);
    });
}

int32_t exodus_sparse_backward(const exodus_sparse_backward_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N_out, a->dtype);
        require(a->N_in >= 0, "negative N_in");
        require(a->offsets && a->e, "backward: offsets and e are required");
        require(a->input_mode >= 0 && a->input_mode <= 3, "backward: input_mode must be 0, 1, 2 or 3");
        if (a->input_mode == 1) require(a->delta != nullptr, "backward: input_mode 1 needs delta");
        if (a->input_mode == 2)
            require((a->w_t || a->w) && a->in_offsets && a->workspace && a->grad_x && a->n_workspaces > 0,
                    "backward: input_mode 2 needs w_t or w, in_offsets, workspace and grad_x");
        if (a->input_mode == 3)
            require(a->w && a->in_offsets && a->in_times && a->grad_x,
                    "backward: input_mode 3 needs w, in_offsets, in_times and grad_x");
        EXODUS_SPARSE_RUN(backward, *a);
    });
}

int32_t exodus_sparse_dense_backward(const exodus_sparse_dense_backward_args* a) {
    return guarded([&] {
        require(a != nullptr, "null arguments");
        check_dims(a->B, a->T, a->N, a->dtype);
        require(a->v && a->grad_spikes && a->delta, "dense_backward: v, grad_spikes and delta are required");
        EXODUS_SPARSE_RUN(dense_backward, *a);
    });
}

}  // extern "C"
