# seaopt_bench_attention_layer and seaopt-bench --attention-layer on a GPU, on the SEA demo model (the layer targets
# of issue 4 are measured with the tool on OPT-1.3B; this checks that the benchmark runs and reports sanely).
if(SEAOPT_HAVE_CUDA AND SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_gpu_attention_bench SOURCES test_gpu_attention_bench.cpp LABELS gpu)
  add_dependencies(test_gpu_attention_bench tiny_sea_model seaopt-bench)
endif()
