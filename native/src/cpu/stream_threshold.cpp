// The CPU library's streaming-store threshold (stream_threshold.h) and its entry points
// (exodus/runtime.h).
#include "stream_threshold.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>

#include "exodus/runtime.h"

namespace {

// The size of the largest cache of CPU 0 as Linux describes it (sysfs: the last-level cache this
// core shares, e.g. "32768K"), else sysconf's, else 32 MiB.  sysfs first: glibc's sysconf derives the
// size from cpuid, which on virtual machines and multi-die parts can report the whole package's L3
// (384 MiB for a 32 MiB slice measured here).
int64_t last_level_cache_bytes() {
    int64_t best = 0;
    for (int index = 0; index < 8; ++index) {
        const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
        std::ifstream size_file(dir + "size");
        std::string text;
        if (!(size_file >> text) || text.empty()) continue;
        char* end = nullptr;
        const long long value = std::strtoll(text.c_str(), &end, 10);
        const int64_t unit = *end == 'K' ? 1024 : *end == 'M' ? (1 << 20) : *end == 'G' ? (int64_t(1) << 30) : 1;
        if (value > 0 && value * unit > best) best = value * unit;
    }
    if (best > 0) return best;
    long bytes = -1;
#if defined(_SC_LEVEL3_CACHE_SIZE)
    bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return bytes > 0 ? int64_t(bytes) : int64_t(32) << 20;
}

std::atomic<int64_t>& threshold() {
    static std::atomic<int64_t> bytes{last_level_cache_bytes()};
    return bytes;
}

}  // namespace

namespace exodus {

int64_t stream_threshold_bytes() { return threshold().load(std::memory_order_relaxed); }

}  // namespace exodus

extern "C" {

EXODUS_API int64_t exodus_stream_threshold(void) { return exodus::stream_threshold_bytes(); }

EXODUS_API int32_t exodus_set_stream_threshold(int64_t bytes) {
    threshold().store(bytes < 0 ? last_level_cache_bytes() : bytes, std::memory_order_relaxed);
    return EXODUS_OK;
}

}  // extern "C"
