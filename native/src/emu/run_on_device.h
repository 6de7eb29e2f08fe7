// The host emulation's counterpart of ../cuda/run_on_device.cuh: float32 and float64 only (the half
// types need a GPU and are tested there), launches run on the calling thread and cannot fail.
#pragma once

#include <string>

#include "../runtime/last_error.h"
#include "device_guard.h"
#include "exodus/common.h"
#include "exodus/runtime.h"

namespace exodus {

template <typename T> struct Tag { using type = T; };

template <typename Launch>
int32_t run_on_device(const char* fn, int32_t device, int32_t dtype, Launch&& launch, void* /*stream*/) {
    const DeviceGuard guard(device);
    switch (dtype) {
        case kFloat32: launch(Tag<float>{}, nullptr); return EXODUS_OK;
        case kFloat64: launch(Tag<double>{}, nullptr); return EXODUS_OK;
        default: return fail(EXODUS_ERR_DTYPE, std::string(fn) + ": the emulation supports float32 and float64 only");
    }
}

}  // namespace exodus
