// The sparse-SGD drivers of the CUDA library: sparse_kernels.cuh for float32 and float64, launched
// on the caller's stream of the tensors' own device (made current for the call by DeviceGuard and
// restored after), every launch checked (docs/architecture.md §2).  No atomics anywhere: the results are
// deterministic (see sparse_kernels.cuh).
#include <cuda_runtime.h>

#include <string>

#include "../cuda/run_on_device.cuh"
#include "exodus/sparse_api.h"

#include "sparse_kernels.cuh"

namespace exodus {
namespace sparse_driver {

constexpr const char* kWhere = " (cuda)";

[[noreturn]] void throw_cuda(cudaError_t e);

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

// The CUDA error with the fix for the failures a user can act on (no driver, old driver).
void throw_cuda(cudaError_t e) { throw Failure{EXODUS_ERR_CUDA, cuda_text::error_text(e)}; }

}  // namespace sparse_driver
}  // namespace exodus
