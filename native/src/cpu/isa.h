// The one instruction-set selection of the CPU library: which copy of the kernels (core and sparse;
// each compiled for baseline, AVX2 and, for the sparse kernels, AVX-512) every entry point runs.
// The best copy the CPU and the build have, unless $EXODUS_ISA or exodus_set_isa() asks for another.
#pragma once

#include <cstdint>

namespace exodus {

// EXODUS_ISA_* of exodus/runtime.h.
int32_t current_isa();
bool isa_available(int32_t isa);
const char* isa_name(int32_t isa);

}  // namespace exodus
