# The int8 (Q8_0) weight GEMMs (engine/cuda/gemm_q8.cu) against a double-precision CPU reference. Built only in
# CUDA builds; skipped at run time where no GPU exists.
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_q8 SOURCES test_gpu_q8.cpp LABELS gpu)
endif()
