#!/usr/bin/env python3
"""Self-checks of tests/sea/sea_reference.py (CPU, fp64, torch only; no numpy, no GPU):

    python3 tests/sea/check_reference.py

Each written-out op is compared with the torch library op that the authors' module uses
(F.layer_norm, F.gelu, F.conv2d with the stored 5x3 kernel/padding/dilation, F.interpolate
'nearest' and 'area'); the budget with Python's exact half-even rounding of a Fraction; the key
expansion with a literal per-cell emission loop of the FlatCSR rule (§2.8); the sparse attention with
a per-(head, query) loop; the whole forward for causality; and the incremental decode (§2.12) with
the prefill, token by token from position 0 and from a prefill state. Also the safetensors
writer/reader and the small fixture set (format, size budget). Prints one line per check and
'N passed, N failed' at the end; exits non-zero on any failure.
"""
import json
import math
import os
import sys
import tempfile
import traceback
from fractions import Fraction

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_sea_fixtures as mk  # noqa: E402
import sea_reference as sr  # noqa: E402

DT = torch.float64
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def close(a, b, tol, what):
    err = float((a - b).abs().max()) if a.numel() else 0.0
    assert err <= tol, f"{what}: max |diff| {err:.3e} > {tol:.1e}"
    return err


def small_case(H=3, T=40, k=4, K=16, seed=5, n_pos=64):
    params = sr.random_sea_params(H, 64, k, K, 33, n_pos, seed)
    q, kk, v = sr.random_sea_inputs(H, T, 64, seed + 1)
    return params, q, kk, v


# ---- elementary ops against torch ------------------------------------------------------------------
@check
def layer_norm_and_gelu():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, 33, generator=g, dtype=DT) * 3 + 1
    w, b = torch.randn(33, generator=g, dtype=DT), torch.randn(33, generator=g, dtype=DT)
    close(sr.layer_norm(x, w, b), F.layer_norm(x, (33,), w, b, eps=1e-5), 1e-13, "layer_norm")
    close(sr.gelu_exact(x), F.gelu(x), 1e-14, "gelu")


