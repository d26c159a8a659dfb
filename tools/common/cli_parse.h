// The command-line entry of every program (the tools and the converters): CLI11 parsing with the tools' error format,
// and a main that nothing escapes. Kept apart from cli.h, which needs the library (libseaopt and, in a CUDA build,
// the CUDA runtime): the converters link only this, so that loading them does not map cuBLASLt (200 MB of RSS).
#pragma once

#include <CLI/CLI.hpp>

namespace seaopt_tools {

// Runs a tool's main so that nothing escapes it: std::bad_alloc becomes "PROGRAM: error: out of memory", any other
// exception "PROGRAM: error: ...", each with exit status 1 (the library reports its own errors as status codes; this
// catches the tools' own allocations and I/O). Then stdout is flushed: a failed write (a full disk, /dev/full, a
// closed pipe) is an error too, not a lost result with status 0.
int guarded_main(const char *program, int argc, char **argv, int (*tool_main)(int, char **));

// Parses the command line. False when main should return *exit_status now: 0 after --help, 1
// after a parse error, printed as "<app name>: error: ...\nRun with --help for more information.".
bool parse_command_line(CLI::App &app, int argc, char **argv, int *exit_status);

// A check for 64-bit integer options: the text must be a decimal integer in [lo, hi]. CLI11 alone turns a value past
// int64's range into INT64_MAX and "-1" for an unsigned option into 2^64 - 1, so the option's own range check would
// name a number the user never typed, or pass.
CLI::Validator integer_in_range(long long lo, unsigned long long hi);

}  // namespace seaopt_tools
