#!/usr/bin/env python3
"""SEA attention (one OPT decoder layer), a literal PyTorch reference written from docs sea.md
(../shared/docs/sea.md: "SEA on OPT -- implementation spec"). Section numbers (§) refer to it.

Scope: one layer, batch 1 (N dropped), heads H, head_dim d (OPT: 64), sequence positions 0..T-1.
Shapes use [H, T, d] (head-major); the engine's [T, H*d] is out.permute(1, 0, 2).reshape(T, H*d).

    q, k, v         [H, T, d]   q already scaled by d^-1/2 (OPT's q_proj(x) * d^-0.5, §1, §2.1)
    params          dict keyed by the §5.1 state_dict names after the prefix
                    "model.decoder.layers.{i}.self_attn.perlin_self_attention." (see PARAM_* below)
    k_budget        k of §2.7 (keys per query per head on average); K comes from the params

The estimator needs nothing but q, k, v and the absolute position of each row (§2.1: the estimator
and the sparse attention use the layer's own Q/K/V; no hidden states). Positions are 0-based:
row t of a prefill is the token at position t (E_pos row t, causal length t+1).

Every op is written out (no conv2d / interpolate / layer_norm library calls) so that the C++ side
can be read against it line by line; tests/sea/check_reference.py checks each one against the
torch library op. All arithmetic runs in the dtype of q (float64 = the "truth", or float32).
`rnd` is an optional rounding hook applied to the output of each op (used to emulate a naive fp16
implementation: every intermediate rounded to fp16, arithmetic in fp32).

Choices where sea.md leaves room are marked CHOICE and listed in tests/sea/README.md.
"""
from __future__ import annotations

import math

import torch

# ---- §5.1 parameter names (after the per-layer prefix) -----------------------------------------
PARAM_PREFIX = "model.decoder.layers.{i}.self_attn.perlin_self_attention."
P_EPOS = "attention.v_eye_learned_causal"                          # (1, 1, n_pos, d)    E_pos §2.2
P_PROJ = "attention.performer.projection_matrix"                   # (m, d)              W     §2.3
P_ENC_W = "attention.attention_predictor_enc.0.weight"             # (2d, 3d)            §2.4
P_ENC_B = "attention.attention_predictor_enc.0.bias"               # (2d)
P_ENC_LN_W = "attention.attention_predictor_enc.1.weight"          # (2d)  LayerNorm
P_ENC_LN_B = "attention.attention_predictor_enc.1.bias"            # (2d)
P_ROW_W = "attention.attention_predictor_dec_row.0.weight"         # (K/2, 2d)           §2.5
P_ROW_B = "attention.attention_predictor_dec_row.0.bias"           # (K/2)
P_CNN_LN1_W = "attention.attention_predictor_cnn.0.module.weight"  # (K/4)  LayerNorm    §2.6.1
P_CNN_LN1_B = "attention.attention_predictor_cnn.0.module.bias"    # (K/4)
P_CONV1 = "attention.attention_predictor_cnn.1.module.net.0.module."  # weight, weight_mask (2H,2H,5,3); bias (2H)
P_CONV2 = "attention.attention_predictor_cnn.1.module.net.2.module."  # weight, weight_mask (2H,2H,5,3); bias (2H)
P_CONV4 = "attention.attention_predictor_cnn.1.module.net.5.module."  # weight, weight_mask (H,2H,1,1); bias (H)
P_CNN_LN2_W = "attention.attention_predictor_cnn.2.module.weight"  # (K)    LayerNorm    §2.6.9
P_CNN_LN2_B = "attention.attention_predictor_cnn.2.module.bias"    # (K)
P_SCALER_W = "attention.attention_predictor_dec_scaler.0.weight"   # (2, 2d) row 0 s_prob, row 1 s_mix §2.9
P_SCALER_B = "attention.attention_predictor_dec_scaler.0.bias"     # (2)

LN_EPS = 1e-5           # every LayerNorm (§2.4, §2.6)
KERNEL_EPS = 1e-3       # φ(x) = ReLU(...) + 1e-3 (§2.3)
LINATT_EPS = 1e-6       # added to every element of S_k (§2.3)
CH_SPLIT = 2            # c_h (§1, §2.5)
WIDTH_DOWN = 4          # c_s (§1, §2.5, §2.6.6)
CONV_ROWS = 5           # stored kernel height of conv1/conv2 (§2.6.2); rows 3, 4 are masked off
CONV_LIVE_ROWS = 3
HIST_ROWS = 4           # decode history: image rows t-4..t-1 (§2.12)
K_OVERSAMPLE = 1.0      # k_oversample of the budget (§2.7)


