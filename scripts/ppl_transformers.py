#!/usr/bin/env python3
"""WikiText-2 perplexity of a Hugging Face OPT checkpoint with transformers, by the GPTQ protocol.

The independent implementation that seaopt-perplexity is checked against (scripts/gpu-verify.sh runs
both on the same checkpoint). Run where torch and transformers exist (the GPU machine):

    python3 scripts/ppl_transformers.py --model HF_DIR --wikitext DIR_OR_FILE [--tokenizer DIR]
        [--dtype fp32|fp16] [--device cuda] [--chunks N] [--out JSON] [--reference-ids FILE]

HF_DIR: an OPT checkpoint (config.json + weights), e.g. DIR/125m/hf made by
tests/gpu/make_transformers_reference.py (random weights). --tokenizer: a directory with the OPT
vocab.json and merges.txt (default: HF_DIR; ../shared/data/opt-tokenizer, or .carry/tokenizer on
the GPU machine).

Protocol (anchors D1; IST-DASLab/gptq datautils.py get_wikitext2 + opt.py opt_eval):
  1. text: the rows of Hugging Face `datasets` wikitext-2-raw-v1 'test', rebuilt from wiki.test.raw as
     the datasets loading script does (each line with its "\\n" is a row; a whitespace-only line
     becomes ""), joined with "\\n\\n" -- as seaopt-perplexity --wikitext2-test does;
  2. tokens: the OPT tokenizer over the whole text, ONE BOS (</s>, id 2) at the very start
     (tokenizer(text) of the HF OPT tokenizer; here the BOS is put in explicitly, so the result does
     not depend on the tokenizer config's add_bos_token);
  3. seqlen = config.max_position_embeddings (2048); nsamples = n_tokens // seqlen; window i =
     tokens [i*seqlen, (i+1)*seqlen), no BOS per window, no cache across windows;
  4. per window: the model's logits, shifted (logits[:-1] predict tokens[1:]), CrossEntropyLoss
     (mean over the seqlen-1 predictions), nll_i = loss * seqlen (GPTQ's factor: seqlen, not
     seqlen-1; seaopt-perplexity does the same);
  5. ppl = exp(sum_i nll_i / (nsamples * seqlen)).
Deviations from the GPTQ code, each below 1e-6 relative: the cross entropy is computed on fp32
logits (GPTQ's fp16 run takes it on fp16 logits and gets an fp16 loss, rounded to ~5e-4 relative;
--gptq-fp16-loss reproduces that), and the window NLLs are summed in double (GPTQ: fp32).
--chunks N scores only the first N windows (ppl over those), as seaopt-perplexity --chunks N.
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

BOS = 2
# The GPTQ evaluation text of the test split (../shared/data/README.md section 1).
TEST_JOIN_SHA256 = "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83"
TEST_N_TOKENS = 287645  # with the BOS (../shared/data/reference/opt_wikitext2_test_hfjoin_ids.txt)


def log(msg):
    print("ppl_transformers: " + msg, file=sys.stderr, flush=True)


def wikitext_hf_join(path):
    """"\\n\\n".join of the Hugging Face rows, from wiki.test.raw (datasets' wikitext.py:
    `for row in open(path, encoding="utf-8"): yield row if row.strip() else ""`; text mode, so
    universal newlines)."""
    with open(path, encoding="utf-8") as f:
        rows = [row if row.strip() else "" for row in f]
    return rows, "\n\n".join(rows)


def load_tokenizer(tok_dir, impl):
    """encode(text) -> ids without any special token added. transformers' GPT2Tokenizer (the class
    AutoTokenizer gives for OPT; the Python one in transformers 4, the `tokenizers`-backed one in 5),
    with OPT's special tokens; or the `tokenizers` library's byte-level BPE directly."""
    vocab, merges = os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt")
    for p in (vocab, merges):
        if not os.path.isfile(p):
            sys.exit(f"ppl_transformers: error: {p} not found (--tokenizer DIR needs vocab.json and merges.txt)")
    if impl == "transformers":
        try:
            from transformers import GPT2Tokenizer
            # As facebook/opt-*'s tokenizer_config: bos = eos = unk = "</s>", pad = "<pad>".
            tok = GPT2Tokenizer.from_pretrained(tok_dir, bos_token="</s>", eos_token="</s>", unk_token="</s>",
                                                pad_token="<pad>", add_prefix_space=False)
            tok.model_max_length = 10 ** 9  # no "sequence too long" warning: we window ourselves
            return (lambda text: list(tok(text, add_special_tokens=False)["input_ids"])), \
                f"transformers.{type(tok).__name__}"
        except Exception as e:  # noqa: BLE001 -- report and use the other implementation
            log(f"transformers' GPT2Tokenizer failed ({type(e).__name__}: {e}); using the tokenizers library")
    from tokenizers import Tokenizer, models, pre_tokenizers
    tk = Tokenizer(models.BPE.from_file(vocab, merges))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return (lambda text: tk.encode(text, add_special_tokens=False).ids), "tokenizers.ByteLevelBPE"


def safe_exp(x):
    return math.exp(x) if x < 709.0 else math.inf  # a random model's PPL can exceed a double


def read_ids(path):
    with open(path) as f:
        return [int(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face OPT checkpoint directory")
    ap.add_argument("--wikitext", required=True, help="wiki.test.raw, or the directory holding it")
    ap.add_argument("--tokenizer", help="directory with vocab.json and merges.txt (default: --model)")
    ap.add_argument("--tokenizer-impl", choices=["transformers", "tokenizers"], default="transformers")
    ap.add_argument("--ids", help="use these token ids (one a line, BOS included) instead of tokenizing")
    ap.add_argument("--save-ids", help="write the token ids here (one a line), for --ids in later runs")
    ap.add_argument("--reference-ids", help="compare the tokens with these ids (one a line, BOS included), "
                                            "e.g. ../shared/data/reference/opt_wikitext2_test_hfjoin_ids.txt")
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager", help="attn_implementation")
    ap.add_argument("--seqlen", type=int, default=0, help="window length (0 = config.max_position_embeddings)")
    ap.add_argument("--chunks", type=int, default=0, help="score only the first N windows (0 = all)")
    ap.add_argument("--gptq-fp16-loss", action="store_true",
                    help="cross entropy on the model's own logits dtype, as GPTQ's code (fp16 loss with --dtype fp16)")
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import OPTForCausalLM

    t0 = time.time()
    # ---- text and tokens
    raw = args.wikitext
    if os.path.isdir(raw):
        raw = os.path.join(raw, "wiki.test.raw")
    rows, text = wikitext_hf_join(raw)
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    log(f"{raw}: {len(rows)} rows joined with \"\\n\\n\": {len(text)} characters, "
        f"{len(text.encode('utf-8'))} bytes, sha256 {text_sha[:16]}... "
        f"({'the GPTQ test text' if text_sha == TEST_JOIN_SHA256 else 'NOT the known GPTQ test text'})")
    if args.ids:
        ids, tok_impl = read_ids(args.ids), "ids:" + args.ids
    else:
        encode, tok_impl = load_tokenizer(args.tokenizer or args.model, args.tokenizer_impl)
        t_tok = time.time()
        ids = [BOS] + encode(text)
        log(f"tokenized with {tok_impl} in {time.time() - t_tok:.1f} s")
    n_tokens = len(ids)
    if args.save_ids:
        with open(args.save_ids, "w") as f:
            f.write("".join(f"{i}\n" for i in ids))
    print(f"tokens: {n_tokens} (with the BOS; {TEST_N_TOKENS} expected for the WikiText-2 test text)", flush=True)
    ref_match = None
    if args.reference_ids:
        ref = read_ids(args.reference_ids)
        ref_match = ref == ids
        if ref_match:
            log(f"the tokens equal {args.reference_ids} ({len(ref)} ids)")
        else:
            first = next((i for i, (a, b) in enumerate(zip(ids, ref)) if a != b), min(len(ids), len(ref)))
            log(f"WARNING: the tokens differ from {args.reference_ids}: {len(ids)} vs {len(ref)} ids, "
                f"first difference at index {first}")

    # ---- model
    dtype = torch.float32 if args.dtype == "fp32" else torch.float16
    if args.device.startswith("cuda"):
        # Real fp32 GEMMs for the fp32 reference (no TF32), whatever this torch's default.
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        except Exception as e:  # noqa: BLE001 -- newer torch may prefer its fp32_precision settings
            log(f"could not turn TF32 off ({e}); torch's default for fp32 matmul is no TF32")
    model = OPTForCausalLM.from_pretrained(args.model, attn_implementation=args.attn)
    model = model.to(dtype=dtype).to(args.device).eval()  # fp16 checkpoints upcast exactly
    seqlen = args.seqlen or model.config.max_position_embeddings
    nsamples = n_tokens // seqlen
    if nsamples < 1:
        sys.exit(f"ppl_transformers: error: {n_tokens} tokens are fewer than one window of {seqlen}")
    n_windows = min(args.chunks, nsamples) if args.chunks > 0 else nsamples
    log(f"model {args.model}: {args.dtype}, {args.attn} attention, on {args.device}; seqlen {seqlen}, "
        f"nsamples {nsamples} (the last {n_tokens - nsamples * seqlen} tokens dropped), scoring {n_windows}")

    # ---- windows
    enc = torch.tensor(ids, dtype=torch.long)
    nlls = []  # GPTQ's nll_i = mean loss * seqlen, as Python floats (double)
    tok_sum = 0.0
    t_eval = time.time()
    with torch.inference_mode():
        for i in range(n_windows):
            batch = enc[i * seqlen:(i + 1) * seqlen].unsqueeze(0).to(args.device)
            logits = model(input_ids=batch, use_cache=False).logits
            shift_logits = logits[:, :-1, :].reshape(-1, logits.size(-1))
            shift_labels = batch[:, 1:].reshape(-1)
            if args.gptq_fp16_loss:
                # GPTQ's code: CrossEntropyLoss() (mean) on the logits as the model gives them.
                loss = float(torch.nn.functional.cross_entropy(shift_logits, shift_labels).float())
                tok_sum += loss * (seqlen - 1)
            else:
                losses = torch.nn.functional.cross_entropy(shift_logits.float(), shift_labels, reduction="none")
                window_sum = float(losses.double().sum())
                tok_sum += window_sum
                loss = window_sum / (seqlen - 1)
            nlls.append(loss * seqlen)
            if not math.isfinite(loss):
                sys.exit(f"ppl_transformers: error: non-finite loss in window {i + 1}")
            print(f"[{i + 1}]{safe_exp(sum(nlls) / ((i + 1) * seqlen)):.4f},", end="", flush=True)
    print(flush=True)
    seconds = time.time() - t_eval
    mean_nll = sum(nlls) / (n_windows * seqlen)
    ppl = safe_exp(mean_nll)
    print(f"Final estimate: PPL = {ppl:.6f} (mean NLL {mean_nll:.8f}; {n_windows} of {nsamples} windows of {seqlen}, "
          f"{args.dtype}, {seconds:.1f} s)", flush=True)

    result = {
        "ppl": ppl,
        "mean_nll": mean_nll,  # log(ppl): sum_i nll_i / (windows * seqlen)
        "mean_token_nll": tok_sum / (n_windows * (seqlen - 1)),
        "nsamples": nsamples,
        "windows": n_windows,
        "seqlen": seqlen,
        "n_tokens": n_tokens,
        "text_sha256": text_sha,
        "tokens_match_reference": ref_match,
        "tokenizer": tok_impl,
        "dtype": args.dtype,
        "attn": args.attn,
        "device": args.device,
        "gptq_fp16_loss": args.gptq_fp16_loss,
        "seconds": seconds,
        "seconds_total": time.time() - t0,
        "model": os.path.abspath(args.model),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
