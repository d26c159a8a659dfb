# GPU tests: labelled gpu; each skips with a message where no GPU (or no CUDA build) exists.
seaopt_add_test(NAME test_gpu_device SOURCES test_gpu_device.cpp LABELS gpu)
