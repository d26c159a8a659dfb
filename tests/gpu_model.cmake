# The CUDA engine against transformers at the real OPT shapes (references made on the GPU machine
# by tests/gpu/make_transformers_reference.py; scripts/gpu-verify.sh runs it all).
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_transformers SOURCES test_gpu_transformers.cpp LABELS gpu)
  add_dependencies(test_gpu_transformers seaopt-convert)
endif()
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_engine SOURCES test_gpu_engine.cpp LABELS gpu)
  add_dependencies(test_gpu_engine seaopt-convert seaopt-quantize seaopt-make-tiny-checkpoint tiny_sea_model)
endif()
