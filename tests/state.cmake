# Saved sequence states (seaopt_state_seq_*, engine/state.h) on the CPU engine with the demo models: a restored
# sequence continues exactly as the original, and wrong or damaged states are refused. The GPU side: test_gpu_engine.
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_state SOURCES test_state.cpp LABELS cpu TIMEOUT 300)
  add_dependencies(test_state tiny_model tiny_sea_model seaopt-convert)
endif()
