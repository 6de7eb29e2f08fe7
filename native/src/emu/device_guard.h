// The host emulation's counterpart of ../cuda/device_guard.cuh: host memory only, so there is no
// device to make current and nothing can fail.
#pragma once

#include <cstdint>
#include <string>

namespace exodus {

class DeviceGuard {
public:
    explicit DeviceGuard(int32_t /*device*/) {}
    bool failed() const { return false; }
    std::string error_text() const { return {}; }
};

}  // namespace exodus
