// The event CUDA drivers (event_kernels.cuh) compiled for the host through the core's emulation
// shim, exported as exodus_event_emu_*, so that the tests run the GPU code path's indexing and
// arithmetic on a CPU. float32 and float64 only (the half types need a GPU and are tested there).
#include "exodus/cuda_emu.h"

#include "event_kernels.cuh"
#include "event_host.inc"

namespace exodus {
namespace event_driver {

template <typename Launch>
int32_t run_on_device(const char* fn, int32_t /*device*/, int32_t dtype, Launch&& launch, void* /*stream*/) {
    switch (dtype) {
        case kFloat32: launch(Tag<float>{}, nullptr); return EXODUS_EVENT_OK;
        case kFloat64: launch(Tag<double>{}, nullptr); return EXODUS_EVENT_OK;
        default: return fail(EXODUS_EVENT_ERR_DTYPE, fn, "the emulation supports float32 and float64 only");
    }
}

}  // namespace event_driver
}  // namespace exodus

#define EXODUS_EVENT_CUDA_FN(name) exodus_event_emu_##name
#include "event_entry_points.inc"
