#!/usr/bin/env python3
"""How precise must SEA's estimator products be? (a measurement, not a test)

Runs the estimator of sea_reference.py (§2.2-§2.6, then the softmax and the grouped top-k of §2.7)
on random parameters and inputs of a given shape, in float64 (the truth) and in float32 with the
operands of the products that the CUDA kernels run on tensor cores rounded to a 10-bit mantissa
(what one TF32 or one fp16 pass keeps), stage by stage or all together. For each variant it prints
max |Â - Â_fp64| and the number of (head, query) rows whose selected cells differ from the truth,
against the issue's limit of 0.1% of H·T.

The products it rounds are those the engine computes as 3xTF32 (attention/sea_mma.cuh): the random
features (q, k · W_proj), the Performer sums in 64-row chunks (φq·φkᵀ, that · [E_pos; v], φq · the
chunk-start state), the encoder (cat(C_perf, v) · W_enc), the row decoder (Z · W_row) and the two
convolutions. Weights are fp16 values (random_sea_params), exact in TF32, so only the activation
side is rounded. Everything else stays float32.

Usage: python3 tests/sea/precision_probe.py [--T 512] [--H 32] [--K 64] [--k 64] [--seed 20]
The figures of docs/development.md ("Why the estimator runs as 3xTF32") came from this script.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sea_reference as sr  # noqa: E402

STAGES = ("features", "performer", "encoder", "row_decoder", "conv1", "conv2")


def round_mantissa10(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest at 10 explicit mantissa bits (TF32's precision; fp16's too, without its range)."""
    bits = x.to(torch.float32).contiguous().view(torch.int32)
    bits = (bits + 0x1000) & ~0x1FFF
    return bits.view(torch.float32).to(x.dtype)


def estimator_probs(q, k, v, params, dtype, rounded=()):
    """Â [H, T, K] (in float64 for the comparison). `rounded`: the stages whose product operands are
    rounded to 10 mantissa bits; dtype float64 with no rounding is the truth."""
    def r(stage):
        return round_mantissa10 if stage in rounded else (lambda x: x)
    p = sr.cast_params(params, dtype)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    H, T, d = q.shape
    e_pos = p[sr.P_EPOS][0, 0, :T]
    vcat = torch.cat([e_pos[None].expand(H, T, d), v], dim=-1)                     # [H, T, 2d]
    w_proj = p[sr.P_PROJ]
    fq = torch.relu(r("features")(q * d ** -0.25) @ w_proj.t()) + sr.KERNEL_EPS
    fk = torch.relu(r("features")(k * d ** -0.25) @ w_proj.t()) + sr.KERNEL_EPS
    rp = r("performer")
    c_perf = torch.empty(H, T, 2 * d, dtype=dtype)
    for h in range(H):   # the kernels' chunked form: the state at each chunk's start, then the chunk itself
        s_k = torch.cumsum(fk[h], 0)
        s_kv = torch.cumsum(fk[h][:, :, None] * vcat[h][:, None, :], 0)
        for c0 in range(0, T, 64):
            c1 = min(T, c0 + 64)
            fqc = fq[h][c0:c1]
            a = torch.tril(rp(fqc) @ rp(fk[h][c0:c1]).t())
            num = rp(a) @ rp(vcat[h][c0:c1])
            den = a.sum(-1) + fqc.sum(-1) * sr.LINATT_EPS
            if c0 > 0:
                num = num + rp(fqc) @ rp(s_kv[c0 - 1])
                den = den + fqc @ s_k[c0 - 1]
            c_perf[h, c0:c1] = num / den[:, None]
    x = torch.cat([c_perf, v], dim=-1)
    hid = r("encoder")(x) @ p[sr.P_ENC_W].t() + p[sr.P_ENC_B]
    z = sr.gelu_exact(sr.layer_norm(hid, p[sr.P_ENC_LN_W], p[sr.P_ENC_LN_B]))
    img = sr.row_decoder_image(r("row_decoder")(z), p)
    x0 = sr.layer_norm(img, p[sr.P_CNN_LN1_W], p[sr.P_CNN_LN1_B])
    c1 = torch.relu(sr.causal_dilated_conv(r("conv1")(x0), sr.conv_weight(p, sr.P_CONV1), p[sr.P_CONV1 + "bias"]))
    c2 = torch.relu(sr.causal_dilated_conv(r("conv2")(c1), sr.conv_weight(p, sr.P_CONV2), p[sr.P_CONV2 + "bias"]))
    u = c2.repeat_interleave(sr.WIDTH_DOWN, dim=-1)
    K = u.shape[-1]
    area = sr.area_resize_width(sr.conv4_padded(u, p), K)
    logits = sr.layer_norm(area, p[sr.P_CNN_LN2_W], p[sr.P_CNN_LN2_B])
    return torch.softmax(logits.to(torch.float64), dim=-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=int, default=512)
    ap.add_argument("--H", type=int, default=32)
    ap.add_argument("--K", type=int, default=64)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    params = sr.random_sea_params(a.H, 64, a.k, a.K, 33, max(2048, a.T), seed=a.seed)
    q, k, v = sr.random_sea_inputs(a.H, a.T, 64, seed=a.seed + 1)
    rows = torch.arange(a.T)
    truth = estimator_probs(q, k, v, params, torch.float64)
    top = sr.grouped_topk(truth, rows, a.k)
    n_rows = a.H * a.T
    limit = max(2, n_rows // 1000)
    print(f"H={a.H} T={a.T} K={a.K} k={a.k} seed={a.seed}: {n_rows} (head, query) rows, limit 0.1% = {limit}")
    for eps in (1e-6, 1e-5, 1e-4):
        print(f"  query rows whose top-k margin is below {eps:g}: {int((top['margin'] < eps).sum())} of {a.T}")
    variants = [("fp32, exact products", ())] + [(f"{s} rounded", (s,)) for s in STAGES]
    variants += [("features+performer+encoder", ("features", "performer", "encoder")),
                 ("convs rounded", ("conv1", "conv2")), ("all rounded", STAGES)]
    print(f"  {'variant':<26} {'max|dA|':>9} {'rows differing':>15} {'%':>8}")
    for name, rounded in variants:
        probs = estimator_probs(q, k, v, params, torch.float32, rounded)
        sel = sr.grouped_topk(probs, rows, a.k)["sel"]
        n_diff = int((sel != top["sel"]).any(dim=-1).sum())
        err = float((probs - truth).abs().max())
        print(f"  {name:<26} {err:>9.2e} {n_diff:>15} {100.0 * n_diff / n_rows:>7.3f}%", flush=True)


if __name__ == "__main__":
    main()
