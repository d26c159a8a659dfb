# The simple CUDA kernels and the cuBLASLt GEMM wrapper against their CPU references. Built only in
# CUDA builds (it calls the CUDA launchers); skipped at run time where no GPU exists.
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_kernels SOURCES test_gpu_kernels.cpp LABELS gpu)
endif()
