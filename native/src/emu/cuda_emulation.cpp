// The CUDA drivers of src/cuda compiled for the host through the emulation shim, exported as
// exodus_emu_* so that the tests can run the GPU code path's indexing and arithmetic on a CPU.
// float32 and float64 only (the half types need a GPU and are tested there).
#include "exodus/cuda_emu.h"

#include "../cuda/kernels.cuh"
#include "../cuda/common_host.inc"

namespace exodus {

template <typename Launch>
int32_t run_on_device(const char* fn, int32_t /*device*/, int32_t dtype, Launch&& launch, void* /*stream*/) {
    switch (dtype) {
        case kFloat32: launch(Tag<float>{}, nullptr); return EXODUS_OK;
        case kFloat64: launch(Tag<double>{}, nullptr); return EXODUS_OK;
        default: return cuda_arg_error(fn, "the emulation supports float32 and float64 only");
    }
}

}  // namespace exodus

#define EXODUS_CUDA_FN(name) exodus_emu_##name
#include "../cuda/entry_points.inc"
