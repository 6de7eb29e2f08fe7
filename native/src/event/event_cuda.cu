// The event-driven backpropagation CUDA library (libexodus_event_cuda): the kernels of
// event_kernels.cuh instantiated for float32, float64, float16 and bfloat16 (half types keep
// float32 state), launched on the caller's stream of the tensor's own device, every launch
// checked. The CUDA runtime is linked statically, as in libexodus_native_cuda.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#define EXODUS_LAUNCH(kernel, grid, block, stream, ...) kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#include "event_kernels.cuh"
#include "event_host.inc"
#include "../cuda/cuda_error_text.inc"

#ifndef EXODUS_CUDA_ARCH_LIST
#define EXODUS_CUDA_ARCH_LIST "unknown"
#endif

namespace exodus {
namespace event_driver {
namespace {

using cuda_text::version_text;

int32_t cuda_error(const char* fn, cudaError_t e) {
    const std::string msg = std::string(fn) + ": " + cuda_text::error_text(e);
    g_last_error = msg;
    return EXODUS_EVENT_ERR_CUDA;
}

}  // namespace

// Makes the tensor's device current for the duration of the call (restoring the caller's),
// dispatches on dtype and checks the launch.
template <typename Launch>
int32_t run_on_device(const char* fn, int32_t device, int32_t dtype, Launch&& launch, void* stream_ptr) {
    int previous = -1;
    cudaError_t e = cudaGetDevice(&previous);
    if (e != cudaSuccess) return cuda_error(fn, e);
    if (previous != device && (e = cudaSetDevice(device)) != cudaSuccess) return cuda_error(fn, e);
    cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
    int32_t rc = EXODUS_EVENT_OK;
    switch (dtype) {
        case kFloat32: launch(Tag<float>{}, stream); break;
        case kFloat64: launch(Tag<double>{}, stream); break;
        case kFloat16: launch(Tag<__half>{}, stream); break;
        case kBFloat16: launch(Tag<__nv_bfloat16>{}, stream); break;
        default: rc = fail(EXODUS_EVENT_ERR_DTYPE, fn, "unsupported dtype tag " + std::to_string(dtype));
    }
    if (rc == EXODUS_EVENT_OK) {
        e = cudaGetLastError();
        if (e != cudaSuccess) rc = cuda_error(fn, e);
    }
    if (previous != device) cudaSetDevice(previous);
    return rc;
}

}  // namespace event_driver
}  // namespace exodus

#define EXODUS_EVENT_CUDA_FN(name) exodus_event_cuda_##name
#include "event_entry_points.inc"

extern "C" {

EXODUS_EVENT_API int32_t exodus_event_cuda_runtime_version(void) { return CUDART_VERSION; }

EXODUS_EVENT_API const char* exodus_event_cuda_build_info(void) {
    static const std::string info = "cuda: toolkit " + exodus::event_driver::version_text(CUDART_VERSION) +
                                    ", runtime linked statically, architectures " EXODUS_CUDA_ARCH_LIST;
    return info.c_str();
}

}  // extern "C"
