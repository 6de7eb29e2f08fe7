// The one device guard of the CUDA drivers (core, sparse, event): makes the tensors' device current
// for the duration of a call and restores the caller's device after, even when a launch fails.
// The host emulation has its counterpart with the same interface (../emu/device_guard.h).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "cuda_error_text.inc"

namespace exodus {

class DeviceGuard {
public:
    explicit DeviceGuard(int32_t device) : device_(device) {
        error_ = cudaGetDevice(&previous_);
        if (error_ == cudaSuccess && previous_ != device) error_ = cudaSetDevice(device);
    }
    ~DeviceGuard() {
        if (previous_ >= 0 && previous_ != device_) cudaSetDevice(previous_);
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

    bool failed() const { return error_ != cudaSuccess; }
    // The CUDA error of making the device current, with the fix a user can act on.
    std::string error_text() const { return cuda_text::error_text(error_); }

private:
    int previous_ = -1;
    int32_t device_;
    cudaError_t error_ = cudaSuccess;
};

}  // namespace exodus
