# seaopt-bench as a child process on the demo model (CPU): the JSON output (the tests asked for, with
# positive throughput and the planned memory), the markdown table, and clean failures on bad flags.
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_bench SOURCES test_bench.cpp LABELS cpu)
  add_dependencies(test_bench tiny_model seaopt-bench)
endif()
