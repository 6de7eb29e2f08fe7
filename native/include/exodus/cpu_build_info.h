// The part of a CPU library's build_info() text that every CPU library shares: language and
// OpenMP ("cpu: C++17, OpenMP 201511"), as compiled into the including translation unit.
#pragma once

#include <string>

namespace exodus {

inline std::string cpu_toolchain_info() {
    std::string s = "cpu: C++17";
#if defined(_OPENMP)
    s += ", OpenMP " + std::to_string(_OPENMP);
#else
    s += ", no OpenMP";
#endif
    return s;
}

}  // namespace exodus
