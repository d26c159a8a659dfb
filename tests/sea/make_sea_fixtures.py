#!/usr/bin/env python3
"""SEA fixtures for the C++ CPU and CUDA SEA: random estimator weights, the tests/sea/sea_reference.py
forward in fp64 (the truth), in fp32, and the naive-fp16 yardstick, written as safetensors files.

    python3 tests/sea/make_sea_fixtures.py --out tests/data/sea --set small --device cpu
    python3 tests/sea/make_sea_fixtures.py --out /tmp/seaopt-sea-fixtures --set large \\
        [--shapes 125m,1.3b] [--T 1024,2048] [--k 64] [--K 64] [--device cuda] [--seed 0]

The small set (H=4, committed, <= 2.5 MB) and the large set (OPT-125m/350m/1.3B head counts,
T up to 2048, not committed, made on the GPU machine at test time) share one format, described in
tests/sea/README.md together with every choice made where sea.md leaves room. Deterministic: the
weights and inputs come from seeded CPU generators; only the device arithmetic may differ in the
last bits between machines (the fixture files, not the seeds, are the reference).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sea_reference as sr  # noqa: E402

FORMAT = "seaopt-sea-fixture-v1"
HEAD_DIM = 64
M_FEATURES = 33          # nbf = 8 (§2.3)
SMALL_N_POSITIONS = 256  # E_pos rows in the small set (2048 in the large set and in real checkpoints)
SMALL_BUDGET_BYTES = int(2.5 * 1024 * 1024)
SHAPES = {"125m": 12, "350m": 16, "1.3b": 32}

# The small set. Each case exercises something (sea.md sections):
#  T=1   : a single row (everything selected, n_0 = H·K).
#  T=7   : K=8 (width K/4 = 2), rows 0-1 dense, rows 2-6 sparse with t+1 < K (empty cells, §2.8).
#  T=64  : the paper's K=64 (row decoder 32x128), k=8; t+1 < K throughout (half the cells empty).
#  T=130 : K=16, k=5: the per-cell cap k is active for t >= 80 (intervals of 6 keys > 5, §2.8), the
#          budget hits an exact .5 at t=127 (320/128 = 2.5 -> 2, half-even, §2.7), heads with 0 keys.
#  decode: the T=130 parameters' shape, prefill of T0=76 then 8 decode steps (t = 76..83) across the
#          start of the cap (§2.12).
#  K=100 : H=3, k=1, T=24: the authors' fp32 arithmetic where it is not exact (§2.7, §2.8; README items 2, 4):
#          the interval map of a non-power-of-two K (22 cell starts differ from the exact rational rule, 22
#          from an fp32 true division (t+1)/K), and the budget 3·1·100/24 = 12.5 that fp32 makes 12.500001 -> 13.
#          (Appended last so that the other fixtures keep their seeds.)
SMALL_SET = [
    dict(kind="prefill", H=4, T=1, k=4, K=16),
    dict(kind="prefill", H=4, T=7, k=2, K=8),
    dict(kind="prefill", H=4, T=64, k=8, K=64),
    dict(kind="prefill", H=4, T=130, k=5, K=16),
    dict(kind="decode", H=4, T=84, T0=76, k=5, K=16),
    dict(kind="prefill", H=3, T=24, k=1, K=100),
]
SMALL_KEYMASK_MAX_T = 64  # ref.keymask [H,T,T] is stored for small fixtures with T <= this
SMALL_DEBUG_MAX_T = 7     # ref.<intermediates> stored for small fixtures with T <= this (always in large)


# ---- safetensors I/O (no numpy or safetensors package needed) -------------------------------------
_DTYPE_NAMES = {torch.float16: "F16", torch.float32: "F32", torch.float64: "F64", torch.int32: "I32",
                torch.int64: "I64", torch.uint8: "U8", torch.bool: "BOOL"}
_DTYPES = {v: k for k, v in _DTYPE_NAMES.items()}


def _tensor_bytes(t: torch.Tensor) -> bytes:
    if sys.byteorder != "little":
        raise RuntimeError("safetensors data is little-endian; this writer assumes a little-endian host")
    if t.numel() == 0:
        return b""
    u8 = t.contiguous().reshape(-1).view(torch.uint8)
    try:
        return u8.numpy().tobytes()
    except Exception:  # no numpy: slow but correct
        return bytes(u8.tolist())


def write_safetensors(path: str, tensors: dict, metadata: dict) -> None:
    """Writes a safetensors file: 8-byte little-endian header length, JSON header
    {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}} padded with spaces to a multiple
    of 8, then the raw little-endian data. Uses safetensors.torch.save_file when importable."""
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    metadata = {str(k): str(v) for k, v in metadata.items()}
    try:
        from safetensors.torch import save_file
    except ImportError:
        save_file = None
    if save_file is not None:
        save_file(tensors, path, metadata=metadata)
        return
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        b = _tensor_bytes(t)
        header[name] = {"dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def read_safetensors(path: str):
    """Returns ({name: tensor}, metadata) for a safetensors file (any of the dtypes above)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        s, e = info["data_offsets"]
        dt = _DTYPES[info["dtype"]]
        if e == s:
            out[name] = torch.empty(info["shape"], dtype=dt)
        else:
            out[name] = torch.frombuffer(bytearray(data[base + s:base + e]), dtype=dt).reshape(info["shape"])
    return out, metadata


