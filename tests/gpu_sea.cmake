# The CUDA SEA prefill (attention/sea_cuda.h) against the fp32 CPU reference (attention/sea_cpu.h), stage by
# stage, plus an informational timing next to the dense prefill at the OPT-1.3B shape.
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_sea SOURCES test_gpu_sea.cpp LABELS gpu)
endif()

# A micro-benchmark of one SEA decode call, plain and in a CUDA graph (not a test: docs/development.md).
if(SEAOPT_HAVE_CUDA)
  add_executable(bench_gpu_sea_decode bench_gpu_sea_decode.cpp)
  target_include_directories(bench_gpu_sea_decode PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/tests)
  target_compile_options(bench_gpu_sea_decode PRIVATE -Wall -Wextra)
  target_link_libraries(bench_gpu_sea_decode PRIVATE seaopt)
endif()
