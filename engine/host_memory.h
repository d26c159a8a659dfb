// Host memory the OS says is available (/proc/meminfo's MemAvailable), or 0 where unknown: the loader and the CPU
// context refuse plans larger than it, and a memory estimate reports it.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace seaopt {

inline uint64_t available_host_memory() {
    std::ifstream meminfo("/proc/meminfo");
    std::string key, unit;
    uint64_t kb = 0;
    while (meminfo >> key >> kb >> unit) {
        if (key == "MemAvailable:") return kb * 1024;
    }
    return 0;
}

}  // namespace seaopt
