// Launch geometry shared by the CUDA drivers (core src/cuda/kernels.cuh, sparse, event): 256-thread
// blocks, grid-stride loops over 64-bit indices, and typed loads/stores through void pointers.
// Like the drivers, compiled by nvcc or on the host after exodus/cuda_emu.h (the emulation
// libraries), so the tests exercise the same index arithmetic the GPU runs.
#pragma once

#include <algorithm>
#include <cstdint>

namespace exodus {
namespace launch {

constexpr unsigned kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;  // grid-stride beyond this

// Blocks for `total` independent work items (at least one block, at most kMaxBlocks).
inline dim3 grid_for(int64_t total) {
    const int64_t blocks = (total + kThreads - 1) / kThreads;
    return dim3(unsigned(std::min<int64_t>(std::max<int64_t>(blocks, 1), kMaxBlocks)));
}

__device__ __forceinline__ int64_t first_index() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_step() { return int64_t(blockDim.x) * gridDim.x; }

// Element i of a tensor of storage type T, in the arithmetic type A (and back).
template <typename A, typename T>
__device__ __forceinline__ A load(const void* p, int64_t i) {
    return A(static_cast<const T*>(p)[i]);
}

template <typename T, typename A>
__device__ __forceinline__ void store(void* p, int64_t i, A v) {
    static_cast<T*>(p)[i] = T(v);
}

}  // namespace launch
}  // namespace exodus
