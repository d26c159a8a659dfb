// ggml's Q8_0 block quantization (gguf::TensorType::Q8_0; the GGUF spec's and llama.cpp's format): 32 consecutive
// values become one fp16 scale d = max|x| / 127 and 32 int8 q = round(x / d), stored as 34 bytes (d little-endian,
// then q); a value reads back as q * d. The converter writes it (seaopt-convert --outtype q8_0), the CPU engine
// reads it back to fp32, the GPU engine repacks it (model/opt_cuda.cpp). The arithmetic is ggml's
// quantize_row_q8_0_ref (1/d from the fp32 d, roundf: halves away from zero), so the bytes equal llama.cpp's.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "engine/fp16.h"

namespace seaopt {

inline constexpr size_t kQ8Block = 32;       // values per block
inline constexpr size_t kQ8BlockBytes = 34;  // fp16 d + 32 int8

// n (a multiple of 32) finite values -> n / 32 blocks at `out`. Returns false, writing nothing more, at the
// first non-finite value (its index in *bad) or the first block whose scale overflows fp16 (|x| > ~8.3e6; *bad =
// the block's first index): no block can represent those.
inline bool quantize_q8_0(const float *x, uint8_t *out, size_t n, size_t *bad = nullptr) {
    for (size_t b = 0; b < n / kQ8Block; ++b) {
        const float *xb = x + b * kQ8Block;
        float amax = 0.0f;
        for (size_t j = 0; j < kQ8Block; ++j) {
            if (!std::isfinite(xb[j])) {
                if (bad) *bad = b * kQ8Block + j;
                return false;
            }
            amax = std::fmax(amax, std::fabs(xb[j]));
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t *ob = out + b * kQ8BlockBytes;
        const uint16_t dh = f32_to_f16(d);
        if ((dh & 0x7C00u) == 0x7C00u) {
            if (bad) *bad = b * kQ8Block;
            return false;
        }
        std::memcpy(ob, &dh, 2);
        for (size_t j = 0; j < kQ8Block; ++j) {
            const int8_t q = (int8_t)std::roundf(xb[j] * id);  // |x * id| <= 127 (+ rounding): fits
            std::memcpy(ob + 2 + j, &q, 1);
        }
    }
    return true;
}

// Why quantize_q8_0 refused `value` at element `index` (for "tensor 'x' " + this): a non-finite value, or one too
// large for the block's fp16 scale.
inline std::string q8_0_refusal(float value, uint64_t index) {
    return std::string("has ") + (std::isfinite(value) ? "a value too large for Q8_0's fp16 scale" : "a non-finite value") +
           " at element " + std::to_string(index) + "; it cannot be quantized";
}

// n / 32 blocks -> n floats, each q * float(d) (exact in fp32: an 8-bit times an 11-bit significand).
inline void dequantize_q8_0(const uint8_t *in, float *out, size_t n) {
    for (size_t b = 0; b < n / kQ8Block; ++b) {
        const uint8_t *ib = in + b * kQ8BlockBytes;
        uint16_t dh;
        std::memcpy(&dh, ib, 2);
        const float d = f16_to_f32(dh);
        for (size_t j = 0; j < kQ8Block; ++j) out[b * kQ8Block + j] = (float)(int8_t)ib[2 + j] * d;
    }
}

}  // namespace seaopt
