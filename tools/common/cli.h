// Command-line pieces every tool shares (CLI11): parsing with the tools' error format, the --device
// option with its map to the C API's enum, and the attention options (--attention, --sea-layers, --sea-k).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "seaopt.h"
#include "tools/common/cli_parse.h"

namespace seaopt_tools {

// -p TEXT / -f FILE, one or the other: a prompt given inline or read from a file as bytes (the
// library checks UTF-8). add_prompt_options registers both; read() gives the bytes.
struct PromptOptions {
    std::string text, file;
    CLI::Option *text_opt = nullptr, *file_opt = nullptr;
    bool given() const { return (text_opt && text_opt->count() > 0) || (file_opt && file_opt->count() > 0); }
    bool from_file() const { return file_opt && file_opt->count() > 0; }
    // The prompt's bytes; false with a message naming the file when -f cannot be read.
    bool read(std::string &out, std::string &error) const;
    // How messages name the prompt: the file's path, or `inline_name`.
    std::string source(const std::string &inline_name) const { return from_file() ? file : inline_name; }
};
void add_prompt_options(CLI::App &app, PromptOptions &opt, const std::string &text_help, const std::string &file_help);

// --device auto|cpu|cuda, into `device` (checked against the three names; llama.cpp-style env mirror
// SEAOPT_ARG_DEVICE, used where the flag is not given). The tools start `device` at default_device(): "cuda" in a
// build with CUDA, so that a machine without a usable GPU gets an error that names --device cpu instead of a silent
// run on the fp32 CPU engine (issue 3); "cpu" in a build without CUDA.
std::string default_device();
CLI::Option *add_device_option(CLI::App &app, std::string &device);

// --check-tensors (llama.cpp's flag) into `check`: seaopt_model_params.check_tensors, every weight scanned for NaN and
// Inf at load.
CLI::Option *add_check_tensors_option(CLI::App &app, bool &check);

// The C enum for a name that add_device_option accepted.
seaopt_device device_from_string(const std::string &device);

// The attention options every tool that runs the model shares (seaopt_context_params.attention,
// .sea_layers, .sea_k in include/seaopt.h):
//   --attention dense|sea   dense causal attention (default) or SEA sparse attention (a model converted
//                           with seaopt-convert --sea; both engines)
//   --sea-layers LIST       the layers that run SEA, e.g. "2-23" or "0,3,5-7" (default: all); the others dense
//   --sea-k N               SEA's sparsity budget k, about k keys per query per head (default 0: the model's)
struct AttentionOptions {
    std::string attention = "dense";
    std::string sea_layers;  // "" = every layer
    int32_t sea_k = 0;       // 0 = the model's sea.k
};
// The items of a comma-separated flag value, in order ("a,,b" has an empty item; a trailing comma adds none).
std::vector<std::string> split_list(const std::string &text);

// allow_list (seaopt-bench, llama-bench's convention): --attention takes a comma-separated list of dense|sea,
// split by attention_list().
void add_attention_options(CLI::App &app, AttentionOptions &opt, bool allow_list = false);
// Each attention of a list given to --attention (one entry without a comma), with the SEA flags on the sea entries;
// "" when every item is dense or sea, else the error.
std::string attention_list(const AttentionOptions &opt, std::vector<AttentionOptions> &out);

// "" when the options go together, else the error (--sea-layers / --sea-k without --attention sea).
std::string check_attention_options(const AttentionOptions &opt);

// Sets params.attention, .sea_layers (pointing into opt: keep it alive until seaopt_context_new) and .sea_k.
void apply_attention_options(const AttentionOptions &opt, seaopt_context_params &params);

// A short description: "dense", "sea", "sea (layers 2-23, k 32)".
std::string attention_label(const AttentionOptions &opt);

}  // namespace seaopt_tools
