# The fused loss kernel (engine/cuda/loss.cu: log_softmax_nll) against a CPU computation in double.
# Built only in CUDA builds; skipped at run time where no GPU exists.
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_loss SOURCES test_gpu_loss.cpp LABELS gpu)
endif()
