# The CUDA SEA prefill (attention/sea_cuda.h) against the fp32 CPU reference (attention/sea_cpu.h), stage by
# stage, plus an informational timing next to the dense prefill at the OPT-1.3B shape.
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_sea SOURCES test_gpu_sea.cpp LABELS gpu)
endif()
