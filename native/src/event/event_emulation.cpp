// The event CUDA drivers (event_kernels.cuh) compiled for the host through the emulation shim,
// exported as exodus_event_emu_*, so that the tests run the GPU code path's indexing and
// arithmetic on a CPU. float32 and float64 only (the half types need a GPU and are tested there).
#include "exodus/cuda_emu.h"

#include "../emu/run_on_device.h"
#include "event_kernels.cuh"
#include "event_host.inc"

#define EXODUS_EVENT_CUDA_FN(name) exodus_event_emu_##name
#include "event_entry_points.inc"
