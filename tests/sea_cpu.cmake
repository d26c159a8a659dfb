# The fp32 CPU reference of SEA attention (attention/sea_cpu.{h,cpp}): decode == prefill, causality, the
# budget and the expansion of sea.md §2.7-§2.8, the full-budget limit against dense attention, bad arguments.
seaopt_add_test(NAME test_sea_cpu SOURCES test_sea_cpu.cpp LABELS cpu TIMEOUT 300)
