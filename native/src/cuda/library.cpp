// The CUDA library's library-level entry points (exodus/runtime.h): ABI version, last error, build
// information, and the CUDA runtime, driver and devices that `exodus-lightning info` reports.  The
// operations are in exodus_cuda.cu (core), ../sparse/sparse_cuda.cu and ../event/event_cuda.cu.
// The CUDA runtime is linked statically.
#include <cuda_runtime.h>

#include <string>

#include "../runtime/last_error.h"
#include "cuda_error_text.inc"
#include "exodus/runtime.h"

#ifndef EXODUS_CUDA_ARCH_LIST
#define EXODUS_CUDA_ARCH_LIST "unknown"
#endif

extern "C" {

EXODUS_API int32_t exodus_cuda_abi_version(void) { return EXODUS_ABI_VERSION; }

EXODUS_API const char* exodus_cuda_last_error(void) { return exodus::last_error().c_str(); }

EXODUS_API int32_t exodus_cuda_runtime_version(void) { return CUDART_VERSION; }

EXODUS_API int32_t exodus_cuda_driver_version(void) {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
    return v;
}

EXODUS_API int32_t exodus_cuda_device_count(void) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        exodus::fail(EXODUS_ERR_CUDA, "device_count", exodus::cuda_text::error_text(e));
        cudaGetLastError();  // clear the error so later calls start clean
        return -static_cast<int32_t>(e);
    }
    return n;
}

EXODUS_API const char* exodus_cuda_build_info(void) {
    static const std::string info = "cuda: toolkit " + exodus::cuda_text::version_text(CUDART_VERSION) +
                                    ", runtime linked statically, architectures " EXODUS_CUDA_ARCH_LIST;
    return info.c_str();
}

}  // extern "C"
