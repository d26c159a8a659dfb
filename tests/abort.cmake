# seaopt_context_params.abort_callback on the CPU engine (the demo models).
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_abort SOURCES test_abort.cpp LABELS cpu)
  add_dependencies(test_abort tiny_model tiny_sea_model)
endif()
