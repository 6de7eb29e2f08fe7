// exp() written as plain arithmetic so that GCC/Clang vectorise it inside `omp simd` loops
// (glibc's vector exp is only declared under -ffast-math, which the library must not use).
// Range reduction x = n ln2 + r with the round-to-integer "shifter" trick, Taylor polynomial on
// |r| <= ln2/2 (degree 12 for double: ~1 ulp; degree 7 for float: ~1 ulp), 2^n built in the
// exponent bits.  Only used for surrogate derivatives (arguments <= 0), never in the forward.
#pragma once

#include <cstdint>
#include <cstring>

#include "exodus/common.h"

namespace exodus {

EXODUS_HD double exp_poly(double x) {
#if defined(__CUDA_ARCH__)
    return ::exp(x);
#else
    const double lo = -708.0, hi = 709.0;
    const double xc = x < lo ? lo : (x > hi ? hi : x);
    const double shifter = 6755399441055744.0;  // 1.5 * 2^52
    const double kd = xc * 1.4426950408889634 + shifter;
    const double n = kd - shifter;
    const double r = (xc - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // The exponent field from the low bits of kd (n + 1023): unsigned arithmetic, whose left shift
    // drops the high bits by definition (a signed shift that overflows is undefined behaviour).
    uint64_t ki;
    std::memcpy(&ki, &kd, sizeof ki);
    const uint64_t bits = (ki + 1023u) << 52;
    double scale;
    std::memcpy(&scale, &bits, sizeof scale);
    const double y = p * scale;
    return x < lo ? 0.0 : y;  // true underflow below the clamp
#endif
}

EXODUS_HD float exp_poly(float x) {
#if defined(__CUDA_ARCH__)
    return ::expf(x);
#else
    const float lo = -87.0f, hi = 88.0f;
    const float xc = x < lo ? lo : (x > hi ? hi : x);
    const float shifter = 12582912.0f;  // 1.5 * 2^23
    const float kd = xc * 1.44269504088896341f + shifter;
    const float n = kd - shifter;
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t ki;
    std::memcpy(&ki, &kd, sizeof ki);
    const uint32_t bits = (ki + 127u) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    const float y = p * scale;
    return x < lo ? 0.0f : y;
#endif
}

}  // namespace exodus
