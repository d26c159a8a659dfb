# The CUDA SEA (attention/sea_cuda.h) against the PyTorch-reference fixtures of tests/sea (the committed small set, or
# SEAOPT_SEA_FIXTURES=<dir>), with the rules of tests/sea/README.md (read with weights-convert's safetensors reader,
# hence seaopt_convert).
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_sea_fixtures SOURCES test_gpu_sea_fixtures.cpp LIBS seaopt_convert LABELS gpu)
endif()
