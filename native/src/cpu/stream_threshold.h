// When the CPU scans write their outputs with streaming (non-temporal) stores: when a call writes
// more bytes than this threshold, by default the last-level cache's size (sysfs, else sysconf; 32 MiB
// when the system does not say).  One setting for the process, shared by every copy of the kernels;
// exodus_set_stream_threshold() changes it (tests: 0 streams every aligned output).
#pragma once

#include <cstdint>

namespace exodus {

int64_t stream_threshold_bytes();

}  // namespace exodus
