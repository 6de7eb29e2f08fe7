// The emulation library's library-level entry points (exodus/runtime.h); the operations are in
// cuda_emulation.cpp (core), ../sparse/sparse_emulation.cpp and ../event/event_emulation.cpp.
#include "../runtime/last_error.h"
#include "exodus/runtime.h"

extern "C" {

EXODUS_API int32_t exodus_emu_abi_version(void) { return EXODUS_ABI_VERSION; }

EXODUS_API const char* exodus_emu_last_error(void) { return exodus::last_error().c_str(); }

EXODUS_API const char* exodus_emu_build_info(void) {
    return "cuda emulation: the CUDA drivers compiled for the host, float32 and float64, one thread";
}

}  // extern "C"
