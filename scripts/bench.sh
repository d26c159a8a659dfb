#!/usr/bin/env bash
# seaopt against Hugging Face transformers (eager and sdpa attention) on one GPU, in one run, on the
# GPU machine (see docs/development.md): seaopt-bench and scripts/bench_transformers.py run the same
# tests one after the other, then a markdown table shows both with the ratios. seaopt's generation runs both
# ways (--tg-api decode,generate: a seaopt_decode and a greedy pick per token, and one seaopt_generate_greedy
# call); both rows are compared with transformers' tgN (its generate(), greedy).
#
#   usage: scripts/bench.sh [MODEL.gguf]
#
# Without MODEL, an OPT checkpoint of the SHAPE (random weights, fp16) is made with
# tests/gpu/make_transformers_reference.py and converted with seaopt-convert (kept in WORK and reused).
# Environment (defaults in brackets):
#   BUILD    the CUDA build of seaopt [build-gpu]       OUT   results: *.json, *.log, bench.md [/tmp/seaopt-bench]
#   WORK     the made checkpoint and GGUF [/tmp/seaopt-bench-work]
#   SHAPE    125m | 350m | 1.3b: the transformers model, and the made GGUF [1.3b]
#   PROMPTS  ppN sizes [512,2048]   GENS  tgN lengths [128]   REPS  timed runs per test [5]
#   IMPLS    transformers attn_implementation values [eager,sdpa]
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bench.sh: error: $*" >&2; exit 1; }
say() { echo "bench.sh: $*" >&2; }

build=${BUILD:-build-gpu}
out=${OUT:-/tmp/seaopt-bench}
work=${WORK:-/tmp/seaopt-bench-work}
shape=${SHAPE:-1.3b}
prompts=${PROMPTS:-512,2048}
gens=${GENS:-128}
reps=${REPS:-5}
impls=${IMPLS:-eager,sdpa}
model=${1:-}
[ $# -le 1 ] || die "usage: scripts/bench.sh [MODEL.gguf] (settings through the environment, see the header)"
case $shape in 125m|350m|1.3b) ;; *) die "SHAPE must be 125m, 350m or 1.3b, got '$shape'" ;; esac

# The Debian libraries carried to the GPU machine (scripts/pack-gpu-deps.sh), if present.
if [ -d .carry/deps/usr/lib/x86_64-linux-gnu ]; then
  export LD_LIBRARY_PATH=$PWD/.carry/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

command -v nvidia-smi > /dev/null || die "nvidia-smi not found: run this on the GPU machine"
command -v python3 > /dev/null || die "python3 not found"
for tool in seaopt-bench seaopt-convert; do
  [ -x "$build/bin/$tool" ] || die "$build/bin/$tool not found: build seaopt with CUDA first:
  export CMAKE_PREFIX_PATH=\$PWD/.carry/deps/usr LD_LIBRARY_PATH=\$PWD/.carry/deps/usr/lib/x86_64-linux-gnu
  cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a && cmake --build $build -j\"\$(nproc)\""
done
python3 -c "import torch, transformers" 2> /dev/null || die "python3 cannot import torch and transformers"
mkdir -p "$out" "$work"

gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)
say "GPU: $gpu"
nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu --format=csv > "$out/nvidia-smi-before.txt"

# The model.
if [ -z "$model" ]; then
  model=$work/opt-$shape-f16.gguf
  if [ -s "$model" ]; then
    say "reusing $model"
  else
    say "making an OPT-$shape checkpoint with random weights in $work/ref (a minute or two) ..."
    python3 tests/gpu/make_transformers_reference.py --shapes "$shape" --out "$work/ref" > "$out/make_checkpoint.log" 2>&1 ||
      { tail -n 30 "$out/make_checkpoint.log" >&2; die "tests/gpu/make_transformers_reference.py failed (log: $out/make_checkpoint.log)"; }
    "$build/bin/seaopt-convert" "$work/ref/$shape/hf" -o "$model.tmp" --outtype f16 --no-progress > "$out/convert.log" 2>&1 ||
      { tail -n 30 "$out/convert.log" >&2; die "seaopt-convert failed (log: $out/convert.log)"; }
    mv "$model.tmp" "$model"
  fi
fi
[ -f "$model" ] || die "model file '$model' not found"

# seaopt.
say "seaopt-bench -m $model -p $prompts -n $gens -r $reps (--device cuda) ..."
"$build/bin/seaopt-bench" -m "$model" -p "$prompts" -n "$gens" -r "$reps" -o json --device cuda --tg-api decode,generate \
  > "$out/seaopt.json" 2> "$out/seaopt.log" ||
  { tail -n 30 "$out/seaopt.log" >&2; die "seaopt-bench failed (log: $out/seaopt.log)"; }

