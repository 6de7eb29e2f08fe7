# Sparse spiking gradient descent (S3GD): its own CPU library, libexodus_sparse, with the same
# plain C ABI conventions and strict floating-point flags as exodus_native (ARCHITECTURE §2).
# Included by native/CMakeLists.txt when this file exists.  CPU only for now (no CUDA kernels).
add_library(exodus_sparse SHARED src/sparse/sparse_cpu.cpp)
target_include_directories(exodus_sparse PRIVATE include)
# Same flags as exodus_native: no FMA contraction / fast-math (the forward spikes must equal the
# PyTorch reference bit for bit); -fno-trapping-math only lets GCC if-convert the compare-and-select
# of the neuron so the `omp simd` loops vectorise — it changes no rounding.
target_compile_options(exodus_sparse PRIVATE ${EXODUS_STRICT_FP_FLAGS} -fno-trapping-math -O3 -Wall -Wextra)
if(OpenMP_CXX_FOUND)
  target_link_libraries(exodus_sparse PRIVATE OpenMP::OpenMP_CXX)
else()
  target_compile_options(exodus_sparse PRIVATE -fopenmp-simd)
endif()
install(TARGETS exodus_sparse LIBRARY DESTINATION ${EXODUS_LIB_DESTINATION})
