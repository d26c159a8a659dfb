# seaopt_bench_attention_layer without a GPU: the parameter checks and clear refusals on the demo models loaded on
# the CPU, and the benchmark's random data. The runs on a GPU are test_gpu_attention_bench (gpu_attention_bench.cmake).
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_attention_bench SOURCES test_attention_bench.cpp LABELS cpu)
  add_dependencies(test_attention_bench tiny_model tiny_sea_model)
endif()