def param_shapes(H: int, d: int, K: int, m: int, n_positions: int) -> dict:
    """The exact §5.1 shapes (general H, d, K, m, n_pos; OPT: d=64, m=33, n_pos=2048)."""
    if K % 4 != 0:
        raise ValueError(f"K={K} must be a multiple of 4 (width K/4 and K/2 row-decoder outputs, §2.5)")
    C = 2 * H
    s = {
        P_EPOS: (1, 1, n_positions, d),
        P_PROJ: (m, d),
        P_ENC_W: (2 * d, 3 * d), P_ENC_B: (2 * d,),
        P_ENC_LN_W: (2 * d,), P_ENC_LN_B: (2 * d,),
        P_ROW_W: (CH_SPLIT * K // WIDTH_DOWN, 2 * d), P_ROW_B: (CH_SPLIT * K // WIDTH_DOWN,),
        P_CNN_LN1_W: (K // WIDTH_DOWN,), P_CNN_LN1_B: (K // WIDTH_DOWN,),
        P_CNN_LN2_W: (K,), P_CNN_LN2_B: (K,),
        P_SCALER_W: (2, 2 * d), P_SCALER_B: (2,),
    }
    for key, cout, cin, kh, kw in ((P_CONV1, C, C, CONV_ROWS, 3), (P_CONV2, C, C, CONV_ROWS, 3), (P_CONV4, H, C, 1, 1)):
        s[key + "weight"] = (cout, cin, kh, kw)
        s[key + "weight_mask"] = (cout, cin, kh, kw)
        s[key + "bias"] = (cout,)
    return s


def check_params(params: dict, H: int, d: int) -> tuple:
    """Validates the params against §5.1; returns (K, m, n_positions)."""
    K = params[P_CNN_LN2_W].shape[0]
    m = params[P_PROJ].shape[0]
    n_pos = params[P_EPOS].shape[2]
    want = param_shapes(H, d, K, m, n_pos)
    for key, shape in want.items():
        if key not in params:
            raise KeyError(f"missing parameter {key}")
        if tuple(params[key].shape) != shape:
            raise ValueError(f"{key}: shape {tuple(params[key].shape)}, expected {shape}")
    for key in (P_CONV1, P_CONV2):
        if bool((params[key + "weight_mask"][:, :, CONV_LIVE_ROWS:, :] != 0).any()):
            raise ValueError(f"{key}weight_mask: kernel rows 3..4 must be 0 (they read future rows, §2.6.2)")
    return K, m, n_pos


# ---- random parameters and inputs ---------------------------------------------------------------
def _round_fp16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float16).to(t.dtype)


def gaussian_orthogonal_random_matrix(m: int, d: int, g: torch.Generator) -> torch.Tensor:
    """performer_pytorch's gaussian_orthogonal_random_matrix(m, d, scaling=0) (§2.3): stacked
    orthogonal blocks (rows of Q^T from the QR of a d x d Gaussian), row norms drawn as norms of
    d-dimensional Gaussian vectors."""
    blocks = []
    for _ in range(m // d):
        blocks.append(torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0].t())
    rem = m - (m // d) * d
    if rem > 0:
        blocks.append(torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0].t()[:rem])
    mat = torch.cat(blocks, 0)
    norms = torch.randn(m, d, generator=g, dtype=torch.float64).norm(dim=1)
    return norms[:, None] * mat


def random_sea_params(H: int, head_dim: int = 64, k: int = 64, K: int = 64, m: int = 33,
                      n_positions: int = 2048, seed: int = 0, round_to_fp16: bool = True) -> dict:
    """Random parameters of the exact §5.1 shapes (float64 CPU tensors; values rounded to fp16 so
    that an fp16 engine holds exactly the same numbers). `k` does not change any shape; it is in
    the signature for symmetry with the fixture config.

    Scales: LayerNorm affines 1 + noise, biases small, linear/conv weights ~ fan-in (He for the
    ReLU convs), so every stage has O(1) activations. The last LayerNorm (over K) gets a wide affine
    (weight 1 + 0.5 N(0,1), bias 0.5 N(0,1)): the estimated rows are far from uniform (logit std ~1
    plus a per-column preference), and its per-column affine breaks the exact ties that the x4
    nearest upsample + area resize produce (§2.6.6-8: 3 of every 4 columns are equal before it).
    Kernel rows 3..4 of conv1/conv2 hold random (nonzero) numbers that weight_mask zeroes, as in
    a trained checkpoint: an implementation must apply weight_mask (or ignore those rows).
    The gate biases start near s_prob = +1, s_mix = +0.5 so both mixing terms matter (§2.10)."""
    del k
    g = torch.Generator().manual_seed(seed)
    d, C = head_dim, 2 * H

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    p = {
        P_EPOS: randn(1, 1, n_positions, d),
        P_PROJ: gaussian_orthogonal_random_matrix(m, d, g),
        P_ENC_W: randn(2 * d, 3 * d) / math.sqrt(3 * d),
        P_ENC_B: 0.1 * randn(2 * d),
        P_ENC_LN_W: 1.0 + 0.1 * randn(2 * d),
        P_ENC_LN_B: 0.1 * randn(2 * d),
        P_ROW_W: randn(K // 2, 2 * d) / math.sqrt(2 * d),
        P_ROW_B: 0.1 * randn(K // 2),
        P_CNN_LN1_W: 1.0 + 0.1 * randn(K // 4),
        P_CNN_LN1_B: 0.1 * randn(K // 4),
    }
    for key, cout, cin, kh, kw, live in ((P_CONV1, C, C, CONV_ROWS, 3, CONV_LIVE_ROWS),
                                         (P_CONV2, C, C, CONV_ROWS, 3, CONV_LIVE_ROWS),
                                         (P_CONV4, H, C, 1, 1, 1)):
        p[key + "weight"] = randn(cout, cin, kh, kw) * math.sqrt(2.0 / (cin * live * kw))
        mask = torch.zeros(cout, cin, kh, kw, dtype=torch.float64)
        mask[:, :, :live, :] = 1.0
        p[key + "weight_mask"] = mask
        p[key + "bias"] = 0.1 * randn(cout)
    p[P_CNN_LN2_W] = 1.0 + 0.5 * randn(K)
    p[P_CNN_LN2_B] = 0.5 * randn(K)
    p[P_SCALER_W] = randn(2, 2 * d) / math.sqrt(2 * d)
    p[P_SCALER_B] = torch.tensor([1.0, 0.5], dtype=torch.float64) + 0.1 * randn(2)
    if round_to_fp16:
        p = {name: _round_fp16(t) for name, t in p.items()}
    check_params(p, H, d)
    return p


def random_sea_inputs(H: int, T: int, head_dim: int = 64, seed: int = 0, q_std: float = 2.0,
                      round_to_fp16: bool = True):
    """q, k, v [H, T, d] (float64 CPU). q = x * d^-1/2 with x ~ N(0, q_std^2) (OPT's scaled q),
    k, v ~ N(0, 1): scores q.k have std q_std. Rounded to fp16 like the engine's activations."""
    g = torch.Generator().manual_seed(seed)
    d = head_dim
    q = torch.randn(H, T, d, generator=g, dtype=torch.float64) * (q_std / math.sqrt(d))
    k = torch.randn(H, T, d, generator=g, dtype=torch.float64)
    v = torch.randn(H, T, d, generator=g, dtype=torch.float64)
    if round_to_fp16:
        q, k, v = _round_fp16(q), _round_fp16(k), _round_fp16(v)
    return q, k, v


def stretch_positional_table(params: dict, n_pos_ctx: int) -> dict:
    """§2.2: for more positions than E_pos has rows, the authors' long-context runs resized the table once, when
    loading the model (src/trainer/perlin_trainer.py, env __CONTEXT): F.interpolate(E_pos, size=(n_ctx, d),
    mode='nearest'). Row p of the result is E_pos[min(floor(p · fl32(n_pos / n_ctx)), n_pos - 1)]. Returns a
    copy of params with the stretched table, n_pos_ctx rows (sea_forward then indexes it by absolute position
    as usual). attention/sea_cpu.h does the same through SeaConfig::n_pos_ctx."""
    import torch.nn.functional as F
    out = dict(params)
    e = params[P_EPOS]
    out[P_EPOS] = F.interpolate(e, size=(n_pos_ctx, e.shape[-1]), mode="nearest")
    return out


def cast_params(params: dict, dtype: torch.dtype, device="cpu") -> dict:
    return {name: t.to(device=device, dtype=dtype) for name, t in params.items()}


# ---- elementary ops (written out) -----------------------------------------------------------------
def _identity(x):
    return x


def layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = LN_EPS) -> torch.Tensor:
    """torch.nn.LayerNorm over the last dim: biased variance, eps inside the sqrt, affine."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_exact(x: torch.Tensor) -> torch.Tensor:
    """GELU, exact erf form (§2.4)."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def relu_features(x: torch.Tensor, W: torch.Tensor, rnd=_identity) -> torch.Tensor:
    """§2.3: φ(x) = ReLU((d^-1/4 x) W^T) + 1e-3 (x: [..., d], W: [m, d] -> [..., m]).
    q already carries d^-1/2; the d^-1/4 is applied on top of it."""
    d = x.shape[-1]
    return rnd(torch.relu(rnd((x * (d ** -0.25)) @ W.t())) + KERNEL_EPS)


def causal_linear_attention(fq: torch.Tensor, fk: torch.Tensor, vcat: torch.Tensor, rnd=_identity) -> torch.Tensor:
    """§2.3: S_k(t) = Σ_{j<=t} φ(k_j), S_kv(t) = Σ_{j<=t} φ(k_j) ⊗ V_cat_j,
    C_perf(t) = φ(q_t)^T S_kv(t) / (φ(q_t) . (S_k(t) + 1e-6)).  [H,T,m] x2, [H,T,E] -> [H,T,E].
    One head at a time (the running sums are [T, m, E] per head)."""
    out = []
    for h in range(fq.shape[0]):
        s_k = torch.cumsum(fk[h], dim=0)                                        # [T, m]
        s_kv = torch.cumsum(fk[h][:, :, None] * vcat[h][:, None, :], dim=0)     # [T, m, E]
        num = torch.einsum("tm,tme->te", fq[h], s_kv)
        den = torch.einsum("tm,tm->t", fq[h], s_k + LINATT_EPS)
        out.append(num / den[:, None])
        del s_kv
    return rnd(torch.stack(out, 0))


def encoder(c_perf: torch.Tensor, v: torch.Tensor, p: dict, rnd=_identity) -> torch.Tensor:
    """§2.4: Z = GELU(LayerNorm_2d(cat(C_perf, v) W_enc^T + b_enc)), per token and head, shared weights."""
    x = torch.cat([c_perf, v], dim=-1)                                          # [..., 3d]
    h = rnd(x @ p[P_ENC_W].t() + p[P_ENC_B])
    h = rnd(layer_norm(h, p[P_ENC_LN_W], p[P_ENC_LN_B]))
    return rnd(gelu_exact(h))


def gates(z: torch.Tensor, p: dict, rnd=_identity):
    """§2.9: [s_prob, s_mix] = Z W_s^T + b_s (logits, before the sigmoid)."""
    s = rnd(z @ p[P_SCALER_W].t() + p[P_SCALER_B])
    return s[..., 0], s[..., 1]


def row_decoder_image(z: torch.Tensor, p: dict, rnd=_identity) -> torch.Tensor:
    """§2.5: R = Z W_row^T + b_row [H, R, K/2]; halves s = 0, 1 of width K/4 -> image channel 2h+s.
    Returns [2H, R, K/4]."""
    r = rnd(z @ p[P_ROW_W].t() + p[P_ROW_B])
    H, R, half = r.shape
    w4 = half // CH_SPLIT
    return r.reshape(H, R, CH_SPLIT, w4).permute(0, 2, 1, 3).reshape(CH_SPLIT * H, R, w4)


def conv_weight(p: dict, key: str) -> torch.Tensor:
    """Effective conv weight = weight * weight_mask (the stored mask zeroes kernel rows 3..4)."""
    return p[key + "weight"] * p[key + "weight_mask"]


def causal_dilated_conv(x: torch.Tensor, w_eff: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """§2.6.2: the stored (Cout, Cin, 5, 3) kernel, dilation 2 in both dims, padding 4 rows on
    both sides and 2 columns on both sides, zeros outside the image:
        y[co,t,x] = b[co] + Σ_ci Σ_a Σ_b w[co,ci,a,b] · x[ci, t-4+2a, x-2+2b]   (a = 0..4, b = 0..2)
    With weight_mask rows 3..4 = 0 only rows t-4, t-2, t are read. x: [Cin, T, W] -> [Cout, T, W]."""
    cout, cin, kh, kw = w_eff.shape
    _, T, W = x.shape
    pr, pc = kh - 1, kw - 1                       # dilation 2 x (kernel-1)/2 = 4 rows, 2 columns
    xp = torch.zeros(cin, T + 2 * pr, W + 2 * pc, dtype=x.dtype, device=x.device)
    xp[:, pr:pr + T, pc:pc + W] = x                                               # xp[:, r, c] = x[:, r-4, c-2]
    y = b[:, None, None].expand(cout, T, W).clone()
    for a in range(kh):
        for bb in range(kw):
            patch = xp[:, 2 * a:2 * a + T, 2 * bb:2 * bb + W]                     # x[:, t-4+2a, x-2+2bb]
            y = y + torch.einsum("oi,itw->otw", w_eff[:, :, a, bb], patch)
    return y


def area_windows(in_w: int, out_w: int) -> list:
    """Adaptive-average-pool windows (F.interpolate mode='area'): [floor(x*in/out), ceil((x+1)*in/out))."""
    return [((x * in_w) // out_w, -((-(x + 1) * in_w) // out_w)) for x in range(out_w)]


def area_resize_width(x: torch.Tensor, out_w: int) -> torch.Tensor:
    """§2.6.8: 'area' resize of the last dim (mean over each window); other dims unchanged."""
    cols = [x[..., s:e].mean(dim=-1) for s, e in area_windows(x.shape[-1], out_w)]
    return torch.stack(cols, dim=-1)


def conv4_padded(u: torch.Tensor, p: dict) -> torch.Tensor:
    """§2.6.7: 1x1 conv 2H -> H with bias, input zero-padded by one column on each side:
    [2H, ..., K] -> [H, ..., K+2]; the two border columns are the bias alone."""
    w4 = conv_weight(p, P_CONV4)[:, :, 0, 0]                                      # [H, 2H]
    b4 = p[P_CONV4 + "bias"]
    inner = torch.einsum("oc,c...x->o...x", w4, u) + b4.reshape((-1,) + (1,) * (u.dim() - 1))
    border = b4.reshape((-1,) + (1,) * (u.dim() - 1)).expand(inner.shape[:-1] + (1,))
    return torch.cat([border, inner, border], dim=-1)


def cnn_decoder(img: torch.Tensor, p: dict, rnd=_identity) -> dict:
    """§2.6 on the whole image [2H, T, K/4] -> logits S [H, T, K] (and the intermediates)."""
    K = 4 * img.shape[-1]
    x0 = rnd(layer_norm(img, p[P_CNN_LN1_W], p[P_CNN_LN1_B]))                   # 1. LN over K/4
    c1 = rnd(torch.relu(rnd(causal_dilated_conv(x0, conv_weight(p, P_CONV1), p[P_CONV1 + "bias"]))))  # 2, 3
    c2 = rnd(torch.relu(rnd(causal_dilated_conv(c1, conv_weight(p, P_CONV2), p[P_CONV2 + "bias"]))))  # 4, 5
    u = c2.repeat_interleave(WIDTH_DOWN, dim=-1)                                  # 6. U[c,t,x] = Y[c,t,x//4]
    padded = rnd(conv4_padded(u, p))                                              # 7. [H, T, K+2]
    area = rnd(area_resize_width(padded, K))                                      # 8. [H, T, K]
    logits = rnd(layer_norm(area, p[P_CNN_LN2_W], p[P_CNN_LN2_B]))               # 9. LN over K
    return {"img_ln": x0, "conv1": c1, "conv2": c2, "logits": logits}


# ---- selection (§2.7) and expansion (§2.8) --------------------------------------------------------
def topk_budget(rows: torch.Tensor, H: int, k_budget: int, K: int) -> torch.Tensor:
    """§2.7: n_t = clamp(round_half_even(H·k·k_oversample·K / (t+1)), 1, H·K), evaluated as the authors' code
    does (attention.py, causal_batch: per_item_top_k = H * (k * k_oversample * T_M / causal_token_length) with
    causal_token_length = arange(1, T+1) a LongTensor, then torch.round and clamp_min 1). A Python float divided
    by a LongTensor is Tensor.__rtruediv__ = reciprocal() * float, so in fp32: fl(fl(fl(1/(t+1))·(k·K))·H), then
    half-even rounding. This can differ from the exact rational: H=3, k=5, K=20, t+1=24 is 12.5 exactly (-> 12)
    but 12.500001 in fp32 (-> 13). The fp32 ops are the same on CPU and CUDA (IEEE reciprocal, multiplications
    by scalars), and integers below 2^24 are exact in fp32. The upper clamp H·K is the authors' "keep everything"
    (top_k_elems = min(..., H·T_M)). rows: int64 positions t -> int64 [R] (on the CPU)."""
    L = rows.to(device="cpu", dtype=torch.int64) + 1
    per_head = L.to(torch.float32).reciprocal() * float(k_budget * K_OVERSAMPLE * K)   # fp32
    total = H * per_head                                                                 # fp32
    assert total.dtype == torch.float32
    return torch.round(total).to(torch.int64).clamp(min=1, max=H * K)


def grouped_topk(probs: torch.Tensor, rows: torch.Tensor, k_budget: int) -> dict:
    """§2.7 grouped ('causal-per-batch') top-k over the H·K cells of each row.
    probs [H, R, K] (rows = their positions t) -> sel bool [H, R, K] and per row:
      n       budget n_t (int64 [R]);
      thresh  the n_t-th largest value (smallest selected);
      next    the (n_t+1)-th largest (largest unselected), -1 when n_t = H·K;
      margin  thresh - next (in the arithmetic dtype), +inf when n_t = H·K.
    CHOICE (tie rule): cells are ranked by (value descending, flat index h·K + c ascending), i.e. a
    stable descending sort of the head-major flattened row; the first n_t are selected. This is
    deterministic on CPU and CUDA (torch.sort(stable=True))."""
    H, R, K = probs.shape
    HK = H * K
    flat = probs.permute(1, 0, 2).reshape(R, HK)                                  # index h*K + c
    n = topk_budget(rows, H, k_budget, K).to(probs.device)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    svals = torch.gather(flat, 1, order)
    rank = torch.argsort(order, dim=1)                                            # inverse permutation
    sel_flat = rank < n[:, None]
    thresh = torch.gather(svals, 1, (n - 1)[:, None])[:, 0]
    has_next = n < HK
    nxt = torch.gather(svals, 1, n.clamp(max=HK - 1)[:, None])[:, 0]
    nxt = torch.where(has_next, nxt, torch.full_like(nxt, -1.0))
    margin = torch.where(has_next, thresh - nxt, torch.full_like(nxt, math.inf))
    sel = sel_flat.reshape(R, H, K).permute(1, 0, 2)
    return {"sel": sel, "n": n, "thresh": thresh, "next": nxt, "margin": margin}


def cell_starts(rows: torch.Tensor, K: int) -> torch.Tensor:
    """§2.8 FlatCSR rule: with s = (t+1)/K, cell c covers keys [round(c·s), round((c+1)·s)), round = half away
    from zero. Evaluated exactly as the authors' code does (causal_resize_m_to_t.py, scan_col METHOD 1, which only
    runs on CUDA): scales = target_width / original_width with target_width = arange(1, T+1) a CUDA LongTensor
    and original_width = K a Python int; PyTorch's CUDA true division by a CPU scalar multiplies by its reciprocal
    (div_true_kernel_cuda: "compute a * reciprocal(b)"), so s = fl32((t+1) · fl32(1/K)); then
    v = tl.math.round(fl32(c · s)) (Triton/libdevice roundf: half away from zero). The product is rounded in
    fp64 here, which is exact for an fp32 value. For power-of-two K every step is exact and this is the exact
    rule floor((2c(t+1) + K) / 2K); for other K it is not always (K = 36, 68, 72, 100, ...: check_reference.py
    counts them), and fp32 true division (t+1)/K, as a CPU would compute it, differs elsewhere (K = 20, 24, 96).
    Returns the starts of cells 0..K, int64 [R, K+1]: cell c = [start[c], start[c+1]); start[0] = 0 and
    start[K] = t+1 (asserted)."""
    L = rows.to(device="cpu", dtype=torch.int64) + 1
    inv_K = torch.tensor(1.0 / K, dtype=torch.float32)                 # fl32(1/K) (computed in double, as torch)
    s = L.to(torch.float32) * inv_K                                      # [R]   fp32
    c = torch.arange(K + 1, dtype=torch.float32)
    x = c[None, :] * s[:, None]                                          # [R, K+1] fp32
    v = torch.floor(x.to(torch.float64) + 0.5).to(torch.int64)           # round half away from zero (x >= 0)
    if not (bool((v[:, 0] == 0).all()) and torch.equal(v[:, -1], L)):
        raise AssertionError("cell intervals do not tile [0, t+1)")
    return v.to(rows.device)


def cell_bounds(rows: torch.Tensor, K: int):
    """v0, v1 int64 [R, K]: cell c of row t covers keys [v0, v1) (cell_starts)."""
    v = cell_starts(rows, K)
    return v[:, :-1], v[:, 1:]


def key_cells(rows: torch.Tensor, K: int, k_budget: int, n_keys: int):
    """For each row t and key j < n_keys: the cell c(j) whose interval holds j, and whether j is
    emitted when that cell is selected (j <= t, and the per-cell cap of §2.8: a cell of
    n_c = v1 - v0 > k keys emits only the columns v1-1-floor(i·n_c/k), i = 0..k-1).
    c(j) = (number of c with v0(c) <= j) - 1 (the starts are nondecreasing in c).
    Returns cell int64 [R, n_keys] (clamped into [0, K-1] for j > t), keep bool [R, n_keys].
    CHOICE (cap spacing): floor(i·n_c/k) in exact integers, as sea.md writes it. The authors' Triton kernel
    computes trunc(i · (n_c / n)) with Triton's fp32 '/' (PTX div.full.f32, an approximation within 2 ulp, so
    not reproducible bit for bit); the two agree whenever k is a power of two (the paper's k = 64, 128) and
    for k <= 13; tests/sea/README.md item 5."""
    L = rows.to(torch.int64)[:, None] + 1
    j = torch.arange(n_keys, dtype=torch.int64, device=rows.device)[None, :]
    causal = j < L
    v0, v1 = cell_bounds(rows, K)
    jj = j.expand(rows.shape[0], n_keys).contiguous()
    cell = (torch.searchsorted(v0.contiguous(), jj, right=True) - 1).clamp(min=0, max=K - 1)
    v0c, v1c = torch.gather(v0, 1, cell), torch.gather(v1, 1, cell)
    nc = (v1c - v0c).clamp(min=1)
    r = v1c - 1 - j                                                              # position from the cell's end
    # emitted iff some i in [0, k) has floor(i·nc/k) = r  <=>  i0 = ceil(r·k/nc) satisfies i0·nc < (r+1)·k
    i0 = torch.div(r * k_budget + nc - 1, nc, rounding_mode="floor")
    keep = causal & ((nc <= k_budget) | (i0 * nc < (r + 1) * k_budget))
    return cell, keep


def expand_cells_to_keys(sel: torch.Tensor, rows: torch.Tensor, k_budget: int, n_keys: int) -> torch.Tensor:
    """§2.8: compressed selection sel [H, R, K] -> key mask [H, R, n_keys] (row t: keys 0..t)."""
    H, R, K = sel.shape
    cell, keep = key_cells(rows, K, k_budget, n_keys)
    ridx = torch.arange(R, device=sel.device)[:, None]
    return sel[:, ridx, cell] & keep[None]


# ---- sparse attention (§2.9) and mixing (§2.10) ---------------------------------------------------
def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the True entries of each row; rows without any True entry give all zeros."""
    any_key = mask.any(dim=-1, keepdim=True)
    s = scores.masked_fill(~mask, -math.inf)
    mx = torch.where(any_key, s.amax(dim=-1, keepdim=True), torch.zeros_like(s[..., :1]))
    e = torch.exp(s - mx)                                                         # masked -> 0
    den = e.sum(dim=-1, keepdim=True)
    return torch.where(any_key, e / torch.where(any_key, den, torch.ones_like(den)), torch.zeros_like(e))


def sparse_attention(q, k, v, keymask, s_prob, rnd=_identity):
    """§2.9: per (h, t): p = softmax over the selected keys of q_t.k_j (no extra scale),
    p *= sigmoid(s_prob[h,t]); C_sparse = Σ p_j v_j (0 for an empty key set). [H, T, d]."""
    n_keys = keymask.shape[-1]
    scores = rnd(q @ k[:, :n_keys].transpose(-1, -2))
    p = rnd(masked_softmax(scores, keymask))
    p = rnd(p * rnd(torch.sigmoid(s_prob))[..., None])
    return rnd(p @ v[:, :n_keys])


def sea_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, params: dict, k_budget: int,
                rnd=None, force_sel: torch.Tensor = None) -> dict:
    """Full-sequence (prefill) SEA for positions 0..T-1, following §2.2-§2.10 (pseudocode §2.11).
    q, k, v [H, T, d]; params already in q's dtype and device (cast_params).
    force_sel (bool [H, T, K]) replaces the grouped top-k (used for the naive-fp16 yardstick).
    Returns a dict; the main outputs:
      probs [H,T,K] estimated compressed attention Â;  sel bool [H,T,K] selected cells;
      topk_n/thresh/next/margin [T];  keymask bool [H,T,T];  key_count, key_sum [H,T] int64;
      s_prob, s_mix [H,T] gate logits;  out [H,T,d] = C_sea (before out_proj)."""
    rnd = rnd or _identity
    H, T, d = q.shape
    K, m, n_pos = check_params(params, H, d)
    if T > n_pos:
        raise ValueError(f"T={T} exceeds the {n_pos} rows of E_pos (§2.2: resize the table first)")
    p = params
    rows = torch.arange(T, device=q.device)
    # §2.2 V_cat = [E_pos[0:T] ; v]
    e_pos = p[P_EPOS][0, 0, :T]
    vcat = torch.cat([e_pos[None].expand(H, T, d), v], dim=-1)                    # [H, T, 2d]
    # §2.3 causal ReLU-feature linear attention
    fq = relu_features(q, p[P_PROJ], rnd)
    fk = relu_features(k, p[P_PROJ], rnd)
    c_perf = causal_linear_attention(fq, fk, vcat, rnd)                           # [H, T, 2d]
    # §2.4 encoder; §2.9 gate logits
    z = encoder(c_perf, v, p, rnd)                                                # [H, T, 2d]
    s_prob, s_mix = gates(z, p, rnd)
    # §2.5 row decoder -> image; §2.6 CNN decoder -> logits; softmax over K
    img = row_decoder_image(z, p, rnd)                                            # [2H, T, K/4]
    cnn = cnn_decoder(img, p, rnd)
    probs = rnd(torch.softmax(cnn["logits"], dim=-1))                             # [H, T, K]
    # §2.7 grouped top-k
    top = grouped_topk(probs, rows, k_budget)
    sel = top["sel"] if force_sel is None else force_sel.to(device=q.device, dtype=torch.bool)
    # §2.8 expansion; §2.9 sparse attention
    keymask = expand_cells_to_keys(sel, rows, k_budget, T)                        # [H, T, T]
    c_sparse = sparse_attention(q, k, v, keymask, s_prob, rnd)
    # §2.10 mixing with the cumulative mean of V
    count = torch.arange(1, T + 1, device=q.device, dtype=q.dtype)
    c_avg = rnd(torch.cumsum(v, dim=1) / count[None, :, None])
    g_mix = rnd(torch.sigmoid(s_mix))[..., None]
    out = rnd(g_mix * c_sparse + (1.0 - g_mix) * c_avg)
    key_idx = torch.arange(T, device=q.device, dtype=torch.int64)
    return {
        "probs": probs, "logits": cnn["logits"], "sel": sel,
        "topk_n": top["n"], "topk_thresh": top["thresh"], "topk_next": top["next"], "topk_margin": top["margin"],
        "keymask": keymask, "key_count": keymask.sum(dim=-1),
        "key_sum": (keymask.to(torch.int64) * key_idx).sum(dim=-1),
        "s_prob": s_prob, "s_mix": s_mix, "out": out,
        # intermediates (debugging, decode state)
        "fq": fq, "fk": fk, "vcat": vcat, "c_perf": c_perf, "z": z, "img": img,
        "img_ln": cnn["img_ln"], "conv1": cnn["conv1"], "conv2": cnn["conv2"],
        "c_sparse": c_sparse, "c_avg": c_avg,
    }


# ---- incremental decode (§2.12) -------------------------------------------------------------------
def sea_empty_state(params: dict, H: int, d: int, dtype=torch.float64, device="cpu") -> dict:
    """Decode state before position 0."""
    K, m, _ = check_params(params, H, d)
    z = lambda *s: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
    return {
        "t": 0,                                     # number of tokens so far = position of the next one
        "k_cache": z(H, 0, d), "v_cache": z(H, 0, d),
        "S_k": z(H, m), "S_kv": z(H, m, 2 * d),     # Performer running sums (§2.3)
        "v_sum": z(H, d),                           # running sum of v (C_avg = v_sum / (t+1))
        "img_hist": z(2 * H, HIST_ROWS, K // 4),    # LN'd image rows t-4..t-1 (zeros before 0)
        "c1_hist": z(2 * H, HIST_ROWS, K // 4),     # post-ReLU conv1 rows t-4..t-1 (zeros before 0)
    }


def _history(x: torch.Tensor, T0: int) -> torch.Tensor:
    """Rows T0-4..T0-1 of x [C, T, W] (zeros for negative rows) -> [C, 4, W]."""
    C, _, W = x.shape
    h = torch.zeros(C, HIST_ROWS, W, dtype=x.dtype, device=x.device)
    for i in range(HIST_ROWS):
        r = T0 - HIST_ROWS + i
        if r >= 0:
            h[:, i] = x[:, r]
    return h


def sea_state_from_prefill(fwd: dict, k: torch.Tensor, v: torch.Tensor, T0: int) -> dict:
    """The decode state after the first T0 positions, from a sea_forward over >= T0 positions
    (rows < T0 of a longer prefill are the same numbers, by causality)."""
    fk, vcat = fwd["fk"][:, :T0], fwd["vcat"][:, :T0]
    return {
        "t": T0,
        "k_cache": k[:, :T0].clone(), "v_cache": v[:, :T0].clone(),
        "S_k": fk.sum(dim=1),
        "S_kv": torch.einsum("htm,hte->hme", fk, vcat),
        "v_sum": v[:, :T0].sum(dim=1),
        "img_hist": _history(fwd["img_ln"], T0),
        "c1_hist": _history(fwd["conv1"], T0),
    }


def _conv_one_row(rows3, w_eff: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One output row of the causal dilated conv from input rows (t-4, t-2, t) = kernel rows 0, 1, 2.
    rows3: 3 tensors [Cin, W] -> [Cout, W]; columns x-2, x, x+2 with zero padding."""
    cout = w_eff.shape[0]
    cin, W = rows3[0].shape
    y = b[:, None].expand(cout, W).clone()
    for a in range(CONV_LIVE_ROWS):
        xp = torch.zeros(cin, W + 4, dtype=rows3[a].dtype, device=rows3[a].device)
        xp[:, 2:2 + W] = rows3[a]                                                # xp[:, c] = x[:, c-2]
        for bb in range(3):
            y = y + w_eff[:, :, a, bb] @ xp[:, 2 * bb:2 * bb + W]
    return y


def sea_decode_step(state: dict, q_t: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor,
                    params: dict, k_budget: int) -> dict:
    """§2.12: one new token at position t = state['t'] (q_t, k_t, v_t: [H, d]); updates `state`
    in place and returns the row's outputs: probs/logits [H,K], sel bool [H,K], topk_* scalars,
    keymask bool [H, t+1], key_count/key_sum [H], s_prob/s_mix [H], out [H, d]."""
    p = params
    t = state["t"]
    H, d = q_t.shape
    K, _, n_pos = check_params(p, H, d)
    if t >= n_pos:
        raise ValueError(f"position {t} is past the {n_pos} rows of E_pos")
    state["k_cache"] = torch.cat([state["k_cache"], k_t[:, None]], dim=1)
    state["v_cache"] = torch.cat([state["v_cache"], v_t[:, None]], dim=1)
    # Performer running sums (§2.3)
    vcat_t = torch.cat([p[P_EPOS][0, 0, t][None].expand(H, d), v_t], dim=-1)     # [H, 2d]
    fq = relu_features(q_t, p[P_PROJ])                                           # [H, m]
    fk = relu_features(k_t, p[P_PROJ])
    state["S_k"] = state["S_k"] + fk
    state["S_kv"] = state["S_kv"] + fk[:, :, None] * vcat_t[:, None, :]
    num = torch.einsum("hm,hme->he", fq, state["S_kv"])
    den = torch.einsum("hm,hm->h", fq, state["S_k"] + LINATT_EPS)
    c_perf = num / den[:, None]
    # encoder, gates, one image row
    z = encoder(c_perf, v_t, p)                                                  # [H, 2d]
    s_prob, s_mix = gates(z, p)
    img_row = row_decoder_image(z[:, None], p)[:, 0]                              # [2H, K/4]
    x0 = layer_norm(img_row, p[P_CNN_LN1_W], p[P_CNN_LN1_B])
    ih, ch = state["img_hist"], state["c1_hist"]                                  # rows t-4..t-1
    c1 = torch.relu(_conv_one_row((ih[:, 0], ih[:, 2], x0), conv_weight(p, P_CONV1), p[P_CONV1 + "bias"]))
    c2 = torch.relu(_conv_one_row((ch[:, 0], ch[:, 2], c1), conv_weight(p, P_CONV2), p[P_CONV2 + "bias"]))
    u = c2.repeat_interleave(WIDTH_DOWN, dim=-1)                                 # [2H, K]
    area = area_resize_width(conv4_padded(u, p), K)                              # [H, K]
    logits = layer_norm(area, p[P_CNN_LN2_W], p[P_CNN_LN2_B])
    probs = torch.softmax(logits, dim=-1)
    state["img_hist"] = torch.cat([ih[:, 1:], x0[:, None]], dim=1)
    state["c1_hist"] = torch.cat([ch[:, 1:], c1[:, None]], dim=1)
    # selection and expansion for this row
    rows = torch.tensor([t], dtype=torch.int64, device=q_t.device)
    top = grouped_topk(probs[:, None], rows, k_budget)
    keymask = expand_cells_to_keys(top["sel"], rows, k_budget, t + 1)[:, 0]      # [H, t+1]
    # sparse attention over the KV cache, gate, running mean, mix
    scores = torch.einsum("hd,hjd->hj", q_t, state["k_cache"])
    pr = masked_softmax(scores, keymask) * torch.sigmoid(s_prob)[:, None]
    c_sparse = torch.einsum("hj,hjd->hd", pr, state["v_cache"])
    state["v_sum"] = state["v_sum"] + v_t
    c_avg = state["v_sum"] / (t + 1)
    g_mix = torch.sigmoid(s_mix)[:, None]
    out = g_mix * c_sparse + (1.0 - g_mix) * c_avg
    state["t"] = t + 1
    key_idx = torch.arange(t + 1, device=q_t.device, dtype=torch.int64)
    return {
        "probs": probs, "logits": logits, "sel": top["sel"][:, 0],
        "topk_n": top["n"][0], "topk_thresh": top["thresh"][0], "topk_next": top["next"][0],
        "topk_margin": top["margin"][0],
        "keymask": keymask, "key_count": keymask.sum(dim=-1),
        "key_sum": (keymask.to(torch.int64) * key_idx).sum(dim=-1),
        "s_prob": s_prob, "s_mix": s_mix, "out": out, "c_perf": c_perf, "z": z,
    }
