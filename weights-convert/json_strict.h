// Strict JSON for untrusted small files (config.json, *.index.json): the document is parsed without
// exceptions escaping nlohmann, duplicate keys are refused (nlohmann would silently keep one), and
// nesting is bounded so a hostile file cannot build a deep tree.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace seaopt::convert {

inline constexpr int kMaxJsonDepth = 32;

// Parses `size` bytes as one JSON document. Throws SEAOPT_ERR_MODEL_FORMAT as
// "<what>: <problem>" (not JSON, with the byte offset; duplicate key; nested too deeply).
nlohmann::json parse_json_strict(const char *data, size_t size, const std::string &what);

// Reads a whole file of at most max_bytes and parses it as above (SEAOPT_ERR_IO if unreadable).
nlohmann::json read_json_file(const std::string &path, const std::string &what, size_t max_bytes);

// A JSON value's type in words, for messages ("a string", "an array").
const char *json_type_words(const nlohmann::json &v);

}  // namespace seaopt::convert