# ---- fixture construction ---------------------------------------------------------------------------
def round_fp16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(x.dtype)


def no_tf32() -> None:
    """fp32 matmuls must be IEEE fp32 on the GPU (the fp32 outputs are compared with a C++ fp32).
    (The reference calls no convolution library op; cuDNN is set too for safety.)"""
    try:  # torch >= 2.9 (do not mix with the legacy flags below)
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    except Exception:  # older torch: AssertionError/AttributeError for the unknown attribute
        pass
    else:
        try:
            torch.backends.cudnn.conv.fp32_precision = "ieee"
        except Exception:
            pass
        return
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    except Exception:
        pass


def run_forward(q, k, v, params, k_budget, dtype, device, **kw):
    P = sr.cast_params(params, dtype, device)
    with torch.no_grad():
        return sr.sea_forward(q.to(device=device, dtype=dtype), k.to(device=device, dtype=dtype),
                              v.to(device=device, dtype=dtype), P, k_budget, **kw)


def f32(t):
    return t.detach().to("cpu", torch.float32)


def f16(t):
    return t.detach().to("cpu", torch.float16)


def mask16(sel):
    return sel.detach().to("cpu").to(torch.float16)


def max_abs(a, b) -> float:
    if a.numel() == 0:
        return 0.0
    return float((a.to("cpu", torch.float64) - b.to("cpu", torch.float64)).abs().max())


def fixture_name(cfg: dict) -> str:
    who = cfg.get("shape") or f"H{cfg['H']}"
    name = f"{cfg['kind']}_{who}_T{cfg['T']}"
    if cfg["kind"] == "decode":
        name += f"_from{cfg['T0']}"
    return name + f"_k{cfg['k']}_K{cfg['K']}"


def common_tensors(cfg, params, q, k, v):
    t = {"q": f16(q), "k": f16(k), "v": f16(v)}
    for name, p in params.items():
        t[name] = f16(p)
    t["config"] = torch.tensor([cfg["H"], HEAD_DIM, cfg["k"], cfg["K"], M_FEATURES, cfg["T"], cfg["n_positions"],
                                cfg.get("T0", cfg["T"])], dtype=torch.float32)
    return t


def metadata_for(cfg, stats, device) -> dict:
    md = {
        "format": FORMAT, "kind": cfg["kind"], "H": cfg["H"], "head_dim": HEAD_DIM, "k": cfg["k"], "K": cfg["K"],
        "m": M_FEATURES, "T": cfg["T"], "T0": cfg.get("T0", cfg["T"]), "n_positions": cfg["n_positions"],
        "seed_params": cfg["seed_params"], "seed_inputs": cfg["seed_inputs"], "shape": cfg.get("shape", ""),
        "param_prefix": sr.PARAM_PREFIX, "generator": "tests/sea/make_sea_fixtures.py",
        "torch": torch.__version__, "device": device,
        "tie_rule": "grouped top-k ranks cells by (value desc, head-major index h*K+c asc)",
        "expansion": "FlatCSR interval rule with per-cell cap k (sea.md 2.8)",
        "stats": json.dumps(stats, sort_keys=True),
    }
    return {k: str(v) for k, v in md.items()}


def exact_budget(T: int, H: int, k: int, K: int) -> torch.Tensor:
    """n_t with the exact rational H·k·K/(t+1) rounded half to even (not the authors' fp32; for the stats)."""
    L = torch.arange(1, T + 1, dtype=torch.int64)
    q, r = torch.div(H * k * K, L, rounding_mode="floor"), (H * k * K) % L
    up = (2 * r > L) | ((2 * r == L) & (q % 2 == 1))
    return (q + up.to(torch.int64)).clamp(min=1, max=H * K)


