// Library logging: printf-style lines routed to the callback set with seaopt_log_set().
#pragma once

#include "seaopt.h"

namespace seaopt {

void log(seaopt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace seaopt

#define SEAOPT_LOG_DEBUG_(...) seaopt::log(SEAOPT_LOG_DEBUG, __VA_ARGS__)
#define SEAOPT_LOG_INFO_(...) seaopt::log(SEAOPT_LOG_INFO, __VA_ARGS__)
#define SEAOPT_LOG_WARN_(...) seaopt::log(SEAOPT_LOG_WARN, __VA_ARGS__)
