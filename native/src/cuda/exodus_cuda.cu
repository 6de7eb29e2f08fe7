// The CUDA library: kernels of kernels.cuh instantiated for float32, float64, float16 and
// bfloat16 (half types keep float32 state), launched on the caller's stream of the tensor's own
// device, every launch checked.  The CUDA runtime is linked statically.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#define EXODUS_LAUNCH(kernel, grid, block, stream, ...) kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#include "kernels.cuh"
#include "common_host.inc"
#include "cuda_error_text.inc"

#ifndef EXODUS_CUDA_ARCH_LIST
#define EXODUS_CUDA_ARCH_LIST "unknown"
#endif

namespace exodus {
namespace {

using cuda_text::version_text;

int32_t cuda_error(const char* fn, cudaError_t e) {
    const std::string msg = std::string(fn) + ": " + cuda_text::error_text(e);
    g_cuda_last_error = msg;
    return EXODUS_ERR_CUDA;
}

}  // namespace

// Sets the tensor's device for the duration of the call (restoring the caller's current device),
// dispatches on dtype and checks the launch.
template <typename Launch>
int32_t run_on_device(const char* fn, int32_t device, int32_t dtype, Launch&& launch, void* stream_ptr) {
    int previous = -1;
    cudaError_t e = cudaGetDevice(&previous);
    if (e != cudaSuccess) return cuda_error(fn, e);
    if (previous != device && (e = cudaSetDevice(device)) != cudaSuccess) return cuda_error(fn, e);
    cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
    int32_t rc = EXODUS_OK;
    switch (dtype) {
        case kFloat32: launch(Tag<float>{}, stream); break;
        case kFloat64: launch(Tag<double>{}, stream); break;
        case kFloat16: launch(Tag<__half>{}, stream); break;
        case kBFloat16: launch(Tag<__nv_bfloat16>{}, stream); break;
        default: rc = cuda_arg_error(fn, "unsupported dtype tag " + std::to_string(dtype));
    }
    if (rc == EXODUS_OK) {
        e = cudaGetLastError();
        if (e != cudaSuccess) rc = cuda_error(fn, e);
    }
    if (previous != device) cudaSetDevice(previous);
    return rc;
}

}  // namespace exodus

#define EXODUS_CUDA_FN(name) exodus_cuda_##name
#include "entry_points.inc"

extern "C" {

EXODUS_API int32_t exodus_cuda_abi_version(void) { return EXODUS_ABI_VERSION; }

EXODUS_API int32_t exodus_cuda_runtime_version(void) { return CUDART_VERSION; }

EXODUS_API int32_t exodus_cuda_driver_version(void) {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
    return v;
}

EXODUS_API int32_t exodus_cuda_device_count(void) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        exodus::cuda_error("device_count", e);
        cudaGetLastError();  // clear the sticky-free error so later calls start clean
        return -static_cast<int32_t>(e);
    }
    return n;
}

EXODUS_API const char* exodus_cuda_build_info(void) {
    static const std::string info = "cuda: toolkit " + exodus::version_text(CUDART_VERSION) +
                                    ", runtime linked statically, architectures " EXODUS_CUDA_ARCH_LIST;
    return info.c_str();
}

}  // extern "C"
