# Sparse spiking gradient descent (S3GD): its own CPU library, libexodus_sparse, with the same
# plain C ABI conventions and strict floating-point flags as exodus_native (ARCHITECTURE §2).
# Included by native/CMakeLists.txt when this file exists.
add_library(exodus_sparse SHARED src/sparse/sparse_cpu.cpp)
target_include_directories(exodus_sparse PRIVATE include src/sparse)
# Same flags as exodus_native: no FMA contraction / fast-math (the forward spikes must equal the
# PyTorch reference bit for bit); -fno-trapping-math only lets GCC if-convert the compare-and-select
# of the neuron so the `omp simd` loops vectorise — it changes no rounding.
target_compile_options(exodus_sparse PRIVATE ${EXODUS_STRICT_FP_FLAGS} -fno-trapping-math -O3 -Wall -Wextra)
# The weight-gradient rows and the input gradient's dot products run at twice the vector width.
exodus_add_avx2_copy(exodus_sparse src/sparse/sparse_cpu_avx2.cpp EXODUS_SPARSE_HAVE_AVX2)
# ... and at four times.
exodus_add_avx512_copy(exodus_sparse src/sparse/sparse_cpu_avx512.cpp EXODUS_SPARSE_HAVE_AVX512)
exodus_use_openmp(exodus_sparse)
install(TARGETS exodus_sparse LIBRARY DESTINATION ${EXODUS_LIB_DESTINATION})

# ---------------------------------------------------------------- CUDA drivers
# The CUDA drivers of sparse_kernels.cuh compiled for the host (exodus_sparse_emu_*, always built:
# the tests run them against the CPU library on machines without a GPU) ...
add_library(exodus_sparse_emulation SHARED src/sparse/sparse_emulation.cpp)
target_include_directories(exodus_sparse_emulation PRIVATE include)
target_compile_options(exodus_sparse_emulation PRIVATE ${EXODUS_STRICT_FP_FLAGS} -O2 -Wall -Wextra)
install(TARGETS exodus_sparse_emulation LIBRARY DESTINATION ${EXODUS_LIB_DESTINATION})

# ... and for the GPU (exodus_sparse_cuda_*), with the core CUDA library's architectures and
# flags (this file is included after the core's CUDA section): --fmad=false keeps the forward's
# spikes and active sets equal to the CPU's bit for bit; the CUDA runtime is linked statically.
# float32 and float64 only and ten small kernels: a small share of the CI's compile time.
if(EXODUS_CUDA_BUILT)
  exodus_add_cuda_library(exodus_sparse_cuda ${CMAKE_CURRENT_SOURCE_DIR}/src/sparse/sparse_cuda.cu)
endif()
