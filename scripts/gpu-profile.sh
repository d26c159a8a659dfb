#!/usr/bin/env bash
# Per-kernel GPU time of one prefill and a few decode steps, with Nsight Compute (ncu), on the GPU
# machine. It answers "where does the time of a step go" without a timeline profiler (nsys is not
# available there). Kernel times under ncu are taken one kernel at a time (serialised, caches
# flushed between kernels): use them for shares, and seaopt-bench for end-to-end figures.
#
#   usage: scripts/gpu-profile.sh MODEL.gguf [PROMPT_TOKENS [GEN_TOKENS]]
# Environment: BUILD [build-gpu], OUT [/tmp/seaopt-profile], BENCH_ARGS [none]: more seaopt-bench arguments
# (e.g. "--attention sea")
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build-gpu}
out=${OUT:-/tmp/seaopt-profile}
model=${1:?usage: scripts/gpu-profile.sh MODEL.gguf [PROMPT_TOKENS [GEN_TOKENS]]}
np=${2:-2048}
ng=${3:-8}
mkdir -p "$out"
if [ -d .carry/deps/usr/lib/x86_64-linux-gnu ]; then
  export LD_LIBRARY_PATH=$PWD/.carry/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2> /dev/null | head -n 1 || true)
[ -n "$ncu" ] || { echo "gpu-profile.sh: ncu not found" >&2; exit 1; }
# The graph-captured decode step would show as one launch: profile plain launches. GEMM autotuning
# (engine/cuda/gemm.h) is off unless SEAOPT_GEMM_AUTOTUNE is set: its timing runs, at the first call
# of each shape, would be profiled as kernels of the step (seaopt-bench -v logs its choices).
export SEAOPT_GEMM_AUTOTUNE=${SEAOPT_GEMM_AUTOTUNE:-0}
for test in "pp $np" "tg $ng"; do
  set -- $test
  if [ "$1" = pp ]; then args=(-p "$2" -n 0); else args=(-p 0 -n "$2"); fi
  SEAOPT_NO_CUDA_GRAPH=1 "$ncu" --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
    "$build/bin/seaopt-bench" -m "$model" "${args[@]}" -r 1 --no-warmup --device cuda ${BENCH_ARGS:-} > "$out/ncu-$1$2.txt" 2>&1 ||
    { tail -n 20 "$out/ncu-$1$2.txt"; exit 1; }
  # One line per kernel: invocations, mean and total time (us), sorted by total.
  python3 - "$out/ncu-$1$2.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rows = []
for block in re.split(r"\n(?=  \S.*\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\))", text):
    head = block.strip().splitlines()[0] if block.strip() else ""
    m = re.match(r"(.+?) \(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)", head)
    inv = re.search(r"Invocations\s*=?\s*(\d+)", block) or re.search(r"Invocations:\s*(\d+)", block)
    t = re.search(r"gpu__time_duration\.sum\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", block)
    if not (m and t):
        continue
    unit, mn, mx, avg = t.group(1), float(t.group(2).replace(",", "")), float(t.group(3).replace(",", "")), float(t.group(4).replace(",", ""))
    scale = {"ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "nsecond": 1e-3}.get(unit, 1.0)
    n = int(inv.group(1)) if inv else 1
    rows.append((avg * scale * n, n, avg * scale, m.group(1)[:110]))
rows.sort(reverse=True)
total = sum(r[0] for r in rows)
print(f"== {sys.argv[1]}: {total:.1f} us in {sum(r[1] for r in rows)} kernel launches")
for tot, n, avg, name in rows[:25]:
    print(f"{tot:10.1f} us {100 * tot / max(total, 1e-9):5.1f}%  {n:5d} x {avg:8.2f} us  {name}")
PY
done
