#!/usr/bin/env python3
"""Reference numbers from Hugging Face transformers for the GPU engine, at the real OPT shapes.

Run on the GPU machine (torch + transformers, no hub access: models are built from configs):

    python3 tests/gpu/make_transformers_reference.py --out DIR [--shapes 125m,350m,1.3b,...]

The shapes: OPT-125m, 350m and 1.3B whole, and the widths, heads and FFNs of OPT-2.7B (head size
80), 6.7B and 13B (head size 128) with 4, 2 and 2 layers instead of 32, 32 and 40 (their whole
depth would take most of a GPU session to build, save and convert).

For each shape it writes DIR/<shape>/hf/ (config.json, model.safetensors in fp16, and the tokenizer
files copied from models/opt-tokenizer) and DIR/<shape>/reference.json with, for a fixed 128-token
sequence:
  - fp32 logits (the ground truth) at a few positions, full rows, as little-endian .f32 files;
  - transformers' own fp16 error against fp32 (max |Δlogit| over those rows): the yardstick of the
    "no more than 2x the error of transformers' fp16 run" rule;
  - a 64-token greedy continuation by the fp16 model, with the top-2 logit margin at each step.
Weights are random (fixed seed) with a spread that makes LayerNorm affine parameters and biases
matter, rounded to fp16 so the fp16 checkpoint holds exactly what the fp32 reference used.
"""
import argparse
import json
import os
import shutil
import struct

import torch
from transformers import OPTConfig, OPTForCausalLM

SHAPES = {
    "125m": dict(hidden_size=768, num_attention_heads=12, num_hidden_layers=12, ffn_dim=3072,
                 word_embed_proj_dim=768, do_layer_norm_before=True),
    "350m": dict(hidden_size=1024, num_attention_heads=16, num_hidden_layers=24, ffn_dim=4096,
                 word_embed_proj_dim=512, do_layer_norm_before=False),
    "1.3b": dict(hidden_size=2048, num_attention_heads=32, num_hidden_layers=24, ffn_dim=8192,
                 word_embed_proj_dim=2048, do_layer_norm_before=True),
    "2.7b-4layers": dict(hidden_size=2560, num_attention_heads=32, num_hidden_layers=4, ffn_dim=10240,
                         word_embed_proj_dim=2560, do_layer_norm_before=True),
    "6.7b-2layers": dict(hidden_size=4096, num_attention_heads=32, num_hidden_layers=2, ffn_dim=16384,
                         word_embed_proj_dim=4096, do_layer_norm_before=True),
    "13b-2layers": dict(hidden_size=5120, num_attention_heads=40, num_hidden_layers=2, ffn_dim=20480,
                        word_embed_proj_dim=5120, do_layer_norm_before=True),
}
VOCAB, MAX_POS, SEQ_LEN, N_GREEDY = 50272, 2048, 128, 64
ROWS = [0, 1, 63, 127]  # positions whose full logits are stored


def build(shape, seed):
    cfg = OPTConfig(vocab_size=VOCAB, max_position_embeddings=MAX_POS, activation_function="relu",
                    dropout=0.0, attention_dropout=0.0, layerdrop=0.0, pad_token_id=1, bos_token_id=2,
                    eos_token_id=2, tie_word_embeddings=True, enable_bias=True,
                    layer_norm_elementwise_affine=True, **SHAPES[shape])
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = OPTForCausalLM(cfg).float().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "embed_positions" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            p.copy_(p.half().float())
    model.tie_weights()
    return model


def write_f32(path, t):
    values = t.contiguous().float().flatten().tolist()
    with open(path, "wb") as f:
        f.write(struct.pack("<%df" % len(values), *values))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--tokenizer-dir", default=os.path.join(os.path.dirname(__file__), "../../models/opt-tokenizer"))
    args = ap.parse_args()
    dev = "cuda"
    shapes = args.shapes.split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {', '.join(unknown)}; the shapes are {', '.join(SHAPES)}")
    for shape in shapes:
        # Seeds by the shape's place in SHAPES, not in --shapes: a shape's reference is the same whatever
        # the list (the default list is SHAPES in order, so its references are unchanged).
        i = list(SHAPES).index(shape)
        out = os.path.join(args.out, shape)
        os.makedirs(out, exist_ok=True)
        model = build(shape, 1000 + i)
        hf = os.path.join(out, "hf")
        model.half().save_pretrained(hf)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(args.tokenizer_dir, f), os.path.join(hf, f))

        g = torch.Generator().manual_seed(7 + i)
        ids = [2] + torch.randint(4, 50260, (SEQ_LEN - 1,), generator=g).tolist()
        x = torch.tensor([ids], device=dev)
        with torch.no_grad():
            m32 = model.float().to(dev)
            l32 = m32(input_ids=x, use_cache=False).logits[0].float()
            m16 = m32.half()
            l16 = m16(input_ids=x, use_cache=False).logits[0].float()
            hf16_err = float((l16[ROWS] - l32[ROWS]).abs().max())
            for r in ROWS:
                write_f32(os.path.join(out, f"logits_fp32_pos{r}.f32"), l32[r])
            # Greedy by repeated full forwards of the fp16 model (what "transformers fp16" generates).
            seq = list(ids[:32])
            greedy, margins = [], []
            for _ in range(N_GREEDY):
                lg = m16(input_ids=torch.tensor([seq], device=dev), use_cache=False).logits[0, -1].float()
                top2 = torch.topk(lg, 2)
                margins.append(float(top2.values[0] - top2.values[1]))
                greedy.append(int(top2.indices[0]))
                seq.append(greedy[-1])
        ref = {"shape": shape, "config": SHAPES[shape], "ids": ids, "rows": ROWS,
               "hf_fp16_max_abs_err": hf16_err, "logit_std": float(l32.std()),
               "greedy_prompt": ids[:32], "greedy_fp16": greedy, "greedy_top2_margins": margins}
        with open(os.path.join(out, "reference.json"), "w") as f:
            json.dump(ref, f)
        print(f"{shape}: transformers fp16 max |dlogit| vs fp32 = {hf16_err:.4f} (logit std {ref['logit_std']:.2f}), "
              f"min greedy margin {min(margins):.4f}", flush=True)
        del model, m32, m16
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
