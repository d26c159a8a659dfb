// main() for GPU test programs: where no CUDA GPU is usable, say so and exit 77, which ctest
// reports as "skipped" (SKIP_RETURN_CODE); otherwise run the tests.
#include <gtest/gtest.h>

#include <cstdio>

#include "engine/cuda/device.h"

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (seaopt::cuda_device_count() == 0) {
        std::printf("SKIPPED: no CUDA GPU here (%s)\n", seaopt::cuda_build_description().c_str());
        return 77;
    }
    return RUN_ALL_TESTS();
}
