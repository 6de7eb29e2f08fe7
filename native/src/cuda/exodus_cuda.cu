// The core CUDA drivers (LIF, leaky) of the CUDA library: the kernels of kernels.cuh instantiated
// for float32, float64, float16 and bfloat16 (half types keep float32 state), launched on the
// caller's stream of the tensor's own device, every launch checked (run_on_device.cuh).
#define EXODUS_LAUNCH(kernel, grid, block, stream, ...) kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#include "run_on_device.cuh"
#include "kernels.cuh"
#include "common_host.inc"

#define EXODUS_CUDA_FN(name) exodus_cuda_##name
#include "entry_points.inc"
