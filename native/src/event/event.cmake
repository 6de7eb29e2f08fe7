# Event-driven backpropagation (Zhu et al. 2022): its own CPU library, plain C ABI
# (include/exodus/event_api.h), included by native/CMakeLists.txt when this file exists.
add_library(exodus_event SHARED ${CMAKE_CURRENT_SOURCE_DIR}/src/event/event_cpu.cpp)
target_include_directories(exodus_event PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/include)
set_target_properties(exodus_event PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
# Same strict floating point as exodus_native (no FMA contraction, no fast-math): spikes of the
# forward are threshold decisions, and the tests compare them with a float64 reference.
# -fno-trapping-math only lets GCC if-convert the reset selects inside the `omp simd` loops.
target_compile_options(exodus_event PRIVATE ${EXODUS_STRICT_FP_FLAGS} -fno-trapping-math -O3 -Wall -Wextra)
if(OpenMP_CXX_FOUND)
  target_link_libraries(exodus_event PRIVATE OpenMP::OpenMP_CXX)
else()
  target_compile_options(exodus_event PRIVATE -fopenmp-simd)
endif()
install(TARGETS exodus_event LIBRARY DESTINATION ${EXODUS_LIB_DESTINATION})
