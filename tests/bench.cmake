# seaopt-bench as a child process on the demo model (CPU): the JSON output (the tests asked for, with
# positive throughput and the planned memory), the markdown table, clean failures on bad flags, and
# --attention sea on the SEA demo model (the attention column / fields).
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_bench SOURCES test_bench.cpp LABELS cpu)
  add_dependencies(test_bench tiny_model tiny_sea_model seaopt-bench)
endif()
