// Wall-clock timing for the tools' progress and performance lines.
#pragma once

#include <chrono>

namespace seaopt_tools {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}
inline double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace seaopt_tools
