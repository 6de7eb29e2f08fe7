// libexodus_sparse_cuda: the sparse-SGD drivers of sparse_kernels.cuh for float32 and float64,
// launched on the caller's stream of the tensors' own device (made current for the call and
// restored after), every launch checked (ARCHITECTURE §2).  The CUDA runtime is linked statically.
// No atomics anywhere: the results are deterministic (see sparse_kernels.cuh).
#include <cuda_runtime.h>

#include <string>

#include "exodus/sparse_api.h"

#include "sparse_kernels.cuh"
#include "../cuda/cuda_error_text.inc"

#ifndef EXODUS_CUDA_ARCH_LIST
#define EXODUS_CUDA_ARCH_LIST "unknown"
#endif

namespace exodus {
namespace sparse_driver {

constexpr const char* kWhere = " (cuda)";

[[noreturn]] void throw_cuda(cudaError_t e);

// The tensors' device is current for the duration of a call; the caller's device is restored
// after, even when a launch fails.
class DeviceGuard {
public:
    explicit DeviceGuard(int32_t device) {
        cudaError_t e = cudaGetDevice(&previous_);
        if (e != cudaSuccess) throw_cuda(e);
        if (previous_ != device && (e = cudaSetDevice(device)) != cudaSuccess) throw_cuda(e);
        device_ = device;
    }
    ~DeviceGuard() {
        if (previous_ != device_) cudaSetDevice(previous_);
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = -1;
    int device_ = -1;
};

inline void check_launch() {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) throw_cuda(e);
}

}  // namespace sparse_driver
}  // namespace exodus

#define EXODUS_LAUNCH(kernel, grid, block, stream, ...)                                          \
    do {                                                                                         \
        kernel<<<(grid), (block), 0, static_cast<cudaStream_t>(stream)>>>(__VA_ARGS__);       \
        exodus::sparse_driver::check_launch();                                                   \
    } while (0)

#define EXODUS_SPARSE_FN(name) exodus_sparse_cuda_##name
#include "sparse_entry_points.inc"

namespace exodus {
namespace sparse_driver {

using cuda_text::version_text;

// The CUDA error with the fix for the failures a user can act on (no driver, old driver).
void throw_cuda(cudaError_t e) {
    const std::string msg = cuda_text::error_text(e);
    throw Failure{kErrCuda, msg};
}

}  // namespace sparse_driver
}  // namespace exodus

extern "C" {

EXODUS_SPARSE_API const char* exodus_sparse_cuda_build_info(void) {
    static const std::string info = "cuda: toolkit " + exodus::sparse_driver::version_text(CUDART_VERSION) +
                                    ", runtime linked statically, architectures " EXODUS_CUDA_ARCH_LIST;
    return info.c_str();
}

EXODUS_SPARSE_API int32_t exodus_sparse_cuda_runtime_version(void) { return CUDART_VERSION; }

}  // extern "C"
