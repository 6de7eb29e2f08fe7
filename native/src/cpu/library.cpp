// The CPU library's library-level entry points (exodus/runtime.h): ABI version, last error and
// build information; the operations are in c_api.cpp (core), ../sparse/sparse_cpu.cpp and
// ../event/event_cpu.cpp, the instruction-set selection in isa.cpp.
#include <string>

#include "../runtime/last_error.h"
#include "exodus/runtime.h"
#include "isa.h"

namespace {

// Language and OpenMP, as compiled into this translation unit ("cpu: C++17, OpenMP 201511").
std::string cpu_toolchain_info() {
    std::string s = "cpu: C++17";
#if defined(_OPENMP)
    s += ", OpenMP " + std::to_string(_OPENMP);
#else
    s += ", no OpenMP";
#endif
    return s;
}

}  // namespace

extern "C" {

EXODUS_API int32_t exodus_abi_version(void) { return EXODUS_ABI_VERSION; }

EXODUS_API const char* exodus_last_error(void) { return exodus::last_error().c_str(); }

EXODUS_API const char* exodus_build_info(void) {
    static const std::string base = [] {
        std::string s = cpu_toolchain_info() + ", isa baseline";
#if defined(EXODUS_HAVE_AVX2)
        s += "+avx2";
#endif
#if defined(EXODUS_HAVE_AVX512)
        s += "+avx512";
#endif
        return s;
    }();
    thread_local std::string info;
    info = base + " (using " + exodus::isa_name(exodus::current_isa()) + ")";
    return info.c_str();
}

}  // extern "C"
