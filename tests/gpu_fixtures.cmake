# The CUDA engine against the CPU engine and transformers on the committed head_dim-64 fixtures
# (tests/data/opt-hd64-*, made by tests/fixtures/make_fixtures.py). Built only in CUDA builds;
# skipped at run time where no GPU exists; fails where the fixtures are missing.
if(SEAOPT_HAVE_CUDA)
  seaopt_add_test(NAME test_gpu_fixtures SOURCES test_gpu_fixtures.cpp LABELS gpu)
  add_dependencies(test_gpu_fixtures seaopt-convert)
endif()
