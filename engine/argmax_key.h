// A greedy pick as one 64-bit key, so that the pick of a set of logits is the max of their keys: the
// device reduces the logits of a decode step to a few keys (engine/cuda/argmax.cu, the persistent decode
// kernel's last phase) and the host takes their max, instead of scanning 50k logits per token itself.
// The pick is the sampler's (engine/sampler.cpp argmax): the largest logit, the lowest id among equal
// ones, +0 and -0 equal. Plain C++ (host) and CUDA (device) alike.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SEAOPT_ARGMAX_HD __host__ __device__
#else
#define SEAOPT_ARGMAX_HD
#endif

namespace seaopt {

// The key of a NaN: above every value's key, so a max over keys keeps it and the host learns of it.
constexpr uint64_t kArgmaxKeyNaN = ~0ull;
// The neutral element of the max (below every value's key, -inf's included).
constexpr uint64_t kArgmaxKeyNone = 0ull;

SEAOPT_ARGMAX_HD inline uint64_t argmax_key(float v, uint32_t index) {
    if (v != v) return kArgmaxKeyNaN;
    if (v == 0.0f) v = 0.0f;  // -0 -> +0: the two zeros compare equal, so the lower id must win between them
    uint32_t b;
#if defined(__CUDA_ARCH__)
    b = __float_as_uint(v);
#else
    std::memcpy(&b, &v, sizeof b);
#endif
    // IEEE bits -> an unsigned order: negatives reversed below the positives.
    const uint32_t ordered = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    // The low half falls as the id grows: among equal values the lowest id has the largest key.
    return ((uint64_t)ordered << 32) | (uint64_t)(0xFFFFFFFFu - index);
}

// The token of the max key of a row, or -1 where the host must decide: a NaN among the logits, every
// logit -inf, or no key at all (the sampler's own scan then says what is wrong).
SEAOPT_ARGMAX_HD inline int32_t argmax_key_token(uint64_t key) {
    if (key == kArgmaxKeyNaN || key == kArgmaxKeyNone) return -1;
    constexpr uint32_t kOrderedMinusInf = ~0xFF800000u;
    if ((uint32_t)(key >> 32) <= kOrderedMinusInf) return -1;
    const uint32_t index = 0xFFFFFFFFu - (uint32_t)key;
    return index > 0x7FFFFFFFu ? -1 : (int32_t)index;
}

}  // namespace seaopt
