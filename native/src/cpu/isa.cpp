// The CPU library's instruction-set selection (isa.h) and its exported entry points.  The build
// defines EXODUS_HAVE_AVX2 / EXODUS_HAVE_AVX512 for the copies it compiled (native/CMakeLists.txt).
#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../runtime/last_error.h"
#include "exodus/runtime.h"

namespace exodus {
namespace {

const char* const kIsaNames[] = {"baseline", "avx2", "avx512"};

int32_t best_isa() {
    for (int32_t isa = EXODUS_ISA_AVX512; isa > EXODUS_ISA_BASELINE; --isa)
        if (isa_available(isa)) return isa;
    return EXODUS_ISA_BASELINE;
}

int32_t initial_isa() {
    const char* env = std::getenv("EXODUS_ISA");
    if (env && *env)
        for (int32_t isa = EXODUS_ISA_BASELINE; isa <= EXODUS_ISA_AVX512; ++isa)
            if (std::strcmp(env, kIsaNames[isa]) == 0 && isa_available(isa)) return isa;
    return best_isa();  // an unknown or unavailable request runs the best copy: the Python side warns
}

std::atomic<int32_t>& selected() {
    static std::atomic<int32_t> isa{initial_isa()};
    return isa;
}

}  // namespace

bool isa_available(int32_t isa) {
    switch (isa) {
        case EXODUS_ISA_BASELINE: return true;
#if defined(EXODUS_HAVE_AVX2)
        case EXODUS_ISA_AVX2: return __builtin_cpu_supports("avx2");
#endif
#if defined(EXODUS_HAVE_AVX512)
        case EXODUS_ISA_AVX512:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                   __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
#endif
        default: return false;
    }
}

int32_t current_isa() { return selected().load(std::memory_order_relaxed); }

const char* isa_name(int32_t isa) {
    return isa >= EXODUS_ISA_BASELINE && isa <= EXODUS_ISA_AVX512 ? kIsaNames[isa] : "unknown";
}

}  // namespace exodus

extern "C" {

EXODUS_API int32_t exodus_isa(void) { return exodus::current_isa(); }

EXODUS_API int32_t exodus_isa_available(int32_t isa) { return exodus::isa_available(isa) ? 1 : 0; }

EXODUS_API int32_t exodus_set_isa(int32_t isa) {
    if (isa == -1) isa = exodus::best_isa();
    if (isa < EXODUS_ISA_BASELINE || isa > EXODUS_ISA_AVX512)
        return exodus::fail(EXODUS_ERR_ARGUMENT, "set_isa: isa must be -1 (best), 0 (baseline), 1 (avx2) or 2 (avx512)");
    if (!exodus::isa_available(isa))
        return exodus::fail(EXODUS_ERR_ARGUMENT,
                            std::string("set_isa: this CPU or this build lacks ") + exodus::isa_name(isa));
    exodus::selected().store(isa);
    return EXODUS_OK;
}

}  // extern "C"
