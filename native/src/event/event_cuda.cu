// The event-driven backpropagation drivers of the CUDA library: the kernels of event_kernels.cuh
// instantiated for float32, float64, float16 and bfloat16 (half types keep float32 state), launched
// on the caller's stream of the tensor's own device, every launch checked (run_on_device.cuh).
#define EXODUS_LAUNCH(kernel, grid, block, stream, ...) kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#include "../cuda/run_on_device.cuh"
#include "event_kernels.cuh"
#include "event_host.inc"

#define EXODUS_EVENT_CUDA_FN(name) exodus_event_cuda_##name
#include "event_entry_points.inc"
