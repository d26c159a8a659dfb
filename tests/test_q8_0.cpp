// model/q8_0.h against an independent reference: tests/data/q8_0/reference.bin holds values and their Q8_0 blocks
// as numpy computes them with llama.cpp's gguf-py algorithm (make_reference.py beside it): zero, constant,
// subnormal-scale and large-scale blocks, exact halves (rounded away from zero), random weights at four scales.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <vector>

#include "engine/fp16.h"
#include "model/q8_0.h"

namespace {

struct Reference {
    std::vector<float> values;
    std::vector<uint8_t> blocks;
};

Reference read_reference() {
    std::ifstream in(std::string(SEAOPT_TEST_DATA_DIR) + "/q8_0/reference.bin", std::ios::binary);
    EXPECT_TRUE(in.good()) << "tests/data/q8_0/reference.bin is missing";
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Reference r;
    if (bytes.size() < 4) return r;
    uint32_t n = 0;
    std::memcpy(&n, bytes.data(), 4);
    EXPECT_EQ(bytes.size(), 4 + (size_t)n * 4 + (size_t)n / 32 * 34);
    if (bytes.size() != 4 + (size_t)n * 4 + (size_t)n / 32 * 34) return r;
    r.values.resize(n);
    std::memcpy(r.values.data(), bytes.data() + 4, (size_t)n * 4);
    r.blocks.assign(bytes.begin() + 4 + (ptrdiff_t)n * 4, bytes.end());
    return r;
}

TEST(Q8_0, QuantizesAsGgufPy) {
    const Reference ref = read_reference();
    ASSERT_GT(ref.values.size(), 0u);
    std::vector<uint8_t> got(ref.blocks.size(), 0xAB);
    ASSERT_TRUE(seaopt::quantize_q8_0(ref.values.data(), got.data(), ref.values.size()));
    for (size_t b = 0; b < got.size() / seaopt::kQ8BlockBytes; ++b) {
        EXPECT_EQ(std::memcmp(got.data() + b * 34, ref.blocks.data() + b * 34, 34), 0) << "block " << b << " differs";
    }
}

TEST(Q8_0, DequantizesToQTimesD) {
    const Reference ref = read_reference();
    ASSERT_GT(ref.values.size(), 0u);
    std::vector<float> got(ref.values.size());
    seaopt::dequantize_q8_0(ref.blocks.data(), got.data(), got.size());
    for (size_t i = 0; i < got.size(); ++i) {
        const uint8_t *block = ref.blocks.data() + i / 32 * 34;
        uint16_t d16;
        std::memcpy(&d16, block, 2);
        const double d = seaopt::f16_to_f32(d16);
        const double q = (double)(int8_t)block[2 + i % 32];
        ASSERT_EQ((double)got[i], q * d) << "element " << i;  // exact in fp32
        // And the round trip is within half a step, plus 127 times the scale's fp16 rounding error (2^-11 relative,
        // or 2^-25 absolute where the scale is subnormal or underflows to 0, as in the 1e-6 block).
        EXPECT_LE(std::fabs((double)ref.values[i] - q * d), 0.5 * d * (1 + 1.0 / 2048) + 127.0 * std::max(d / 2048.0, std::ldexp(1.0, -25)))
            << "element " << i;
    }
}

TEST(Q8_0, RefusesWhatNoBlockCanHold) {
    std::vector<float> v(96, 0.25f);
    std::vector<uint8_t> out(3 * 34);
    size_t bad = 0;
    v[40] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(seaopt::quantize_q8_0(v.data(), out.data(), v.size(), &bad));
    EXPECT_EQ(bad, 40u);
    v[40] = 0.25f;
    v[95] = -std::numeric_limits<float>::infinity();
    EXPECT_FALSE(seaopt::quantize_q8_0(v.data(), out.data(), v.size(), &bad));
    EXPECT_EQ(bad, 95u);
    v[95] = 0.25f;
    v[70] = 1e7f;  // d = 78,740: beyond fp16's 65,504
    EXPECT_FALSE(seaopt::quantize_q8_0(v.data(), out.data(), v.size(), &bad));
    EXPECT_EQ(bad, 64u);  // the block's first element
    v[70] = 8.0e6f;  // d = 62,992: fits
    EXPECT_TRUE(seaopt::quantize_q8_0(v.data(), out.data(), v.size(), &bad));
}

}  // namespace
