# seaopt_context_memory_estimate on the CPU engine (the demo models): the planned report equals the made context's,
# the same refusals, nothing allocated.
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_context_memory SOURCES test_context_memory.cpp LABELS cpu)
  add_dependencies(test_context_memory tiny_model tiny_sea_model)
endif()