@check
def conv_matches_conv2d():
    g = torch.Generator().manual_seed(2)
    for cin, cout, T, W in ((8, 8, 13, 4), (6, 6, 3, 2), (4, 4, 1, 16)):
        x = torch.randn(cin, T, W, generator=g, dtype=DT)
        w = torch.randn(cout, cin, 5, 3, generator=g, dtype=DT)
        mask = torch.zeros_like(w)
        mask[:, :, :3] = 1
        b = torch.randn(cout, generator=g, dtype=DT)
        ours = sr.causal_dilated_conv(x, w * mask, b)
        theirs = F.conv2d(x[None], w * mask, b, padding=(4, 2), dilation=(2, 2))[0]
        close(ours, theirs, 1e-12, "causal_dilated_conv vs conv2d")
        # causality: rows > t never read
        x2 = x.clone()
        x2[:, T // 2:] += 1.0
        d = (sr.causal_dilated_conv(x2, w * mask, b) - ours)[:, :T // 2]
        assert float(d.abs().max() if d.numel() else 0) == 0.0, "conv reads future rows"
        # the literal row formula of sea.md §2.6.2 at a few points
        for (co, t, xx) in ((0, T - 1, W - 1), (cout - 1, 0, 0), (1, T // 2, W // 2)):
            s = float(b[co])
            for ci in range(cin):
                for a in range(3):
                    for bb in range(3):
                        r, c = t - 4 + 2 * a, xx - 2 + 2 * bb
                        if 0 <= r < T and 0 <= c < W:
                            s += float(w[co, ci, a, bb] * x[ci, r, c])
            assert abs(s - float(ours[co, t, xx])) < 1e-12, "conv formula"


@check
def area_resize_matches_interpolate():
    g = torch.Generator().manual_seed(3)
    for K in (4, 8, 16, 64, 96, 256):
        x = torch.randn(3, 5, K + 2, generator=g, dtype=DT)
        ours = sr.area_resize_width(x, K)
        theirs = F.interpolate(x[None], size=(5, K), mode="area")[0]
        close(ours, theirs, 1e-14, f"area K={K}")
        wins = sr.area_windows(K + 2, K)
        assert all(e - s == 2 for s, e in wins), "every window has 2 columns for even K (§2.6.8)"
        if K in (64, 256):  # sea.md's statement
            for xx, (s, e) in enumerate(wins):
                assert (s, e) == ((xx, xx + 2) if xx < K // 2 else (xx + 1, xx + 3)), "area windows"


@check
def linear_attention_matches_quadratic_form():
    g = torch.Generator().manual_seed(4)
    H, T, m, E = 2, 17, 33, 128
    fq = torch.rand(H, T, m, generator=g, dtype=DT)
    fk = torch.rand(H, T, m, generator=g, dtype=DT)
    vc = torch.randn(H, T, E, generator=g, dtype=DT)
    ours = sr.causal_linear_attention(fq, fk, vc)
    a = torch.tril(fq @ fk.transpose(-1, -2))
    num = a @ vc
    den = a.sum(-1) + 1e-6 * fq.sum(-1)
    close(ours, num / den[..., None], 1e-12, "causal linear attention")


@check
def feature_map():
    g = torch.Generator().manual_seed(5)
    W = sr.gaussian_orthogonal_random_matrix(33, 64, g)
    rows = W / W.norm(dim=1, keepdim=True)
    close(rows @ rows.t(), torch.eye(33, dtype=DT), 1e-12, "orthogonal rows")
    x = torch.randn(4, 9, 64, generator=g, dtype=DT)
    close(sr.relu_features(x, W), torch.relu(torch.einsum("...id,jd->...ij", x * 64 ** -0.25, W)) + 1e-3, 1e-13,
          "φ")


@check
def row_decoder_channel_order():
    H, T, K = 3, 5, 16
    params, q, k, v = small_case(H=H, T=T, K=K)
    z = torch.randn(H, T, 128, dtype=DT)
    r = z @ params[sr.P_ROW_W].t() + params[sr.P_ROW_B]
    img = sr.row_decoder_image(z, params)
    W4 = K // 4
    for h in range(H):
        for s in range(2):
            assert torch.equal(img[2 * h + s], r[h, :, s * W4:(s + 1) * W4]), "channel 2h+s"


@check
def cnn_matches_torch_pipeline():
    """§2.6 as an nn.Sequential-style pipeline of library ops (LayerNorm, Conv2d with the stored 5x3
    kernel and masks, ReLU, nearest upsample, 1x1 Conv2d with width padding 1, area interpolate)."""
    H, T, K = 3, 23, 32
    params, q, k, v = small_case(H=H, T=T, K=K)
    g = torch.Generator().manual_seed(6)
    img = torch.randn(2 * H, T, K // 4, generator=g, dtype=DT)
    ours = sr.cnn_decoder(img, params)["logits"]
    p = params
    x = F.layer_norm(img, (K // 4,), p[sr.P_CNN_LN1_W], p[sr.P_CNN_LN1_B], 1e-5)[None]
    x = F.relu(F.conv2d(x, p[sr.P_CONV1 + "weight"] * p[sr.P_CONV1 + "weight_mask"], p[sr.P_CONV1 + "bias"],
                        padding=(4, 2), dilation=(2, 2)))
    x = F.relu(F.conv2d(x, p[sr.P_CONV2 + "weight"] * p[sr.P_CONV2 + "weight_mask"], p[sr.P_CONV2 + "bias"],
                        padding=(4, 2), dilation=(2, 2)))
    x = F.interpolate(x, scale_factor=(1, 4), mode="nearest")
    x = F.conv2d(x, p[sr.P_CONV4 + "weight"] * p[sr.P_CONV4 + "weight_mask"], p[sr.P_CONV4 + "bias"], padding=(0, 1))
    assert x.shape[-1] == K + 2
    x = F.interpolate(x, size=(T, K), mode="area")
    x = F.layer_norm(x, (K,), p[sr.P_CNN_LN2_W], p[sr.P_CNN_LN2_B], 1e-5)[0]
    close(ours, x, 1e-12, "cnn decoder")


# ---- selection and expansion ------------------------------------------------------------------------
def f32(x) -> Fraction:
    """x (a Fraction or int) rounded to the nearest fp32 value, ties to even (normal range), exactly."""
    x = Fraction(x)
    if x == 0:
        return x
    assert x > 0
    e = x.numerator.bit_length() - x.denominator.bit_length()
    while Fraction(2) ** e > x:
        e -= 1
    while Fraction(2) ** (e + 1) <= x:
        e += 1
    ulp = Fraction(2) ** (e - 23)
    return round(x / ulp) * ulp  # Fraction.__round__ is half to even


def authors_budget(H: int, k: int, K: int, t: int) -> int:
    """The authors' H * (k * k_oversample * K / arange(1, T+1)), then torch.round, literally in fp32:
    float / LongTensor = reciprocal() * float (§2.7, sea_reference.topk_budget)."""
    total = f32(f32(f32(Fraction(1, t + 1)) * (k * K)) * H)
    return min(max(round(total), 1), H * K)  # half to even


@check
def budget_rounding():
    n_exact_diff = 0
    for H, k, K in ((4, 5, 16), (4, 2, 8), (12, 64, 64), (16, 64, 64), (32, 64, 64), (32, 64, 256), (16, 7, 96),
                    (3, 3, 12), (3, 5, 20)):
        rows = torch.arange(0, 2048)
        n = sr.topk_budget(rows, H, k, K)
        for t in range(2048):
            want = authors_budget(H, k, K, t)
            assert int(n[t]) == want, f"budget H={H} k={k} K={K} t={t}: {int(n[t])} != {want}"
            exact = min(max(round(Fraction(H * k * K, t + 1)), 1), H * K)  # Python rounds half to even
            if exact != want:
                n_exact_diff += 1
                print(f"    H={H} k={k} K={K} t={t}: fp32 budget {want}, exact rational {exact}")
    assert int(sr.topk_budget(torch.tensor([127]), 4, 5, 16)[0]) == 2, "2.5 -> 2"
    assert int(sr.topk_budget(torch.tensor([63]), 1, 3, 32)[0]) == 2, "1.5 -> 2"
    # 3·5·20/24 = 12.5 exactly, 12.500001 in the authors' fp32 (attention/sea_cpu.cpp's test has the same case)
    assert int(sr.topk_budget(torch.tensor([23]), 3, 5, 20)[0]) == 13, "fp32 12.500001 -> 13"
    assert n_exact_diff > 0, "no case where fp32 and the exact rational differ: the check is vacuous"


@check
def grouped_topk_properties():
    g = torch.Generator().manual_seed(7)
    H, R, K = 4, 50, 16
    probs = torch.softmax(torch.randn(H, R, K, generator=g, dtype=DT), -1)
    rows = torch.arange(R) * 3
    top = sr.grouped_topk(probs, rows, 5)
    sel = top["sel"]
    for r in range(R):
        n = int(top["n"][r])
        cells = probs[:, r].reshape(-1)
        s = sel[:, r].reshape(-1)
        assert int(s.sum()) == n, "selected count = budget"
        if n < H * K:
            assert float(cells[s].min()) >= float(cells[~s].max()), "selection is a top-n"
            assert float(top["thresh"][r]) == float(cells[s].min()), "thresh"
            assert float(top["next"][r]) == float(cells[~s].max()), "next"
            assert float(top["margin"][r]) == float(top["thresh"][r] - top["next"][r]), "margin"
        else:
            assert float(top["next"][r]) == -1.0 and math.isinf(float(top["margin"][r])), "full row"
    # tie rule: equal values -> the lower head-major index h*K+c wins
    tied = torch.zeros(2, 1, 4, dtype=DT)
    tied[0, 0] = torch.tensor([0.1, 0.3, 0.3, 0.3], dtype=DT)
    tied[1, 0] = torch.tensor([0.3, 0.3, 0.2, 0.0], dtype=DT)
    n = int(sr.topk_budget(torch.tensor([19]), 2, 3, 4)[0])  # round(24/20) = 1
    assert n == 1
    for t, want in ((19, [1]), (9, [1, 2]), (5, [1, 2, 3, 4])):  # budgets 1, 2, 4 (24/6 = 4)
        s = sr.grouped_topk(tied, torch.tensor([t]), 3)["sel"].reshape(-1)
        assert s.nonzero().reshape(-1).tolist() == want, f"tie rule t={t}: {s.nonzero().reshape(-1).tolist()}"


def round_half_away(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))  # x >= 0


def authors_cell_start(t: int, c: int, K: int) -> int:
    """The authors' v_start of cell c in row t, literally: scales = arange(1, T+1) / K on CUDA is
    a · fl32(1/K) (a CPU-scalar divisor becomes a reciprocal multiplication), then
    tl.math.round(fl32(c · scale)), half away from zero (§2.8, sea_reference.cell_starts)."""
    s = f32((t + 1) * f32(Fraction(1, K)))
    return round_half_away(f32(c * s))


def literal_expansion(sel_row, t: int, K: int, k: int, starts=None):
    """§2.8 FlatCSR, literally: per selected cell, v0 = round(c·s), v1 = round((c+1)·s) (the authors' fp32),
    n = min(v1-v0, k), columns v1-1-floor(i·(v1-v0)/n), i = 0..n-1. sel_row: bool [K]. Returns the set of keys."""
    starts = starts or [authors_cell_start(t, c, K) for c in range(K + 1)]
    keys = set()
    for c in range(K):
        if not bool(sel_row[c]):
            continue
        v0, v1 = starts[c], starts[c + 1]
        n = min(v1 - v0, k)
        for i in range(n):
            keys.add(v1 - 1 - (i * (v1 - v0)) // n)
    return keys


@check
def expansion_matches_literal_flatcsr():
    g = torch.Generator().manual_seed(8)
    for K, k, T in ((16, 5, 130), (8, 2, 40), (64, 8, 200), (12, 3, 100), (4, 1, 30), (96, 2, 300), (20, 5, 60),
                    (100, 2, 140)):
        H = 2
        sel = torch.rand(H, T, K, generator=g) < 0.4
        rows = torch.arange(T)
        km = sr.expand_cells_to_keys(sel, rows, k, T)
        for t in range(T):
            starts = [authors_cell_start(t, c, K) for c in range(K + 1)]
            for h in range(H):
                want = literal_expansion(sel[h, t], t, K, k, starts)
                got = set(km[h, t].nonzero().reshape(-1).tolist())
                assert got == want, f"K={K} k={k} t={t} h={h}: {sorted(got ^ want)}"
        # the cell map: every key j <= t in exactly one cell, intervals tile [0, t+1)
        v0, v1 = sr.cell_bounds(rows, K)
        assert torch.equal(v0[:, 1:], v1[:, :-1]) and bool((v0[:, 0] == 0).all()) and torch.equal(v1[:, -1], rows + 1)


@check
def interval_map_is_the_authors_fp32():
    """cell_starts against the literal fp32 emulation of the authors' arithmetic, and how often that differs
    from the exact rational rule and from an fp32 true division (t+1)/K (what a CPU computes for
    arange / int). Power-of-two K: all three are the same."""
    for K, T in ((16, 600), (64, 600), (20, 600), (24, 600), (36, 600), (96, 600), (100, 300)):
        rows = torch.arange(T)
        got = sr.cell_starts(rows, K)
        n_exact = n_cpu = 0
        for t in range(T):
            s_cpu = f32(Fraction(t + 1, K))
            for c in range(K + 1):
                want = authors_cell_start(t, c, K)
                assert int(got[t, c]) == want, f"K={K} t={t} c={c}: {int(got[t, c])} != {want}"
                n_exact += want != round_half_away(Fraction(c * (t + 1), K))
                n_cpu += want != round_half_away(f32(c * s_cpu))
        if K & (K - 1) == 0:
            assert n_exact == 0 and n_cpu == 0, f"K={K}: power of two, every step is exact"
        print(f"    K={K} t<{T}: {n_exact} cell starts differ from the exact rule, {n_cpu} from fp32 (t+1)/K")
    # the fixture prefill_H3_T48_k5_K20 relies on these: 0 differences from the exact rule for K = 20, but
    # fp32 true division would move cell 15 of row 41 (31.4999985 -> 31 instead of 32)
    assert int(sr.cell_starts(torch.tensor([41]), 20)[0, 15]) == 32
    assert round_half_away(f32(15 * f32(Fraction(42, 20)))) == 31


@check
def positional_table_stretch():
    """§2.2 long-context resize (F.interpolate nearest, as the authors' trainer): row p of the stretched table
    is row min(floor(p · fl32(n/n_ctx)), n-1) of the original (attention/sea_cpu.cpp: sea_positional_row_index)."""
    for n, n_ctx in ((16, 40), (2048, 4096), (256, 300), (8, 8)):
        e = torch.arange(n, dtype=DT)[:, None].expand(n, 64).reshape(1, 1, n, 64).clone()
        p = sr.stretch_positional_table({sr.P_EPOS: e}, n_ctx)[sr.P_EPOS]
        assert tuple(p.shape) == (1, 1, n_ctx, 64)
        scale = f32(Fraction(n, n_ctx))
        for pos in range(n_ctx):
            want = min(math.floor(pos * scale), n - 1)
            assert int(p[0, 0, pos, 0]) == want, f"{n}->{n_ctx} row {pos}: {int(p[0, 0, pos, 0])} != {want}"
    assert [int(x) for x in sr.stretch_positional_table({sr.P_EPOS: torch.arange(16, dtype=DT)[:, None].expand(16, 64)
                                                        .reshape(1, 1, 16, 64)}, 40)[sr.P_EPOS][0, 0, :11, 0]] == \
        [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4], "the rows sea_cpu's test expects"


@check
def expansion_dense_nearest_path_agreement():
    """Informational: sea.md §2.8 says the dense path c(j) = floor((j+0.5)K/(t+1) - 1e-4) selects the
    same keys except at exact .5 ties and where the cap is active. Count the keys whose cell differs."""
    for K, T in ((16, 130), (64, 1024), (256, 1024)):
        rows = torch.arange(T)
        cell, _ = sr.key_cells(rows, K, 10 ** 9, T)
        j = torch.arange(T)[None, :].to(DT)
        near = torch.floor((j + 0.5) * K / (rows[:, None].to(DT) + 1) - 1e-4).to(torch.int64)
        causal = j < (rows[:, None] + 1)
        diff = int(((cell != near) & causal).sum())
        print(f"    K={K} T={T}: {diff} (row, key) pairs map to another cell under the dense nearest rule")


@check
def sparse_attention_matches_loop():
    g = torch.Generator().manual_seed(9)
    H, T, d = 3, 20, 64
    q = torch.randn(H, T, d, generator=g, dtype=DT) / 4
    k = torch.randn(H, T, d, generator=g, dtype=DT)
    v = torch.randn(H, T, d, generator=g, dtype=DT)
    km = (torch.rand(H, T, T, generator=g) < 0.3) & torch.tril(torch.ones(T, T, dtype=torch.bool))
    km[0, 5] = False  # an empty row
    sp = torch.randn(H, T, generator=g, dtype=DT)
    ours = sr.sparse_attention(q, k, v, km, sp)
    for h in range(H):
        for t in range(T):
            keys = km[h, t].nonzero().reshape(-1)
            if keys.numel() == 0:
                want = torch.zeros(d, dtype=DT)
            else:
                p = torch.softmax(q[h, t] @ k[h, keys].t(), -1) * torch.sigmoid(sp[h, t])
                want = p @ v[h, keys]
            close(ours[h, t], want, 1e-13, f"sparse attention h={h} t={t}")
    assert float(ours[0, 5].abs().max()) == 0.0


# ---- the whole layer ---------------------------------------------------------------------------------
@check
def forward_shapes_and_nondegenerate():
    H, T, k, K = 4, 130, 5, 16
    params, q, kk, v = small_case(H=H, T=T, k=k, K=K, n_pos=256)
    out = sr.sea_forward(q, kk, v, params, k)
    assert out["probs"].shape == (H, T, K) and out["out"].shape == (H, T, 64) and out["keymask"].shape == (H, T, T)
    close(out["probs"].sum(-1), torch.ones(H, T, dtype=DT), 1e-13, "rows sum to 1")
    # not uniform, and no exact ties inside a row (the last LayerNorm's affine breaks the upsample ties)
    assert float(out["probs"].amax(-1).min()) > 2.0 / K, "estimated rows are close to uniform"
    flat = out["probs"].permute(1, 0, 2).reshape(T, H * K)
    srt = torch.sort(flat, dim=1).values
    assert bool((srt[:, 1:] > srt[:, :-1]).all()), "exact ties in the estimated probabilities"
    assert torch.equal(out["key_count"], out["keymask"].sum(-1))
    assert bool((out["keymask"] & ~torch.tril(torch.ones(T, T, dtype=torch.bool))).sum() == 0), "non-causal key"
    # rows with t+1 <= k select everything
    assert bool(out["sel"][:, :k].all())
    # without the last LayerNorm's affine, the x4 upsample + area resize gives exact ties (documented)
    p2 = dict(params)
    p2[sr.P_CNN_LN2_W] = torch.ones(K, dtype=DT)
    p2[sr.P_CNN_LN2_B] = torch.zeros(K, dtype=DT)
    pr2 = sr.sea_forward(q, kk, v, p2, k)["probs"]
    assert torch.equal(pr2[..., 1], pr2[..., 2]) and torch.equal(pr2[..., 2], pr2[..., 3]), "expected upsample ties"


@check
def forward_is_causal():
    H, T, k, K = 3, 60, 4, 16
    params, q, kk, v = small_case(H=H, T=T, k=k, K=K)
    a = sr.sea_forward(q, kk, v, params, k)
    for p in (0, 17, 59):
        q2, k2, v2 = q.clone(), kk.clone(), v.clone()
        q2[:, p:] += 0.5
        k2[:, p:] -= 0.7
        v2[:, p:] *= 1.3
        b = sr.sea_forward(q2, k2, v2, params, k)
        assert torch.equal(a["sel"][:, :p], b["sel"][:, :p]), f"selection before {p} changed"
        close(a["probs"][:, :p], b["probs"][:, :p], 0.0, f"probs before {p}")
        close(a["out"][:, :p], b["out"][:, :p], 1e-14, f"out before {p}")
        if p < T:
            assert float((a["out"][:, p] - b["out"][:, p]).abs().max()) > 0, "perturbation had no effect"


def decode_all(params, q, k, v, kb, T0):
    H, T, d = q.shape
    if T0 == 0:
        state = sr.sea_empty_state(params, H, d)
    else:
        pre = sr.sea_forward(q[:, :T0], k[:, :T0], v[:, :T0], params, kb)
        state = sr.sea_state_from_prefill(pre, k, v, T0)
    return [sr.sea_decode_step(state, q[:, t], k[:, t], v[:, t], params, kb) for t in range(T0, T)]


@check
def decode_matches_prefill():
    for H, T, k, K, T0 in ((4, 90, 5, 16, 0), (4, 90, 5, 16, 1), (4, 90, 5, 16, 3), (4, 90, 5, 16, 61),
                           (2, 40, 2, 8, 0), (3, 70, 8, 64, 9)):
        params, q, kk, v = small_case(H=H, T=T, k=k, K=K, seed=11 + T0, n_pos=128)
        full = sr.sea_forward(q, kk, v, params, k)
        steps = decode_all(params, q, kk, v, k, T0)
        for i, s in enumerate(steps):
            t = T0 + i
            close(s["probs"], full["probs"][:, t], 1e-12, f"decode probs t={t} (T0={T0})")
            assert torch.equal(s["sel"], full["sel"][:, t]), f"decode selection t={t} (T0={T0})"
            assert torch.equal(s["keymask"], full["keymask"][:, t, :t + 1]), f"decode keys t={t}"
            assert torch.equal(s["key_count"], full["key_count"][:, t]) and torch.equal(s["key_sum"], full["key_sum"][:, t])
            assert int(s["topk_n"]) == int(full["topk_n"][t])
            ma, mb = float(s["topk_margin"]), float(full["topk_margin"][t])
            assert (math.isinf(ma) and math.isinf(mb)) or abs(ma - mb) <= 1e-12, f"margin t={t}: {ma} {mb}"
            close(s["out"], full["out"][:, t], 1e-12, f"decode out t={t} (T0={T0})")
            close(s["s_mix"], full["s_mix"][:, t], 1e-12, "s_mix")


# ---- I/O and fixtures ----------------------------------------------------------------------------------
@check
def safetensors_roundtrip():
    tensors = {"a": torch.randn(3, 4).to(torch.float16), "b.c": torch.arange(10, dtype=torch.float32),
               "e": torch.zeros(0, 3, dtype=torch.float32), "s": torch.tensor(2.5, dtype=torch.float32)}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.safetensors")
        # the hand writer (whatever the environment has)
        real = sys.modules.get("safetensors.torch", None)
        sys.modules["safetensors.torch"] = None  # makes 'from safetensors.torch import ...' raise ImportError
        try:
            mk.write_safetensors(path, tensors, {"H": 4, "x": "y"})
        finally:
            if real is None:
                del sys.modules["safetensors.torch"]
            else:
                sys.modules["safetensors.torch"] = real
        back, md = mk.read_safetensors(path)
        assert md == {"H": "4", "x": "y"}
        for name, t in tensors.items():
            assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        assert n % 8 == 0
        try:
            from safetensors.torch import load_file
        except ImportError:
            print("    (safetensors package not installed: cross-check skipped)")
            return
        other = load_file(path)
        for name, t in tensors.items():
            assert torch.equal(other[name], t), name


# The format of tests/sea/README.md: name -> (dtype, shape as a function of the config).
def expected_format(cfg):
    H, T, K, d, m, npos = cfg["H"], cfg["T"], cfg["K"], 64, 33, cfg["n_positions"]
    e = {"q": ("F16", (H, T, d)), "k": ("F16", (H, T, d)), "v": ("F16", (H, T, d)), "config": ("F32", (8,))}
    for name, shape in sr.param_shapes(H, d, K, m, npos).items():
        e[name] = ("F16", shape)
    if cfg["kind"] == "prefill":
        e.update({"ref.probs": ("F32", (H, T, K)), "ref.mask": ("F16", (H, T, K)),
                  "ref.topk_n": ("F32", (T,)), "ref.topk_thresh": ("F32", (T,)), "ref.topk_next": ("F32", (T,)),
                  "ref.topk_margin": ("F32", (T,)), "ref.key_count": ("F32", (H, T)), "ref.key_sum": ("F32", (H, T)),
                  "ref.s_prob": ("F32", (H, T)), "ref.s_mix": ("F32", (H, T)), "ref.out": ("F32", (H, T, d)),
                  "f32.probs": ("F32", (H, T, K)), "f32.mask": ("F16", (H, T, K)), "f32.out": ("F32", (H, T, d)),
                  "naive16.probs": ("F16", (H, T, K)), "naive16.out": ("F16", (H, T, d)),
                  "ref.cell_start": ("F32", (T, K + 1))})
        if cfg["keymask"]:
            e["ref.keymask"] = ("F16", (H, T, T))
        if cfg["debug"]:
            e.update({"ref.logits": ("F32", (H, T, K)), "ref.c_perf": ("F32", (H, T, 2 * d)),
                      "ref.z": ("F32", (H, T, 2 * d)), "ref.img_ln": ("F32", (2 * H, T, K // 4)),
                      "ref.conv1": ("F32", (2 * H, T, K // 4)), "ref.conv2": ("F32", (2 * H, T, K // 4)),
                      "ref.c_sparse": ("F32", (H, T, d)), "ref.c_avg": ("F32", (H, T, d))})
    else:
        n = T - cfg["T0"]
        e.update({"state.S_k": ("F32", (H, m)), "state.S_kv": ("F32", (H, m, 2 * d)), "state.v_sum": ("F32", (H, d)),
                  "state.img_hist": ("F32", (2 * H, 4, K // 4)), "state.c1_hist": ("F32", (2 * H, 4, K // 4)),
                  "dec.probs": ("F32", (n, H, K)), "dec.mask": ("F16", (n, H, K)), "dec.topk_n": ("F32", (n,)),
                  "dec.topk_thresh": ("F32", (n,)), "dec.topk_next": ("F32", (n,)), "dec.topk_margin": ("F32", (n,)),
                  "dec.key_count": ("F32", (n, H)), "dec.key_sum": ("F32", (n, H)), "dec.s_prob": ("F32", (n, H)),
                  "dec.s_mix": ("F32", (n, H)), "dec.out": ("F32", (n, H, d)),
                  "f32.dec.probs": ("F32", (n, H, K)), "f32.dec.out": ("F32", (n, H, d)),
                  "naive16.dec.probs": ("F16", (n, H, K)), "naive16.dec.out": ("F16", (n, H, d))})
    return e


@check
def small_fixture_set():
    with tempfile.TemporaryDirectory() as d:
        argv = sys.argv
        sys.argv = ["make_sea_fixtures.py", "--out", d, "--set", "small", "--device", "cpu"]
        try:
            mk.main()
        finally:
            sys.argv = argv
        with open(os.path.join(d, "manifest.json")) as f:
            manifest = json.load(f)
        assert manifest["total_bytes"] <= mk.SMALL_BUDGET_BYTES
        assert len(manifest["fixtures"]) == len(mk.SMALL_SET)
        for i, entry in enumerate(manifest["fixtures"]):
            tensors, md = mk.read_safetensors(os.path.join(d, entry["file"]))
            cfg = dict(entry["config"], debug=entry["config"]["T"] <= mk.SMALL_DEBUG_MAX_T,
                       keymask=entry["config"]["T"] <= mk.SMALL_KEYMASK_MAX_T)
            want = expected_format(cfg)
            assert set(tensors) == set(want), f"{entry['file']}: names {sorted(set(tensors) ^ set(want))}"
            for name, (dt, shape) in want.items():
                got = (mk._DTYPE_NAMES[tensors[name].dtype], tuple(tensors[name].shape))
                assert got == (dt, shape), f"{entry['file']} {name}: {got} != {(dt, shape)}"
            for key in ("format", "kind", "H", "head_dim", "k", "K", "m", "T", "T0", "n_positions", "seed_params",
                        "seed_inputs", "param_prefix", "stats"):
                assert key in md, f"metadata {key}"
            cfgt = tensors["config"].tolist()
            assert cfgt == [cfg["H"], 64, cfg["k"], cfg["K"], 33, cfg["T"], cfg["n_positions"], cfg.get("T0", cfg["T"])]
            # recompute from the stored (fp16) inputs and params: the fixture is self-consistent
            params = {n: t.to(DT) for n, t in tensors.items() if n.startswith("attention.")}
            q, k, v = (tensors[n].to(DT) for n in ("q", "k", "v"))
            if cfg["kind"] == "prefill":
                assert entry["stats"]["probs_exact_ties"] == 0, "exact ties in the estimated probabilities"
                r = sr.sea_forward(q, k, v, params, cfg["k"])
                close(r["probs"].float(), tensors["ref.probs"], 1e-7, "stored probs")
                close(r["out"].float(), tensors["ref.out"], 1e-6, "stored out")
                assert torch.equal(r["sel"], tensors["ref.mask"] == 1)
                assert torch.equal(r["key_count"].float(), tensors["ref.key_count"])
                assert torch.equal(r["key_sum"].float(), tensors["ref.key_sum"])
                if cfg["keymask"]:
                    assert torch.equal(r["keymask"], tensors["ref.keymask"] == 1)
                assert torch.equal(sr.cell_starts(torch.arange(cfg["T"]), cfg["K"]).float(), tensors["ref.cell_start"])
            else:
                steps = decode_all(params, q, k, v, cfg["k"], cfg["T0"])
                close(torch.stack([s["out"] for s in steps]).float(), tensors["dec.out"], 1e-6, "stored decode out")
                # the yardsticks are near the truth, and the fp32 one much nearer than the fp16 one
                e32 = close(tensors["f32.dec.out"], tensors["dec.out"], 1e-4, "f32 decode out")
                e16 = close(tensors["naive16.dec.out"].float(), tensors["dec.out"], 5e-2, "naive16 decode out")
                assert e32 < e16 / 10, (e32, e16)
            print(f"    {entry['file']}: {entry['bytes']} bytes, format ok")


def main():
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    passed = failed = 0
    only = set(sys.argv[1:])
    for fn in CHECKS:
        if only and fn.__name__ not in only:
            continue
        try:
            fn()
            print(f"ok   {fn.__name__}", flush=True)
            passed += 1
        except Exception:
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc()
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
