// libexodus_sparse_emulation: the CUDA drivers of sparse_kernels.cuh and the entry points of
// sparse_entry_points.inc compiled for the host through the emulation shim (exodus/cuda_emu.h),
// exported as exodus_sparse_emu_*, so that the tests run the GPU code path's indexing and
// arithmetic on a machine without a GPU.  The threads of a grid run one after another.
#include "exodus/cuda_emu.h"

// The shim's launch, also marking the (host-only, meaningless) stream as used.
#undef EXODUS_LAUNCH
#define EXODUS_LAUNCH(kernel, grid, block, stream, ...) \
    ((void)(stream), exodus_emu::launch((grid), (block), [&] { kernel(__VA_ARGS__); }))

#include "exodus/sparse_api.h"
#include "sparse_kernels.cuh"

namespace exodus {
namespace sparse_driver {

constexpr const char* kWhere = " (cuda emulation)";

// Host memory only: there is no device to make current.
struct DeviceGuard {
    explicit DeviceGuard(int32_t /*device*/) {}
};

}  // namespace sparse_driver
}  // namespace exodus

#define EXODUS_SPARSE_FN(name) exodus_sparse_emu_##name
#include "sparse_entry_points.inc"
