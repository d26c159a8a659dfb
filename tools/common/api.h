// The C API's handles and buffer conventions, wrapped once for all the tools: owning pointers,
// loading with the error left in seaopt_last_error(), tokenize and token-to-piece with the
// grow-and-retry on SEAOPT_ERR_BUFFER_TOO_SMALL, and the "<tool>: error: ..." line.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seaopt.h"

namespace seaopt_tools {

struct ModelDeleter {
    void operator()(seaopt_model *m) const { seaopt_model_free(m); }
};
struct ContextDeleter {
    void operator()(seaopt_context *c) const { seaopt_context_free(c); }
};
struct SamplerDeleter {
    void operator()(seaopt_sampler *s) const { seaopt_sampler_free(s); }
};
using ModelPtr = std::unique_ptr<seaopt_model, ModelDeleter>;
using ContextPtr = std::unique_ptr<seaopt_context, ContextDeleter>;
using SamplerPtr = std::unique_ptr<seaopt_sampler, SamplerDeleter>;

// Each returns null on failure, with the reason in seaopt_last_error() (callers word their own
// message around it).
ModelPtr load_model(const std::string &path, const seaopt_model_params &params);
ContextPtr new_context(seaopt_model *model, const seaopt_context_params &params);
SamplerPtr new_sampler(const seaopt_sampler_params &params);

// The tokens of `text`; false on failure (invalid UTF-8, ...), the reason in seaopt_last_error().
// Byte-level BPE gives at most one token per byte plus BOS; the buffer grows if the library asks.
bool tokenize(const seaopt_model *model, const std::string &text, bool add_bos, bool parse_special,
              std::vector<seaopt_token> &tokens);

// A token's bytes into `piece` (resized to them; its capacity is reused across calls); false on
// failure, the reason in seaopt_last_error().
bool token_piece(const seaopt_model *model, seaopt_token token, std::string &piece);

// Prints "<program>: error: <message>" to stderr and returns the exit status 1. stdout is flushed
// first so that whatever a tool printed so far comes before the error.
int fail(const char *program, const std::string &message);

}  // namespace seaopt_tools
