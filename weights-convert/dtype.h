// The element types a source checkpoint may hold (and seaopt-convert may write).
#pragma once

#include <cstddef>

namespace seaopt::convert {

enum class DType { F32, F16, BF16 };

inline const char *dtype_name(DType t) {
    switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    }
    return "?";
}

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

}  // namespace seaopt::convert
