# seaopt-convert tests. Test names start with "convert." so that `ctest -R convert` selects them all.
#
#   test_convert            the readers (safetensors, zip, restricted unpickler, config.json) on valid
#                           and hostile bytes, and the HF -> GGUF tensor mapping        [cpu]
#   test_convert_e2e        checkpoint directories in every layout -> GGUF, checked byte by byte;
#                           bad checkpoints; the seaopt-convert / make-tiny binaries;
#                           seaopt-quantize (GGUF -> q8_0)                              [cpu]
#   test_convert_streaming  seaopt-convert's peak RSS on a ~280 MB checkpoint           [cpu;slow]
seaopt_add_test(NAME test_convert PREFIX "convert." SOURCES test_convert_readers.cpp test_convert_pickle.cpp
                LIBS seaopt_convert LABELS cpu TIMEOUT 300)
seaopt_add_test(NAME test_convert_e2e PREFIX "convert." SOURCES test_convert_e2e.cpp test_convert_cli.cpp test_quantize.cpp
                LIBS seaopt_convert LABELS cpu TIMEOUT 300)
add_dependencies(test_convert_e2e seaopt-convert seaopt-make-tiny-checkpoint seaopt-quantize)
seaopt_add_test(NAME test_convert_streaming PREFIX "convert." SOURCES test_convert_streaming.cpp
                LIBS seaopt_convert LABELS cpu slow TIMEOUT 120)
add_dependencies(test_convert_streaming seaopt-convert)
