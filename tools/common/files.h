// File helpers shared by the tools.
#pragma once

#include <cstdio>
#include <string>

#include "seaopt.h"

namespace seaopt_tools {

// Reads a whole file as bytes (a prompt may be any bytes; the library checks UTF-8). On failure
// returns false with a message naming the path and the system error.
bool read_file_bytes(const std::string &path, std::string &out, std::string &error);

// --print-memory-plan: the context's planned memory (weights, KV cache, arena, largest buffers).
inline void print_memory_plan(const seaopt_context *ctx) {
    size_t n = 0;
    seaopt_context_memory_plan(ctx, nullptr, 0, &n);
    std::string text(n, '\0');
    if (seaopt_context_memory_plan(ctx, text.data(), text.size(), &n) == SEAOPT_OK) std::fputs(text.c_str(), stderr);
}

}  // namespace seaopt_tools