def other_cell_starts(T: int, K: int):
    """The interval starts by the exact rational rule floor((2c(t+1) + K) / 2K), and by an fp32 true
    division s = fl32((t+1)/K) (what a CPU computes for arange / int); for the stats."""
    L = torch.arange(1, T + 1, dtype=torch.int64)[:, None]
    c = torch.arange(K + 1, dtype=torch.int64)[None, :]
    exact = torch.div(2 * c * L + K, 2 * K, rounding_mode="floor")
    s = L.to(torch.float32) / K
    div32 = torch.floor((c.to(torch.float32) * s).to(torch.float64) + 0.5).to(torch.int64)
    return exact, div32


def mask_row_diff(sel_a, sel_b) -> int:
    """Number of (head, query) rows whose selected cells differ."""
    return int((sel_a.to("cpu") != sel_b.to("cpu")).any(dim=-1).sum())


def build_prefill(cfg, device, debug, store_keymask):
    H, T, kb = cfg["H"], cfg["T"], cfg["k"]
    params = sr.random_sea_params(H, HEAD_DIM, kb, cfg["K"], M_FEATURES, cfg["n_positions"], cfg["seed_params"])
    q, k, v = sr.random_sea_inputs(H, T, HEAD_DIM, cfg["seed_inputs"])
    ref = run_forward(q, k, v, params, kb, torch.float64, device)
    ref = {name: (x.cpu() if torch.is_tensor(x) else x) for name, x in ref.items()}
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    r32 = run_forward(q, k, v, params, kb, torch.float32, device)
    r32 = {name: r32[name].cpu() for name in ("probs", "sel", "out")}
    n16 = run_forward(q, k, v, params, kb, torch.float32, device, rnd=round_fp16, force_sel=ref["sel"])
    n16 = {name: n16[name].cpu() for name in ("probs", "out")}

    starts = sr.cell_starts(torch.arange(T), cfg["K"])
    t = common_tensors(cfg, params, q, k, v)
    t.update({
        "ref.probs": f32(ref["probs"]), "ref.mask": mask16(ref["sel"]), "ref.cell_start": f32(starts),
        "ref.topk_n": f32(ref["topk_n"]), "ref.topk_thresh": f32(ref["topk_thresh"]),
        "ref.topk_next": f32(ref["topk_next"]), "ref.topk_margin": f32(ref["topk_margin"]),
        "ref.key_count": f32(ref["key_count"]), "ref.key_sum": f32(ref["key_sum"]),
        "ref.s_prob": f32(ref["s_prob"]), "ref.s_mix": f32(ref["s_mix"]), "ref.out": f32(ref["out"]),
        "f32.probs": f32(r32["probs"]), "f32.mask": mask16(r32["sel"]), "f32.out": f32(r32["out"]),
        "naive16.probs": f16(n16["probs"]), "naive16.out": f16(n16["out"]),
    })
    if store_keymask:
        t["ref.keymask"] = mask16(ref["keymask"])
    if debug:
        for name in ("logits", "c_perf", "z", "img_ln", "conv1", "conv2", "c_sparse", "c_avg"):
            t["ref." + name] = f32(ref[name])

    n_rows = H * T
    diff32 = mask_row_diff(r32["sel"], ref["sel"])
    kc = ref["key_count"]
    finite_margin = ref["topk_margin"][torch.isfinite(ref["topk_margin"])]
    flat_sorted = torch.sort(ref["probs"].permute(1, 0, 2).reshape(T, -1), dim=1).values
    exact_starts, div32_starts = other_cell_starts(T, cfg["K"])
    stats = {
        "budget_rows_fp32_vs_exact": int((ref["topk_n"].cpu() != exact_budget(T, H, kb, cfg["K"])).sum()),
        "cell_starts_vs_exact": int((starts.cpu() != exact_starts).sum()),
        "cell_starts_vs_fp32_division": int((starts.cpu() != div32_starts).sum()),
        "probs_exact_ties": int((flat_sorted[:, 1:] == flat_sorted[:, :-1]).sum()),
        "probs_maxabs_f32": max_abs(r32["probs"], ref["probs"]),
        "probs_maxabs_naive16": max_abs(n16["probs"], ref["probs"]),
        "out_maxabs_f32": max_abs(r32["out"], ref["out"]),
        "out_maxabs_naive16": max_abs(n16["out"], ref["out"]),
        "mask_rows_diff_f32": diff32, "mask_rows": n_rows,
        "mask_rows_diff_f32_fraction": diff32 / n_rows,
        "margin_min": float(finite_margin.min()) if finite_margin.numel() else None,
        "rows_margin_below_1e-6": int((ref["topk_margin"] < 1e-6).sum()),
        "rows_all_selected": int((ref["topk_n"] == H * cfg["K"]).sum()),
        "zero_key_head_rows": int((kc == 0).sum()),
        "keys_per_row_total_last": int(kc[:, -1].sum()),
        "keys_per_head_max": int(kc.max()),
        "out_abs_max": float(ref["out"].abs().max()),
        "probs_max": float(ref["probs"].max()),
    }
    return t, stats


