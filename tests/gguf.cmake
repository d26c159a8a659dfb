# The GGUF v3 reader and writer: round trips, a byte-exact layout check against the spec, one
# handcrafted corrupt file per check the reader makes, truncation and mutation sweeps.
seaopt_add_test(NAME test_gguf SOURCES test_gguf.cpp LABELS cpu TIMEOUT 120)
