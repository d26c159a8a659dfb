#include "tools/common/cli_parse.h"

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <system_error>

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
            // A leading '+' as strtoll takes it; from_chars refuses it, and refuses a value past its type's range.
            const char *first = text.data() + (!text.empty() && text[0] == '+'), *last = text.data() + text.size();
            bool ok;
            if (!text.empty() && text[0] == '-') {  // not after a '+': "+-1" is no number
                long long v = 0;
                const std::from_chars_result r = std::from_chars(first, last, v);
                ok = r.ec == std::errc() && r.ptr == last && v >= lo;
            } else {
                unsigned long long v = 0;
                const std::from_chars_result r = std::from_chars(first, last, v);
                ok = r.ec == std::errc() && r.ptr == last && v <= hi && (lo <= 0 || v >= (unsigned long long)lo);
            }
            return ok ? std::string() : "must be an integer in " + range + ", got '" + text + "'";
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
