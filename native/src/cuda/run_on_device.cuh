// How the core and event CUDA drivers run a launch: the tensors' device made current for the call
// (DeviceGuard), the dtype dispatched (half types keep float32 state), the launch checked, every
// failure an EXODUS_ERR_* code with its text in the library's last_error().  The host emulation
// has its counterpart (../emu/run_on_device.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "../runtime/last_error.h"
#include "device_guard.cuh"
#include "exodus/common.h"
#include "exodus/runtime.h"

namespace exodus {

template <typename T> struct Tag { using type = T; };

inline int32_t cuda_fail(const char* fn, cudaError_t e) {
    return fail(EXODUS_ERR_CUDA, std::string(fn) + ": " + cuda_text::error_text(e));
}

template <typename Launch>
int32_t run_on_device(const char* fn, int32_t device, int32_t dtype, Launch&& launch, void* stream_ptr) {
    const DeviceGuard guard(device);
    if (guard.failed()) return fail(EXODUS_ERR_CUDA, std::string(fn) + ": " + guard.error_text());
    cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
    switch (dtype) {
        case kFloat32: launch(Tag<float>{}, stream); break;
        case kFloat64: launch(Tag<double>{}, stream); break;
        case kFloat16: launch(Tag<__half>{}, stream); break;
        case kBFloat16: launch(Tag<__nv_bfloat16>{}, stream); break;
        default: return fail(EXODUS_ERR_DTYPE, std::string(fn) + ": unsupported dtype tag " + std::to_string(dtype));
    }
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? EXODUS_OK : cuda_fail(fn, e);
}

}  // namespace exodus
