// Command-line pieces every tool shares (CLI11): parsing with the tools' error format, and the
// --device option with its map to the C API's enum.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "seaopt.h"

namespace seaopt_tools {

// Parses the command line. False when main should return *exit_status now: 0 after --help, 1
// after a parse error, printed as "<app name>: error: ...\nRun with --help for more information.".
bool parse_command_line(CLI::App &app, int argc, char **argv, int *exit_status);

// --device auto|cpu|cuda, into `device` (checked against the three names).
CLI::Option *add_device_option(CLI::App &app, std::string &device);

// The C enum for a name that add_device_option accepted.
seaopt_device device_from_string(const std::string &device);

}  // namespace seaopt_tools
