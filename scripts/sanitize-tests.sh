#!/usr/bin/env bash
# The hostile-input tests under AddressSanitizer + UBSan (anchors E3), in a CPU-only build: the GGUF parser and the
# model loader (including ModelFileErrors.RandomMutationsLoadOrFailCleanly, the fuzz target's check over random
# mutations), the converter's readers (safetensors, zip, the restricted unpickler, SEA checkpoints), the tokenizer (with its
# check against Hugging Face: every code point, 4,000 texts), the saved sequence states (test_state: damaged, truncated and mismatched blobs) and the Q8_0 blocks (test_q8_0: the
# quantizer's refusals and the reader). Any sanitizer report fails the
# run (halt_on_error), leaks included.
#   scripts/sanitize-tests.sh [BUILD_DIR=build-asan]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-asan}
tests=(test_gguf test_api_errors test_convert test_convert_sea test_tokenizer test_tokenizer_hf test_tokenizer_added test_state test_q8_0)

cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEAOPT_CUDA=OFF -DSEAOPT_SANITIZE=ON > "$dir.configure.log" ||
  { cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j"$(nproc)" --target "${tests[@]}" seaopt-convert
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${tests[@]}"; do
  echo "== $t (AddressSanitizer + UBSan)"
  "$dir/bin/$t" --gtest_brief=1
done
echo "sanitizers: all clean"
