#include "tools/common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <string>

#include "seaopt.h"

namespace seaopt_tools {
namespace {

void forward_to_spdlog(seaopt_log_level level, const char *text, void *) {
    std::string line(text);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    switch (level) {
    case SEAOPT_LOG_DEBUG: spdlog::debug("{}", line); break;
    case SEAOPT_LOG_INFO: spdlog::info("{}", line); break;
    case SEAOPT_LOG_WARN: spdlog::warn("{}", line); break;
    default: spdlog::error("{}", line); break;
    }
}

}  // namespace

void install_log(bool verbose) {
    auto logger = spdlog::stderr_color_mt("seaopt");
    logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    logger->set_level(verbose ? spdlog::level::debug : spdlog::level::warn);
    spdlog::set_default_logger(logger);
    seaopt_log_set(forward_to_spdlog, nullptr);
}

}  // namespace seaopt_tools
