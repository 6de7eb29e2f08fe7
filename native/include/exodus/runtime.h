/* What every native library of the package shares (docs/architecture.md §2): the export macro, the one ABI
 * version, the one family of error codes, the instruction-set tags of the CPU library, and the
 * library-level entry points.  There is one library per device, each exporting the operations of
 * every algorithm (c_api.h: LIF and leaky; sparse_api.h: sparse spiking gradient descent;
 * event_api.h: event-driven backpropagation) under its own symbol prefix:
 *   libexodus_native          CPU             exodus_*          (exodus_sparse_*, exodus_event_*)
 *   libexodus_native_cuda     CUDA            exodus_cuda_*     (exodus_sparse_cuda_*, exodus_event_cuda_*)
 *   libexodus_cuda_emulation  CUDA drivers compiled for the host, for the tests
 *                                             exodus_emu_*      (exodus_sparse_emu_*, exodus_event_emu_*)
 * Every operation returns EXODUS_OK or one of the EXODUS_ERR_* codes; the message of the calling
 * thread's last failure, whatever the algorithm, is the library's one last_error(). */
#pragma once

#include <stdint.h>

#if defined(_WIN32)
#define EXODUS_API __declspec(dllexport)
#else
#define EXODUS_API __attribute__((visibility("default")))
#endif

/* One version for the whole ABI (every struct and entry point of every library).  History: core
 * 2 (exodus_lif_forward_args.nonfinite), sparse 5, event 2 when they were separate libraries;
 * 6: one library per device, one last_error / abi_version / build_info per library, the CPU
 * library's one instruction-set selection (exodus_isa*, $EXODUS_ISA); 7: sparse_backward_plan (the
 * library chooses the sparse input-gradient path and sizes its workspaces); 8: the streaming-store
 * threshold (exodus_stream_threshold, exodus_set_stream_threshold). */
#define EXODUS_ABI_VERSION 8

enum { EXODUS_OK = 0, EXODUS_ERR_ARGUMENT = 1, EXODUS_ERR_DTYPE = 2, EXODUS_ERR_CUDA = 3,
       EXODUS_ERR_INTERNAL = 4 };

/* The copies of the CPU library's kernels: the same source compiled for each instruction set; they
 * give the same bits (no FMA contraction, sums over a fixed lane layout). */
enum { EXODUS_ISA_BASELINE = 0, EXODUS_ISA_AVX2 = 1, EXODUS_ISA_AVX512 = 2 };

#ifdef __cplusplus
extern "C" {
#endif

/* CPU library */
EXODUS_API int32_t exodus_abi_version(void);
EXODUS_API const char* exodus_last_error(void);
/* toolchain, OpenMP and the kernel copies: "cpu: C++17, OpenMP 201511, isa baseline+avx2+avx512 (using avx2)" */
EXODUS_API const char* exodus_build_info(void);
/* The copy in use: the best the CPU and the build have, or $EXODUS_ISA (baseline, avx2, avx512) when
 * set and available.  isa_available(i) is 1 when this CPU and build have copy i; set_isa(-1) restores
 * the best and returns non-zero (last_error says why) for a copy this CPU or build lacks.  Not safe
 * against calls running at the same time (they may use either copy). */
EXODUS_API int32_t exodus_isa(void);
EXODUS_API int32_t exodus_isa_available(int32_t isa);
EXODUS_API int32_t exodus_set_isa(int32_t isa);
/* The scans write their outputs with streaming (non-temporal) stores when a call writes more than
 * this many bytes (default: the last-level cache's size); set_stream_threshold(-1) restores the
 * default, 0 streams every 64-byte-aligned output.  Results are the same either way. */
EXODUS_API int64_t exodus_stream_threshold(void);
EXODUS_API int32_t exodus_set_stream_threshold(int64_t bytes);

/* CUDA library */
EXODUS_API int32_t exodus_cuda_abi_version(void);
EXODUS_API const char* exodus_cuda_last_error(void);
EXODUS_API const char* exodus_cuda_build_info(void);  /* toolkit and architectures */
EXODUS_API int32_t exodus_cuda_runtime_version(void);
EXODUS_API int32_t exodus_cuda_driver_version(void);
EXODUS_API int32_t exodus_cuda_device_count(void);    /* < 0: -(CUDA error), text in last_error */

/* host emulation of the CUDA drivers (tests) */
EXODUS_API int32_t exodus_emu_abi_version(void);
EXODUS_API const char* exodus_emu_last_error(void);
EXODUS_API const char* exodus_emu_build_info(void);

#ifdef __cplusplus
}
#endif