def build_decode(cfg, device):
    H, T, T0, kb, K = cfg["H"], cfg["T"], cfg["T0"], cfg["k"], cfg["K"]
    params = sr.random_sea_params(H, HEAD_DIM, kb, K, M_FEATURES, cfg["n_positions"], cfg["seed_params"])
    q, k, v = sr.random_sea_inputs(H, T, HEAD_DIM, cfg["seed_inputs"])
    dt = torch.float64
    P = sr.cast_params(params, dt, device)
    qd, kd, vd = (x.to(device=device, dtype=dt) for x in (q, k, v))
    with torch.no_grad():
        full = sr.sea_forward(qd, kd, vd, P, kb)
        if T0 > 0:
            pre = sr.sea_forward(qd[:, :T0], kd[:, :T0], vd[:, :T0], P, kb)
            state = sr.sea_state_from_prefill(pre, kd, vd, T0)
        else:
            state = sr.sea_empty_state(P, H, HEAD_DIM, dt, device)
        t = common_tensors(cfg, params, q, k, v)
        for name in ("S_k", "S_kv", "v_sum", "img_hist", "c1_hist"):
            t["state." + name] = f32(state[name])
        steps = [sr.sea_decode_step(state, qd[:, i], kd[:, i], vd[:, i], P, kb) for i in range(T0, T)]

    def stack(name):
        return torch.stack([s[name].cpu() for s in steps], 0)

    sel = stack("sel")
    t.update({
        "dec.probs": f32(stack("probs")), "dec.mask": mask16(sel),
        "dec.topk_n": f32(stack("topk_n")), "dec.topk_thresh": f32(stack("topk_thresh")),
        "dec.topk_next": f32(stack("topk_next")), "dec.topk_margin": f32(stack("topk_margin")),
        "dec.key_count": f32(stack("key_count")), "dec.key_sum": f32(stack("key_sum")),
        "dec.s_prob": f32(stack("s_prob")), "dec.s_mix": f32(stack("s_mix")), "dec.out": f32(stack("out")),
    })
    # Yardsticks at the decode rows, from whole-sequence runs (decode == prefill by causality, §2.12, checked
    # below): the reference in fp32, and the naive-fp16 run with the selection forced to the truth's.
    r32 = run_forward(q, k, v, params, kb, torch.float32, device)
    n16 = run_forward(q, k, v, params, kb, torch.float32, device, rnd=round_fp16, force_sel=full["sel"])
    rows = lambda x: x[:, T0:].permute(1, 0, 2).cpu()  # noqa: E731  [H, T, .] -> [n, H, .]
    t.update({
        "f32.dec.probs": f32(rows(r32["probs"])), "f32.dec.out": f32(rows(r32["out"])),
        "naive16.dec.probs": f16(rows(n16["probs"])), "naive16.dec.out": f16(rows(n16["out"])),
    })
    # The decode path must reproduce the prefill rows T0..T-1 (fp64): same selection, same numbers.
    fp = full["probs"][:, T0:].permute(1, 0, 2).cpu()
    fo = full["out"][:, T0:].permute(1, 0, 2).cpu()
    fs = full["sel"][:, T0:].permute(1, 0, 2).cpu()
    probs_err, out_err = max_abs(stack("probs"), fp), max_abs(stack("out"), fo)
    sel_diff = int((sel != fs).any(dim=-1).sum())
    if probs_err > 1e-9 or out_err > 1e-9 or sel_diff:
        raise RuntimeError(f"{fixture_name(cfg)}: decode != prefill (probs {probs_err:.3e}, out {out_err:.3e}, "
                           f"{sel_diff} mask rows differ)")
    stats = {"decode_vs_prefill_probs_maxabs": probs_err, "decode_vs_prefill_out_maxabs": out_err,
             "probs_maxabs_f32": max_abs(rows(r32["probs"]), stack("probs")),
             "probs_maxabs_naive16": max_abs(rows(n16["probs"]), stack("probs")),
             "out_maxabs_f32": max_abs(rows(r32["out"]), stack("out")),
             "out_maxabs_naive16": max_abs(rows(n16["out"]), stack("out")),
             "mask_rows_diff_f32": mask_row_diff(rows(r32["sel"]), sel),
             "decode_vs_prefill_mask_rows_diff": sel_diff, "steps": T - T0,
             "margin_min": float(stack("topk_margin").min())}
    return t, stats


