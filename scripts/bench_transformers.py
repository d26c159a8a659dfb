#!/usr/bin/env python3
"""Hugging Face transformers' throughput on the tests of seaopt-bench: the baseline to compare with.

Run on the GPU machine (torch + transformers, no hub access: the model is built from a config with
random weights, which do not change the timings):

    python3 scripts/bench_transformers.py [--shape 1.3b] [--impl eager,sdpa] [-p 512,2048] [-n 128] [-r 5]
                                          [--out FILE]

For each attention implementation (`attn_implementation` eager / sdpa) it builds OPTForCausalLM at
the chosen shape (default OPT-1.3B: hidden 2048, 32 heads, 24 layers, ffn 8192, vocab 50272, 2048
positions, ReLU, pre-LN) in fp16 on the GPU and runs, as seaopt-bench does:
  ppN  one forward of N tokens (BOS, then the same fixed pseudo-random ids in [4, 50260) as
       seaopt-bench), use_cache=False, logits for the last token only (logits_to_keep=1, as
       seaopt-bench asks; --all-logits computes all N rows); torch.cuda.synchronize() before and after;
  tgN  greedy decoding with transformers' KV cache: a forward of BOS (not timed), then N steps, each a
       forward of the last token with past_key_values and the argmax of its logits (kept on the GPU,
       no host sync per step: transformers' best case); the time of the N steps;
one untimed warm-up run of each test (unless --no-warmup), then -r timed runs; tokens/s is the mean
over the runs of N / seconds +/- the sample standard deviation.
Memory: weights_bytes = torch.cuda.memory_allocated() after loading; for each test, peak_extra_bytes
= torch.cuda.max_memory_allocated() over the timed runs - weights_bytes (pp2048: the extra memory of a
2048-token prefill beyond the weights); device_used_bytes = cudaMemGetInfo total - free after the
test (every process, CUDA context and PyTorch's cached blocks included), as seaopt-bench reports it.

Output: a JSON array, one object per (implementation, test), with seaopt-bench's field names where
they apply (backend "transformers-eager" / "transformers-sdpa"), to stdout or --out FILE; progress
and a summary go to stderr.
"""
import argparse
import datetime
import gc
import inspect
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import OPTConfig, OPTForCausalLM

