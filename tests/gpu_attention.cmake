# The CUDA dense attention kernels against the CPU reference (attention/dense_cuda.cu).
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_attention SOURCES test_gpu_attention.cpp LABELS gpu)
endif()