def make(cfgs, out_dir, device, set_name):
    os.makedirs(out_dir, exist_ok=True)
    manifest = {"format": FORMAT, "set": set_name, "torch": torch.__version__, "device": device, "fixtures": []}
    total = 0
    for cfg in cfgs:
        t0 = time.time()
        if cfg["kind"] == "prefill":
            tensors, stats = build_prefill(cfg, device, cfg["debug"], cfg["keymask"])
        else:
            tensors, stats = build_decode(cfg, device)
        name = fixture_name(cfg) + ".safetensors"
        path = os.path.join(out_dir, name)
        write_safetensors(path, tensors, metadata_for(cfg, stats, device))
        size = os.path.getsize(path)
        total += size
        entry = {"file": name, "config": {k: v for k, v in cfg.items() if k not in ("debug", "keymask")},
                 "bytes": size, "stats": stats}
        manifest["fixtures"].append(entry)
        print(f"{name}: {size / 1e6:.3f} MB, {time.time() - t0:.1f} s, " + json.dumps(stats, sort_keys=True), flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    manifest["total_bytes"] = total
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"total {total / 1e6:.3f} MB in {out_dir}", flush=True)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--set", choices=("small", "large"), required=True)
    ap.add_argument("--shapes", default="125m,1.3b", help="large set: OPT shapes (125m, 350m, 1.3b)")
    ap.add_argument("--T", default="1024,2048", help="large set: sequence lengths of the prefill fixtures")
    ap.add_argument("--k", default="64", help="large set: comma list of k")
    ap.add_argument("--K", default="64", help="large set: comma list of K (multiples of 4)")
    ap.add_argument("--decode-steps", type=int, default=8,
                    help="large set: decode fixture per shape = prefill of max(T)-steps, then steps")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    no_tf32()

    cfgs = []
    if args.set == "small":
        for i, c in enumerate(SMALL_SET):
            c = dict(c, n_positions=SMALL_N_POSITIONS, seed_params=args.seed * 1000 + 10 * i,
                     seed_inputs=args.seed * 1000 + 10 * i + 1)
            c["debug"] = c["T"] <= SMALL_DEBUG_MAX_T
            c["keymask"] = c["T"] <= SMALL_KEYMASK_MAX_T
            cfgs.append(c)
    else:
        Ts = [int(x) for x in args.T.split(",") if x]
        i = 0
        for shape in [s for s in args.shapes.split(",") if s]:
            if shape not in SHAPES:
                raise SystemExit(f"unknown shape {shape} (known: {', '.join(SHAPES)})")
            for kb in [int(x) for x in args.k.split(",") if x]:
                for K in [int(x) for x in args.K.split(",") if x]:
                    base = dict(shape=shape, H=SHAPES[shape], k=kb, K=K, n_positions=2048, debug=True, keymask=False)
                    for T in Ts:
                        cfgs.append(dict(base, kind="prefill", T=T, seed_params=args.seed * 1000 + 100 + 10 * i,
                                         seed_inputs=args.seed * 1000 + 100 + 10 * i + 1))
                        i += 1
                    Tmax = max(Ts)
                    cfgs.append(dict(base, kind="decode", T=Tmax, T0=max(0, Tmax - args.decode_steps),
                                     seed_params=args.seed * 1000 + 100 + 10 * i,
                                     seed_inputs=args.seed * 1000 + 100 + 10 * i + 1))
                    i += 1
    for c in cfgs:
        if c["K"] % 4 or c["T"] > c["n_positions"]:
            raise SystemExit(f"bad config {c}: K must be a multiple of 4 and T <= {c['n_positions']}")
    total = make(cfgs, args.out, device, args.set)
    if args.set == "small" and total > SMALL_BUDGET_BYTES:
        raise SystemExit(f"small set is {total} bytes, over the {SMALL_BUDGET_BYTES}-byte budget")


if __name__ == "__main__":
    main()
