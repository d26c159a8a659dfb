#!/usr/bin/env bash
# One full GPU verification run, on the GPU machine (see docs/development.md): build for sm_90,
# run the whole test suite, check the tokenizer against transformers' on 100,000 random texts
# (TOKENIZER_SEED, default the time), make transformers references at the real OPT shapes, and check the CUDA
# engine against them, then WikiText-2 perplexity of seaopt-perplexity against
# scripts/ppl_transformers.py (the same GPTQ protocol) on the random OPT-125m-shape checkpoint.
# Logs go to ${OUT:-/tmp/seaopt-gpu}.
#   usage: scripts/gpu-verify.sh [shapes]      (default 125m,350m,1.3b,2.7b-4layers,6.7b-2layers,13b-2layers)
# Perplexity step (skipped without wiki.test.raw), environment (defaults in brackets):
#   WIKITEXT       directory holding wiki.test.raw [.carry/wikitext]
#   TOKENIZER      OPT vocab.json + merges.txt for transformers [.carry/tokenizer, else the checkpoint's]
#   REFERENCE_IDS  the reference WikiText-2 ids to check transformers' tokens against
#                  [.carry/reference/opt_wikitext2_test_hfjoin_ids.txt, if present]
#   PPL_CPU_CHUNKS windows for the CPU-engine (fp32) vs transformers fp32 comparison [4]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/seaopt-gpu}
mkdir -p "$out"
shapes=${1:-125m,350m,1.3b,2.7b-4layers,6.7b-2layers,13b-2layers}
export CMAKE_PREFIX_PATH=$PWD/.carry/deps/usr LD_LIBRARY_PATH=$PWD/.carry/deps/usr/lib/x86_64-linux-gnu
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build build-gpu -j"$(nproc)" > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -30; exit 1; }
echo "build ok"

ctest --test-dir build-gpu --output-on-failure -j8 > "$out/ctest.log" 2>&1
echo "ctest rc=$?"; grep -E "tests passed|FAILED|Failed|\*\*\*" "$out/ctest.log" | head -30
for t in test_gpu_kernels test_gpu_attention test_gpu_device test_gpu_fixtures; do
  [ -x build-gpu/bin/$t ] && build-gpu/bin/$t > "$out/$t.log" 2>&1; echo "$t rc=$?"; grep -E "max|FAILED|Failure" "$out/$t.log" | head -40
done

# ---- The tokenizer against transformers' own OPT tokenizer on 100,000 fresh random texts (the repository keeps 4,000):
# needs OPT's vocab.json + merges.txt in TOKENIZER [.carry/tokenizer].
tok_dir=${TOKENIZER:-.carry/tokenizer}
if [ -f "$tok_dir/vocab.json" ]; then
  seed=${TOKENIZER_SEED:-$(date +%s)}
  python3 tests/fixtures/make_tokenizer_cases.py --tokenizer "$tok_dir" --out /tmp/seaopt-tokcases --n 100000 \
    --seed "$seed" > "$out/tokenizer_cases.log" 2>&1
  SEAOPT_TOKENIZER_CASES=/tmp/seaopt-tokcases/cases.jsonl.gz build-gpu/bin/test_tokenizer_hf > "$out/test_tokenizer_hf.log" 2>&1
  echo "test_tokenizer_hf (100,000 texts, seed $seed) rc=$?"; grep -E "texts|FAILED|Failure" "$out/test_tokenizer_hf.log" | head -10
  # The same for a fine-tune's added tokens (tests/data/tokenizer-added's tokenizer, 100,000 fresh texts).
  python3 tests/fixtures/make_added_token_cases.py --tokenizer "$tok_dir" --out /tmp/seaopt-addedcases --n 100000 \
    --seed "$seed" > "$out/added_token_cases.log" 2>&1
  SEAOPT_TOKENIZER_ADDED_CASES=/tmp/seaopt-addedcases/cases.jsonl.gz build-gpu/bin/test_tokenizer_added \
    > "$out/test_tokenizer_added.log" 2>&1
  echo "test_tokenizer_added (100,000 texts, seed $seed) rc=$?"; grep -E "texts|FAILED|Failure" "$out/test_tokenizer_added.log" | head -10
else
  echo "tokenizer check: SKIPPED: $tok_dir/vocab.json not found (copy ../shared/data/opt-tokenizer/* into .carry/tokenizer/)"
fi

ref=/tmp/seaopt-transformers-ref
PYTHONUNBUFFERED=1 python3 tests/gpu/make_transformers_reference.py --out "$ref" --shapes "$shapes" 2>&1 | grep -v -i warn | tee "$out/transformers_ref.log"
SEAOPT_TRANSFORMERS_REF=$ref build-gpu/bin/test_gpu_transformers > "$out/test_gpu_transformers.log" 2>&1
echo "test_gpu_transformers rc=$?"; grep -E "^\[ |FAILED|Failure|Expected|Which" "$out/test_gpu_transformers.log" | head -40

# ---- Perplexity: seaopt-perplexity vs scripts/ppl_transformers.py, same checkpoint, same protocol.
# Acceptance: the PPLs agree to 4 significant digits, taken as |ppl_a / ppl_b - 1| < 5e-4 (FAIL
# otherwise). Pairs: seaopt CUDA (fp16) vs transformers fp32 and fp16 (all windows); seaopt CPU (fp32)
# vs transformers fp32 on the first PPL_CPU_CHUNKS windows (the protocol alone, without fp16 noise).
wiki=${WIKITEXT:-.carry/wikitext}
tok=${TOKENIZER:-.carry/tokenizer}
refids=${REFERENCE_IDS:-.carry/reference/opt_wikitext2_test_hfjoin_ids.txt}
cpu_chunks=${PPL_CPU_CHUNKS:-4}
hf=$ref/125m/hf
if [ ! -f "$wiki/wiki.test.raw" ]; then
  echo "perplexity: SKIPPED: $wiki/wiki.test.raw not found (copy ../shared/data/wikitext-2-raw/wiki.test.raw into .carry/wikitext/)"
  exit 0