# The OPT family's shapes (as tests/gpu/make_transformers_reference.py).
SHAPES = {
    "125m": dict(hidden_size=768, num_attention_heads=12, num_hidden_layers=12, ffn_dim=3072,
                 word_embed_proj_dim=768, do_layer_norm_before=True),
    "350m": dict(hidden_size=1024, num_attention_heads=16, num_hidden_layers=24, ffn_dim=4096,
                 word_embed_proj_dim=512, do_layer_norm_before=False),
    "1.3b": dict(hidden_size=2048, num_attention_heads=32, num_hidden_layers=24, ffn_dim=8192,
                 word_embed_proj_dim=2048, do_layer_norm_before=True),
}
VOCAB, MAX_POS, BOS = 50272, 2048, 2
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def log(msg):
    print(f"bench_transformers: {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"bench_transformers: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def parse_sizes(text, flag):
    """'512,2048' -> [512, 2048]; 0 means no test, duplicates are dropped (as seaopt-bench)."""
    out = []
    for item in text.split(","):
        if not item.isdigit() or len(item) > 9:
            die(f"{flag} takes a comma-separated list of non-negative integers (0 = none), got '{text}'")
        v = int(item)
        if v > 0 and v not in out:
            out.append(v)
    return out


def bench_tokens(n, bos=BOS, n_vocab=VOCAB):
    """seaopt-bench's token ids: BOS, then splitmix64 draws in [4, min(50260, n_vocab))."""
    mask = (1 << 64) - 1
    lo, hi = (4 if n_vocab > 4 else 0), min(50260, n_vocab)
    state, ids = 0x5EA0F7BE4C4, []
    for i in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        ids.append(bos if i == 0 else lo + z % (hi - lo))
    return ids


def build(shape, impl, device, dtype, seed):
    cfg = OPTConfig(vocab_size=VOCAB, max_position_embeddings=MAX_POS, activation_function="relu",
                    dropout=0.0, attention_dropout=0.0, layerdrop=0.0, pad_token_id=1, bos_token_id=BOS,
                    eos_token_id=2, tie_word_embeddings=True, enable_bias=True,
                    layer_norm_elementwise_affine=True, **SHAPES[shape])
    cfg._attn_implementation = impl
    torch.manual_seed(seed)
    with torch.device(device):
        model = OPTForCausalLM(cfg)
    model = model.to(dtype).eval()
    # Plain OPT-style values whatever transformers' init does (the timings do not depend on them, but
    # no inf/NaN should reach the kernels): N(0, 0.02) matrices, unit LayerNorm scales, zero biases.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
    got = model.config._attn_implementation
    if got != impl and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
        got = model.config._attn_implementation
    if got != impl:
        die(f"asked transformers for attn_implementation={impl!r}, the model uses {got!r}")
    return model


class Timer:
    def __init__(self, device):
        self.cuda = device.startswith("cuda")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def __enter__(self):
        self.sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.sync()
        self.seconds = time.perf_counter() - self.t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.3b", help="OPT shape (default 1.3b)")
    ap.add_argument("--impl", default="eager,sdpa", help="attn_implementation values, comma-separated")
    ap.add_argument("-p", "--n-prompt", default="512,2048", help="prompt sizes, comma-separated (0 = none)")
    ap.add_argument("-n", "--n-gen", default="128", help="generation lengths, comma-separated (0 = none)")
    ap.add_argument("-r", "--repetitions", type=int, default=5, help="timed runs of each test")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run of each test")
    ap.add_argument("--all-logits", action="store_true", help="ppN computes the logits of all N tokens")
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    ap.add_argument("--seed", type=int, default=1000, help="seed of the random weights")
    ap.add_argument("--out", help="write the JSON here instead of stdout")
    args = ap.parse_args()

    prompts = parse_sizes(args.n_prompt, "-p/--n-prompt")
    gens = parse_sizes(args.n_gen, "-n/--n-gen")
    impls = [s for s in args.impl.split(",") if s]
    if args.repetitions < 1:
        die(f"-r/--repetitions must be >= 1, got {args.repetitions}")
    if not prompts and not gens:
        die("nothing to run: -p and -n are both 0")
    if not impls or any(s not in ("eager", "sdpa", "flash_attention_2") for s in impls):
        die(f"--impl takes eager, sdpa (or flash_attention_2), comma-separated; got '{args.impl}'")
    for n in prompts:
        if n > MAX_POS:
            die(f"pp{n} needs {n} positions, more than OPT's {MAX_POS}")
    for n in gens:
        if n + 1 > MAX_POS:
            die(f"tg{n} needs {n + 1} positions (BOS + {n} generated), more than OPT's {MAX_POS}")
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        die("no CUDA device is usable by torch (use --device cpu --dtype float32 for a smoke test)")
    if cuda and torch.device(args.device).index is not None:
        torch.cuda.set_device(torch.device(args.device))  # the memory counters read the current device
    dtype = DTYPES[args.dtype]
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if cuda else "cpu"
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device {args.device} ({gpu}), "
        f"OPT-{args.shape} shape, {args.dtype}, implementations {', '.join(impls)}")

    ids_all = bench_tokens(max(prompts, default=1))
    results = []
    for impl in impls:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        t_build = time.perf_counter()
        model = build(args.shape, impl, args.device, dtype, args.seed)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        weights_bytes = torch.cuda.memory_allocated() if cuda else 0
        n_params = sum(p.numel() for p in model.parameters())
        sig = inspect.signature(model.forward).parameters
        last_only = not args.all_logits and "logits_to_keep" in sig
        if not args.all_logits and not last_only:
            log("this transformers has no logits_to_keep: ppN computes the logits of all N tokens")
        keep = {"logits_to_keep": 1} if last_only else {}
        log(f"{impl}: built OPT-{args.shape} ({n_params} params, weights {weights_bytes / 2**30:.2f} GiB) "
            f"in {time.perf_counter() - t_build:.1f} s")

        def pp(n):
            x = torch.tensor([ids_all[:n]], device=args.device)
            with Timer(args.device) as t:
                out = model(input_ids=x, use_cache=False, **keep)
            assert out.logits.shape[-1] == VOCAB
            return t.seconds

        def tg(n):
            out = model(input_ids=torch.tensor([[BOS]], device=args.device), use_cache=True, **keep)
            past = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
            with Timer(args.device) as t:
                for _ in range(n):
                    out = model(input_ids=tok, past_key_values=past, use_cache=True, **keep)
                    past = out.past_key_values
                    tok = out.logits[:, -1:].argmax(-1)
            return t.seconds

        tests = [(f"pp{n}", n, 0, pp) for n in prompts] + [(f"tg{n}", 0, n, tg) for n in gens]
        with torch.inference_mode():
            for name, n_prompt, n_gen, fn in tests:
                n = n_prompt or n_gen
                if not args.no_warmup:
                    fn(n)
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                secs = [max(fn(n), 1e-9) for _ in range(args.repetitions)]
                peak = torch.cuda.max_memory_allocated() if cuda else 0
                if cuda:
                    free, total = torch.cuda.mem_get_info()
                    device_used = total - free
                else:
                    device_used = 0
                samples_ts = [n / s for s in secs]
                r = {
                    "model": f"opt {args.shape} {args.dtype} (random weights)",
                    "n_params": n_params,
                    "backend": f"transformers-{impl}",
                    "attn_implementation": impl,
                    "torch_version": torch.__version__,
                    "transformers_version": transformers.__version__,
                    "device": args.device,
                    "gpu": gpu,
                    "dtype": args.dtype,
                    "logits": "last" if (last_only or n_gen) else "all",
                    "test": name,
                    "n_prompt": n_prompt,
                    "n_gen": n_gen,
                    "reps": args.repetitions,
                    "avg_ts": statistics.fmean(samples_ts),
                    "stddev_ts": statistics.stdev(samples_ts) if len(samples_ts) > 1 else 0.0,
                    "avg_ms": 1e3 * statistics.fmean(secs),
                    "samples_ts": samples_ts,
                    "samples_ms": [1e3 * s for s in secs],
                    "weights_bytes": weights_bytes,
                    "peak_bytes": peak,
                    "peak_extra_bytes": max(0, peak - weights_bytes),
                    "device_used_bytes": device_used,
                    "test_time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                results.append(r)
                log(f"{impl:>5} {name:>7}: {r['avg_ts']:10.2f} ± {r['stddev_ts']:8.2f} t/s, {r['avg_ms']:9.2f} ms, "
                    f"peak extra {r['peak_extra_bytes'] / 2**20:8.1f} MiB")
        del model
        gc.collect()

    text = json.dumps(results, indent=1) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
