# Event-driven backpropagation (Zhu et al. 2022): its own CPU library, CUDA library and emulation of
# the CUDA drivers, plain C ABI (include/exodus/event_api.h), included by native/CMakeLists.txt
# when this file exists.
add_library(exodus_event SHARED ${CMAKE_CURRENT_SOURCE_DIR}/src/event/event_cpu.cpp)
target_include_directories(exodus_event PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/include)
set_target_properties(exodus_event PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
# Same strict floating point as exodus_native (no FMA contraction, no fast-math): spikes of the
# forward are threshold decisions, and the tests compare them with a float64 reference.
# -fno-trapping-math only lets GCC if-convert the reset selects inside the `omp simd` loops.
target_compile_options(exodus_event PRIVATE ${EXODUS_STRICT_FP_FLAGS} -fno-trapping-math -O3 -Wall -Wextra)
exodus_use_openmp(exodus_event)
install(TARGETS exodus_event LIBRARY DESTINATION ${EXODUS_LIB_DESTINATION})

# The CUDA drivers of src/event/event_kernels.cuh compiled for the host (exodus_event_emu_*), so that
# the tests run the GPU code path on a CPU; always built, like exodus_cuda_emulation.
add_library(exodus_event_emulation SHARED ${CMAKE_CURRENT_SOURCE_DIR}/src/event/event_emulation.cpp)
target_include_directories(exodus_event_emulation PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/include)
set_target_properties(exodus_event_emulation PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
target_compile_options(exodus_event_emulation PRIVATE ${EXODUS_STRICT_FP_FLAGS} -O2 -Wall -Wextra)
install(TARGETS exodus_event_emulation LIBRARY DESTINATION ${EXODUS_LIB_DESTINATION})

# The CUDA library, with the core CUDA library's toolkit, architectures and flags (CUDA was enabled
# by native/CMakeLists.txt before this file is included). Two kernels per dtype: compile time stays
# small next to libexodus_native_cuda's even with every CUDA 13 architecture.
if(EXODUS_CUDA_BUILT)
  exodus_add_cuda_library(exodus_event_cuda ${CMAKE_CURRENT_SOURCE_DIR}/src/event/event_cuda.cu)
endif()