# transformers, eager and sdpa, in one process after seaopt's has ended.
say "bench_transformers.py --shape $shape --impl $impls -p $prompts -n $gens -r $reps ..."
PYTHONUNBUFFERED=1 python3 scripts/bench_transformers.py --shape "$shape" --impl "$impls" -p "$prompts" -n "$gens" \
  -r "$reps" --out "$out/transformers.json" 2> "$out/transformers.log" ||
  { grep -v -i warn "$out/transformers.log" | tail -n 30 >&2; die "bench_transformers.py failed (log: $out/transformers.log)"; }

# The table.
python3 - "$out/seaopt.json" "$out/transformers.json" "$gpu" "$out/bench.json" > "$out/bench.md" <<'EOF' ||
import json, sys

seaopt_path, hf_path, gpu, combined_path = sys.argv[1:5]
seaopt = json.load(open(seaopt_path))
hf = json.load(open(hf_path))
json.dump({"gpu": gpu, "seaopt": seaopt, "transformers": hf}, open(combined_path, "w"), indent=1)

def mib(b):
    return f"{b / 2**20:,.1f} MiB" if b is not None else "–"

def ts(r):
    return f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}" if r else "–"

def ms(r):
    return f"{r['avg_ms']:.2f}" if r else "–"

tests = [r["test"] for r in seaopt] + [r["test"] for r in hf if r["test"] not in [s["test"] for s in seaopt]]
backends = []
for r in hf:
    if r["backend"] not in backends:
        backends.append(r["backend"])
get = lambda rows, backend, test: next((r for r in rows if r["test"] == test and (backend is None or r["backend"] == backend)), None)
# seaopt's "tgN generate" (one seaopt_generate_greedy call) is compared with the same greedy generation in transformers.
hf_test = lambda t: t.replace(" generate", "")
names = {b: b.replace("transformers-", "") for b in backends}

s0, h0 = seaopt[0], hf[0]
print(f"## seaopt vs Hugging Face transformers on {gpu}")
print()
print(f"- seaopt: `{s0['model']}` ({s0['n_params']:,} params, {s0['model_filename']}), backend {s0['backend']}; {s0['build_info']}"
      + (f"; on {s0['device_info']}" if s0.get("device_info") else ""))
print(f"- transformers {h0['transformers_version']}, torch {h0['torch_version']}: `{h0['model']}` ({h0['n_params']:,} params), "
      f"{h0['dtype']}, ppN logits: {h0['logits']}, attention: {', '.join(names.values())}")
if s0["n_params"] != h0["n_params"]:
    print(f"- **warning: the models differ in size ({s0['n_params']:,} vs {h0['n_params']:,} params): the ratios compare different models**")
print(f"- {s0['reps']} timed runs per test after one warm-up run; t/s = mean ± sample std over the runs; ms = mean time of one run; "
      "ratio = seaopt t/s / transformers t/s (> 1: seaopt is faster)")
print()
head = ["test", "seaopt t/s", "seaopt ms"]
for b in backends:
    head += [f"{names[b]} t/s", f"{names[b]} ms"]
head += [f"seaopt/{names[b]}" for b in backends]
print("| " + " | ".join(head) + " |")
print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
for t in tests:
    s = get(seaopt, None, t)
    row = [t, ts(s), ms(s)]
    for b in backends:
        h = get(hf, b, hf_test(t))
        row += [ts(h), ms(h)]
    for b in backends:
        h = get(hf, b, hf_test(t))
        row.append(f"{s['avg_ts'] / h['avg_ts']:.2f}×" if s and h and h["avg_ts"] else "–")
    print("| " + " | ".join(row) + " |")

print()
print("Memory beyond the weights. seaopt: planned KV cache + activation arena + workspace of the test's context "
      "(n_ctx positions, batches of the test's size); transformers: peak allocated during the test − weights. "
      "device used: GPU memory in use by all processes after the test (cudaMemGetInfo), CUDA context and "
      "PyTorch's cached blocks included.")
print()
head = ["test", "seaopt extra (planned)", "seaopt device used"]
for b in backends:
    head += [f"{names[b]} peak extra", f"{names[b]} device used"]
print("| " + " | ".join(head) + " |")
print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
for t in tests:
    s = get(seaopt, None, t)
    row = [t, mib(s["planned_bytes"] - s["weights_bytes"]) if s else "–", mib(s["device_used_bytes"]) if s else "–"]
    for b in backends:
        h = get(hf, b, hf_test(t))
        row += [mib(h["peak_extra_bytes"]) if h else "–", mib(h["device_used_bytes"]) if h else "–"]
    print("| " + " | ".join(row) + " |")
print()
print(f"Weights: seaopt {mib(s0['weights_bytes'])}, transformers {mib(h0['weights_bytes'])}.")
EOF
  die "could not make the table from $out/seaopt.json and $out/transformers.json"

nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu --format=csv > "$out/nvidia-smi-after.txt"
cat "$out/bench.md"
say "results in $out (bench.md, bench.json, seaopt.json, transformers.json, logs)"
