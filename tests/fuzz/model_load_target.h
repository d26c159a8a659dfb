// One fuzz input through the model loader (anchors E3): the bytes as a seaopt GGUF file, loaded on the CPU with
// every check. A hostile file must either load or be refused with a seaopt::Error; anything else escaping (another
// exception type) or a sanitizer report is a bug. Shared by the libFuzzer target (fuzz_model_load.cpp) and the
// mutation test in test_api_errors.cpp, which CI also runs under AddressSanitizer and UBSan.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/error.h"
#include "model/opt_model.h"
#include "seaopt.h"

namespace seaopt_fuzz {

// true: loaded; false: refused with a seaopt::Error (its code in *code when given).
inline bool load_model_bytes(const uint8_t *data, size_t size, seaopt_status *code = nullptr) {
    seaopt_model_params params = seaopt_model_default_params();
    params.device = SEAOPT_DEVICE_CPU;
    params.check_tensors = true;
    try {
        seaopt::load_opt_model_from_memory(data, size, "fuzz input", params);
        return true;
    } catch (const seaopt::Error &e) {
        if (code) *code = e.code();
        return false;
    }
}

}  // namespace seaopt_fuzz
