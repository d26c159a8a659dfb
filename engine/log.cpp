#include "engine/log.h"

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <vector>

namespace seaopt {
namespace {

// Recursive: a callback may log through the library or call seaopt_log_set (same thread); messages from several
// threads still reach the callback one at a time.
std::recursive_mutex g_log_mutex;
seaopt_log_callback g_log_callback = nullptr;
void *g_log_user_data = nullptr;

void default_log(seaopt_log_level level, const char *text, void *) {
    if (level >= SEAOPT_LOG_WARN) std::fputs(text, stderr);
}

}  // namespace

void log(seaopt_log_level level, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    va_list copy;
    va_copy(copy, args);
    char small[512];
    const int n = std::vsnprintf(small, sizeof small, fmt, args);
    va_end(args);
    std::vector<char> big;
    const char *text = small;
    if (n >= (int)sizeof small) {
        big.resize((size_t)n + 1);
        std::vsnprintf(big.data(), big.size(), fmt, copy);
        text = big.data();
    }
    va_end(copy);
    std::lock_guard<std::recursive_mutex> lock(g_log_mutex);
    if (g_log_callback) {
        g_log_callback(level, text, g_log_user_data);
    } else {
        default_log(level, text, nullptr);
    }
}

}  // namespace seaopt

extern "C" void seaopt_log_set(seaopt_log_callback callback, void *user_data) {
    std::lock_guard<std::recursive_mutex> lock(seaopt::g_log_mutex);
    seaopt::g_log_callback = callback;
    seaopt::g_log_user_data = user_data;
}
