// The sparse-SGD CUDA drivers of sparse_kernels.cuh and the entry points of sparse_entry_points.inc
// compiled for the host through the emulation shim (exodus/cuda_emu.h), exported as
// exodus_sparse_emu_*, so that the tests run the GPU code path's indexing and arithmetic on a
// machine without a GPU.  The threads of a grid run one after another.
#include "exodus/cuda_emu.h"

#include "../emu/run_on_device.h"
#include "exodus/sparse_api.h"
#include "sparse_kernels.cuh"

namespace exodus {
namespace sparse_driver {

constexpr const char* kWhere = " (cuda emulation)";

}  // namespace sparse_driver
}  // namespace exodus

#define EXODUS_SPARSE_FN(name) exodus_sparse_emu_##name
#include "sparse_entry_points.inc"
