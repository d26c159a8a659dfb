# seaopt_decode_nll (the fused loss) on the CPU engine: equal to -log_softmax of seaopt_decode's
# logits, and bad input (targets, NULL pointers) refused with the cache unchanged. Converts the
# opt-tiny-pre fixture with the built seaopt-convert binary.
seaopt_add_test(NAME test_nll SOURCES test_nll.cpp LABELS cpu)
add_dependencies(test_nll seaopt-convert)
