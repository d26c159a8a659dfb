# seaopt-generate and seaopt-tokenize run as child processes on the demo model: output, determinism,
# the perf summary, clean failures (exit 1 with an "error:" line) on bad input, and --attention sea on
# the SEA demo model.
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_tools SOURCES test_tools.cpp LABELS cpu)
  add_dependencies(test_tools tiny_model tiny_sea_model seaopt-generate seaopt-tokenize)
endif()