fi
[ -f "$tok/vocab.json" ] || tok=$hf
if [ ! -f "$hf/config.json" ]; then
  PYTHONUNBUFFERED=1 python3 tests/gpu/make_transformers_reference.py --out "$ref" --shapes 125m 2>&1 | grep -v -i warn >> "$out/transformers_ref.log"
fi
gguf=$ref/125m/opt-125m-f16.gguf
build-gpu/bin/seaopt-convert "$hf" -o "$gguf" --outtype f16 --no-progress > "$out/ppl_convert.log" 2>&1 || { tail "$out/ppl_convert.log"; exit 1; }
build-gpu/bin/seaopt-perplexity -m "$gguf" --wikitext2-test "$wiki" --device cuda > "$out/ppl_seaopt_cuda.log" 2>&1
echo "seaopt-perplexity cuda rc=$?"
build-gpu/bin/seaopt-perplexity -m "$gguf" --wikitext2-test "$wiki" --device cpu --chunks "$cpu_chunks" > "$out/ppl_seaopt_cpu.log" 2>&1
echo "seaopt-perplexity cpu (--chunks $cpu_chunks) rc=$?"
# The first run tokenizes (and checks the ids against REFERENCE_IDS); the others reuse its ids.
pyargs=(--model "$hf" --wikitext "$wiki")
first=(--tokenizer "$tok" --save-ids "$out/ppl_hf_ids.txt")
[ -f "$refids" ] && first+=(--reference-ids "$refids")
for run in fp32:0 fp16:0 fp32:$cpu_chunks; do
  dt=${run%%:*} ch=${run##*:}
  PYTHONUNBUFFERED=1 python3 scripts/ppl_transformers.py "${pyargs[@]}" "${first[@]}" --dtype "$dt" --chunks "$ch" \
    --out "$out/ppl_hf_${dt}_c$ch.json" > "$out/ppl_hf_${dt}_c$ch.log" 2>&1
  echo "ppl_transformers $dt --chunks $ch rc=$?"; grep -E "^tokens:|WARNING|differ|equal|error|tokenized" "$out/ppl_hf_${dt}_c$ch.log" | head -5
  [ -s "$out/ppl_hf_ids.txt" ] && first=(--ids "$out/ppl_hf_ids.txt")
done
python3 - "$out" "$cpu_chunks" <<'PYEOF'
import json, math, os, re, sys
out, chunks = sys.argv[1], sys.argv[2]

def seaopt(name):
    path = os.path.join(out, name)
    text = open(path, errors="replace").read() if os.path.exists(path) else ""
    ppl = re.search(r"Final estimate: PPL = (\S+)", text)
    tokens = re.search(r"perplexity: (\d+) tokens, nsamples = (\d+)", text)
    nll = re.search(r"mean NLL ([^\s,]+)", text)
    return {"ppl": float(ppl.group(1)) if ppl else None, "n_tokens": int(tokens.group(1)) if tokens else None,
            "mean_nll": float(nll.group(1)) if nll else None}

def hf(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else {"ppl": None, "n_tokens": None, "mean_nll": None}

runs = {"seaopt-cuda": seaopt("ppl_seaopt_cuda.log"), f"seaopt-cpu[{chunks}]": seaopt("ppl_seaopt_cpu.log"),
        "transformers-fp32": hf("ppl_hf_fp32_c0.json"), "transformers-fp16": hf("ppl_hf_fp16_c0.json"),
        f"transformers-fp32[{chunks}]": hf(f"ppl_hf_fp32_c{chunks}.json")}
for k, r in runs.items():
    print(f"  {k:24s} PPL {r['ppl']!s:>22s}  mean NLL {r['mean_nll']!s:>12s}  tokens {r['n_tokens']}")
toks = {r["n_tokens"] for r in runs.values()}
fails = 0 if len(toks) == 1 and None not in toks else 1
print(("PASS" if fails == 0 else "FAIL") + f"  token counts: {sorted(toks, key=str)} (287645 expected)")
for a, b in (("seaopt-cuda", "transformers-fp32"), ("seaopt-cuda", "transformers-fp16"),
             (f"seaopt-cpu[{chunks}]", f"transformers-fp32[{chunks}]"), ("transformers-fp16", "transformers-fp32")):
    pa, pb = runs[a]["ppl"], runs[b]["ppl"]
    if pa is None or pb is None or not (math.isfinite(pa) and math.isfinite(pb)):
        print(f"FAIL  {a} vs {b}: no finite PPL ({pa} / {pb})"); fails += 1; continue
    rel = abs(pa / pb - 1)
    ok = rel < 5e-4
    info = a.startswith("transformers")  # transformers fp16 vs fp32: information only
    fails += not ok and not info
    print(f"{('info' if info else 'PASS') if ok or info else 'FAIL'}  {a} {pa:.6g} vs {b} {pb:.6g}: relative difference {rel:.2e} "
          f"(4 significant digits: {pa:.4g} vs {pb:.4g}; bound 5e-4)")
print("perplexity agreement: " + ("PASS" if fails == 0 else f"FAIL ({fails})"))
PYEOF
