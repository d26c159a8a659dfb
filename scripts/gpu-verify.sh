#!/usr/bin/env bash
# One full GPU verification run, on the GPU machine (see docs/development.md): build for sm_90,
# run the whole test suite, make transformers references at the real OPT shapes, and check the CUDA
# engine against them. Logs go to ${OUT:-/tmp/seaopt-gpu}.
#   usage: scripts/gpu-verify.sh [shapes]      (default 125m,350m,1.3b)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/seaopt-gpu}
mkdir -p "$out"
shapes=${1:-125m,350m,1.3b}
export CMAKE_PREFIX_PATH=$PWD/.carry/deps/usr LD_LIBRARY_PATH=$PWD/.carry/deps/usr/lib/x86_64-linux-gnu
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build build-gpu -j"$(nproc)" > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -30; exit 1; }
echo "build ok"

ctest --test-dir build-gpu --output-on-failure -j8 > "$out/ctest.log" 2>&1
echo "ctest rc=$?"; grep -E "tests passed|FAILED|Failed|\*\*\*" "$out/ctest.log" | head -30
for t in test_gpu_kernels test_gpu_attention test_gpu_device; do
  [ -x build-gpu/bin/$t ] && build-gpu/bin/$t > "$out/$t.log" 2>&1; echo "$t rc=$?"; grep -E "max|FAILED|Failure" "$out/$t.log" | head -40
done

ref=/tmp/seaopt-transformers-ref
PYTHONUNBUFFERED=1 python3 tests/gpu/make_transformers_reference.py --out "$ref" --shapes "$shapes" 2>&1 | grep -v -i warn | tee "$out/transformers_ref.log"
SEAOPT_TRANSFORMERS_REF=$ref build-gpu/bin/test_gpu_transformers > "$out/test_gpu_transformers.log" 2>&1
echo "test_gpu_transformers rc=$?"; grep -E "^\[ |FAILED|Failure|Expected|Which" "$out/test_gpu_transformers.log" | head -40
