# libFuzzer target of the model loader (anchors E3; tests/fuzz/): clang only, -DSEAOPT_FUZZ=ON (which also builds
# the library with coverage instrumentation, AddressSanitizer and UBSan). Not part of ctest: run it by hand
# (docs/development.md, "Fuzzing"). Its check also runs in ctest as ModelFileErrors.RandomMutationsLoadOrFailCleanly.
if(SEAOPT_FUZZ)
  add_executable(fuzz_model_load fuzz/fuzz_model_load.cpp)
  target_include_directories(fuzz_model_load PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_options(fuzz_model_load PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_model_load PRIVATE seaopt)
endif()
