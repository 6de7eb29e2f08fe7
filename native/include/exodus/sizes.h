// Sizes at the C ABIs: the element count of a tensor from its dimensions, with overflow detected.
// Any caller may pass any int64 sizes; a product that wraps (B = T = N = 2^22 gives 2^66, which
// wraps to 0) would size nothing, or too little, and a call could "succeed" having done nothing or
// index past its buffers.  Host code only (the entry points), shared by every library.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>

namespace exodus {

// The product of `dims` (each >= 0, checked by the caller) into `count`.  When it does not fit in
// int64: false, and `error` says so, naming the product (`what`, e.g. "B * T * N") and the sizes.
// A zero dimension makes the count 0 whatever the others are.
inline bool element_count(const char* what, std::initializer_list<int64_t> dims, int64_t& count, std::string& error) {
    count = 0;
    for (int64_t d : dims)
        if (d == 0) return true;
    int64_t n = 1;
    for (int64_t d : dims) {
        if (n > std::numeric_limits<int64_t>::max() / d) {
            error = std::string(what) + " overflows int64 (";
            const char* sep = "";
            for (int64_t e : dims) {
                error += sep + std::to_string(e);
                sep = " * ";
            }
            error += ")";
            return false;
        }
        n *= d;
    }
    count = n;
    return true;
}

}  // namespace exodus
