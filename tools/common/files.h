// File helpers shared by the tools.
#pragma once

#include <string>

namespace seaopt_tools {

// Reads a whole file as bytes (a prompt may be any bytes; the library checks UTF-8). On failure
// returns false with a message naming the path and the system error.
bool read_file_bytes(const std::string &path, std::string &out, std::string &error);

}  // namespace seaopt_tools
