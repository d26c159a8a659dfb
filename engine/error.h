// seaopt internal error type. Internals throw seaopt::Error; the C API (engine/api.cpp)
// catches it, stores the message for seaopt_last_error() and returns the code.
#pragma once

#include <stdexcept>
#include <string>

#include "seaopt.h"

namespace seaopt {

class Error : public std::runtime_error {
public:
    Error(seaopt_status code, const std::string &message) : std::runtime_error(message), code_(code) {}
    seaopt_status code() const noexcept { return code_; }

private:
    seaopt_status code_;
};

// Shorthands for the common kinds, so call sites read as what went wrong.
[[noreturn]] inline void throw_invalid_argument(const std::string &m) { throw Error(SEAOPT_ERR_INVALID_ARGUMENT, m); }
[[noreturn]] inline void throw_model_format(const std::string &m) { throw Error(SEAOPT_ERR_MODEL_FORMAT, m); }
[[noreturn]] inline void throw_io(const std::string &m) { throw Error(SEAOPT_ERR_IO, m); }
[[noreturn]] inline void throw_unsupported(const std::string &m) { throw Error(SEAOPT_ERR_UNSUPPORTED, m); }

}  // namespace seaopt
