# The row arithmetic of seaopt-perplexity --kl-divergence (tools/common/kl.{h,cpp}): KL, NLLs and
# top-1 against hand-computed values, ties as the greedy sampler, the threaded loop, percentiles.
# (The tool itself, dense vs SEA on the SEA demo model, is tested in test_perplexity.)
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_kl SOURCES test_kl.cpp LIBS seaopt_tools_common LABELS cpu)
endif()
