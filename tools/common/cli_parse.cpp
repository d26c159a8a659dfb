#include "tools/common/cli_parse.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

namespace seaopt_tools {

int guarded_main(const char *program, int argc, char **argv, int (*tool_main)(int, char **)) {
    int status = 1;
    try {
        status = tool_main(argc, argv);
    } catch (const std::bad_alloc &) {
        std::fprintf(stderr, "%s: error: out of memory\n", program);
        return 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s: error: %s\n", program, e.what());
        return 1;
    }
    // A tool that failed has said why (a failed write included); one that succeeded must have written its output.
    if (status != 0) return status;
    errno = 0;
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
        const int e = errno;
        std::fprintf(stderr, "%s: error: cannot write the output%s%s\n", program, e ? ": " : "",
                     e ? std::strerror(e) : "");
        return 1;
    }
    return status;
}

CLI::Validator integer_in_range(long long lo, unsigned long long hi) {
    const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    return CLI::Validator(
        [lo, hi, range](std::string &text) -> std::string {
            const std::string bad = "must be an integer in " + range + ", got '" + text + "'";
            size_t i = 0;
            const bool negative = !text.empty() && text[0] == '-';
            if (negative || (!text.empty() && text[0] == '+')) i = 1;
            if (i == text.size()) return bad;
            unsigned long long magnitude = 0;
            for (; i < text.size(); ++i) {
                if (text[i] < '0' || text[i] > '9') return bad;
                const unsigned digit = (unsigned)(text[i] - '0');
                if (magnitude > (~0ull - digit) / 10) return bad;  // past 2^64 - 1
                magnitude = magnitude * 10 + digit;
            }
            if (negative) {
                // -magnitude >= lo, i.e. magnitude <= |lo| (computed without overflowing at LLONG_MIN)
                const unsigned long long most = lo >= 0 ? 0ull : (unsigned long long)(-(lo + 1)) + 1ull;
                if (magnitude > most || (lo > 0 && magnitude == 0)) return bad;
            } else if (magnitude > hi || (lo > 0 && magnitude < (unsigned long long)lo)) {
                return bad;
            }
            return std::string();
        },
        "INT in " + range);
}

bool parse_command_line(CLI::App &app, int argc, char **argv, int *exit_status) {
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        *exit_status = app.exit(e);
        return false;
    } catch (const CLI::ParseError &e) {
        std::fprintf(stderr, "%s: error: %s\nRun with --help for more information.\n", app.get_name().c_str(),
                     e.what());
        *exit_status = 1;
        return false;
    }
    return true;
}

}  // namespace seaopt_tools
