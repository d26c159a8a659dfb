#!/usr/bin/env python3
"""Q8_0 reference blocks for tests/test_q8_0.cpp, made with numpy as llama.cpp's gguf-py quantizes
(gguf/quants.py, class Q8_0: d = max|x| / 127 in float32, id = 1/d (0 for d == 0), q = round half away from
zero of x * id, d stored as float16). An implementation independent of seaopt's model/q8_0.h.

Writes reference.bin: uint32 n, then n float32 values, then n / 32 blocks of 34 bytes (float16 d, 32 int8 q).
Run: python3 tests/data/q8_0/make_reference.py (numpy only)."""
import os
import struct

import numpy as np


def np_roundf(n):  # gguf-py's: halves away from zero, as C's roundf
    a = abs(n)
    floored = np.floor(a)
    b = floored + np.floor(2 * (a - floored))
    return np.sign(n) * b


def quantize_q8_0(values):
    blocks = values.reshape(-1, 32).astype(np.float32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    qs = np_roundf(blocks * inv).astype(np.int8)
    out = bytearray()
    for b in range(blocks.shape[0]):
        out += np.float16(d[b, 0]).tobytes() + qs[b].tobytes()
    return bytes(out)


def main():
    rng = np.random.default_rng(20261127)
    parts = [
        np.zeros(32, np.float32),                                  # d = 0: all q = 0
        np.linspace(-1, 1, 32, dtype=np.float32),                  # symmetric, max at both ends
        (np.arange(32, dtype=np.float32) - 31) / 2,                # negative max; halves after scaling
        np.full(32, 3.0, np.float32),                              # constant: q = 127
        rng.standard_normal(32).astype(np.float32) * 1e-6,         # d in fp16's subnormal range
        rng.standard_normal(32).astype(np.float32) * 6.0e4,        # large d (max finite fp16 d is 65504)
        np.array([127.0, 0.5, -0.5, 1.5, -1.5, 2.5, 63.5, -63.5] * 4, np.float32),  # exact halves at d = 1
    ]
    for scale in (0.02, 0.1, 1.0, 7.0):  # OPT-like weights and wider ones
        parts.append((rng.standard_normal(32 * 16) * scale).astype(np.float32))
    values = np.concatenate(parts).astype(np.float32)
    assert values.size % 32 == 0
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "reference.bin"), "wb") as f:
        f.write(struct.pack("<I", values.size))
        f.write(values.astype("<f4").tobytes())
        f.write(quantize_q8_0(values))
    print(f"wrote {values.size} values, {values.size // 32} blocks")


if __name__ == "__main__":
    main()
