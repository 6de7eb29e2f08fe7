// A minimal host emulation of the CUDA execution model, so that the CUDA drivers' index
// arithmetic (grid-stride loops, 64-bit offsets, parameter broadcasting) runs and is tested on a
// machine without a GPU.  Kernels here use no shared memory and no __syncthreads, so running the
// threads of a grid one after another is a faithful emulation.
#pragma once

#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace exodus_emu {
inline thread_local dim3 blockIdx, threadIdx, blockDim, gridDim;

template <typename F>
void launch(dim3 grid, dim3 block, F&& body) {
    gridDim = grid;
    blockDim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx)
                for (unsigned tz = 0; tz < block.z; ++tz)
                    for (unsigned ty = 0; ty < block.y; ++ty)
                        for (unsigned tx = 0; tx < block.x; ++tx) {
                            blockIdx = dim3(bx, by, bz);
                            threadIdx = dim3(tx, ty, tz);
                            body();
                        }
}
}  // namespace exodus_emu

using exodus_emu::blockDim;
using exodus_emu::blockIdx;
using exodus_emu::gridDim;
using exodus_emu::threadIdx;

// The stream is host-only and meaningless here; it is marked as used so the drivers compile warning-free.
#define EXODUS_LAUNCH(kernel, grid, block, stream, ...) \
    ((void)(stream), exodus_emu::launch((grid), (block), [&] { kernel(__VA_ARGS__); }))
