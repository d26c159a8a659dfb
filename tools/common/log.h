// The tools' logging: the library's log lines (seaopt_log_set) and the tools' own go through one
// spdlog logger on stderr, so -v shows both with timestamps and levels.
#pragma once

#include <spdlog/spdlog.h>

namespace seaopt_tools {

// Sends the library's log to spdlog: everything from debug up with verbose, else warnings and errors.
void install_log(bool verbose);

}  // namespace seaopt_tools
