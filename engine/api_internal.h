// Helpers for the C API boundary: every exported function runs its body inside
// SEAOPT_API_TRY / SEAOPT_API_CATCH, which turns any exception into a status code and a
// thread-local message for seaopt_last_error().
#pragma once

#include <string>

#include "seaopt.h"

namespace seaopt {

void set_last_error(seaopt_status code, const std::string &message);
void clear_last_error();
// Call inside a catch block: maps the in-flight exception (seaopt::Error, std::bad_alloc,
// std::exception, anything else) to a status and records its message.
seaopt_status status_from_current_exception();

// The GPU engine's greedy pick of token i's logits in the last batch (i = -1: the last token that asked for
// logits), or -1 where it made none (engine/context.h Context::greedy_token). Never throws.
int32_t context_device_greedy(const seaopt_context *ctx, int32_t i);

}  // namespace seaopt

#define SEAOPT_API_TRY \
    seaopt::clear_last_error(); \
    try {
#define SEAOPT_API_CATCH \
    } \
    catch (...) { \
        return seaopt::status_from_current_exception(); \
    }
