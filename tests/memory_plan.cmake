# The activation memory planner (engine/memory_plan.{h,cpp}): packing, alignment, determinism,
# verification, a random stress test, and the OPT forward's buffers at OPT-1.3B / OPT-350m shapes.
seaopt_add_test(NAME test_memory_plan SOURCES test_memory_plan.cpp LABELS cpu TIMEOUT 120)
