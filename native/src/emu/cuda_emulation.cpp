// The core CUDA drivers of ../cuda compiled for the host through the emulation shim, exported as
// exodus_emu_* so that the tests can run the GPU code path's indexing and arithmetic on a CPU.
// float32 and float64 only (the half types need a GPU and are tested there).
#include "exodus/cuda_emu.h"

#include "run_on_device.h"
#include "../cuda/kernels.cuh"
#include "../cuda/common_host.inc"

#define EXODUS_CUDA_FN(name) exodus_emu_##name
#include "../cuda/entry_points.inc"
