// libFuzzer target: the model loader over arbitrary bytes (anchors E3). Built with -DSEAOPT_FUZZ=ON and clang:
//   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSEAOPT_CUDA=OFF -DSEAOPT_FUZZ=ON
//   cmake --build build-fuzz --target fuzz_model_load
//   mkdir corpus && cp tests/data/fuzz-seed/*.gguf corpus/ && build-fuzz/bin/fuzz_model_load corpus
// (docs/development.md, "Fuzzing", says how to make a seed file). Crashes, sanitizer reports and exceptions other
// than seaopt::Error are findings.
#include "tests/fuzz/model_load_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    seaopt_fuzz::load_model_bytes(data, size);
    return 0;
}
