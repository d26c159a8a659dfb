# seaopt-perplexity as a child process: the transformers reference (fixture opt-tiny-pre, converted
# with the built seaopt-convert), an independent computation through the C API, the WikiText-2
# reconstruction counts (skipped without the shared data), --help, clean failures, --attention sea
# on the SEA demo model against the C API, and --kl-divergence (dense vs SEA) against both normal
# modes and the C API; --kl-divergence --kl-base-model (the demo model against its q8_0 copy).
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_perplexity SOURCES test_perplexity.cpp LABELS cpu TIMEOUT 300)
  add_dependencies(test_perplexity tiny_model tiny_sea_model seaopt-perplexity seaopt-convert seaopt-quantize)
endif()
