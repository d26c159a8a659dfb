// The device path: discovery and a kernel checked against its CPU reference (engine/fp16.h).
// Runs only where a GPU exists (tests/gpu_test_main.cpp skips the program otherwise).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "engine/cuda/device.h"
#include "engine/fp16.h"

namespace {

TEST(GpuDevice, ReportsADevice) {
    const std::string name = seaopt::cuda_device_name(0);
    std::printf("GPU 0: %s; %s\n", name.c_str(), seaopt::cuda_build_description().c_str());
    EXPECT_FALSE(name.empty());
}

TEST(GpuDevice, HalfToFloatMatchesCpuReferenceForAllPatterns) {
    const std::vector<float> gpu = seaopt::cuda_f16_to_f32_all_patterns(0);
    ASSERT_EQ(gpu.size(), 65536u);
    for (uint32_t bits = 0; bits < 65536; ++bits) {
        const float cpu = seaopt::f16_to_f32((uint16_t)bits);
        if (std::isnan(cpu)) {
            EXPECT_TRUE(std::isnan(gpu[bits])) << bits;
        } else {
            EXPECT_EQ(std::memcmp(&cpu, &gpu[bits], 4), 0) << "bits 0x" << std::hex << bits;
        }
    }
}

}  // namespace
