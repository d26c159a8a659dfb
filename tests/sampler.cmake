# The sampler (engine/sampler.cpp) through the C API: greedy, repetition penalty, temperature,
# top-k, top-p against hand-computed values and distributions, seeding, and bad parameters.
seaopt_add_test(NAME test_sampler SOURCES test_sampler.cpp LABELS cpu)
