# Q8_0 block quantization (model/q8_0.h) against blocks made by numpy as llama.cpp's gguf-py makes them
# (tests/data/q8_0/make_reference.py), and its refusals.
seaopt_add_test(NAME test_q8_0 SOURCES test_q8_0.cpp LABELS cpu TIMEOUT 60)
