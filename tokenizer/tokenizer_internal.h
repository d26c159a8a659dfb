// Helpers shared by the tokenizer's source files; not part of its interface.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace seaopt::tok_detail {

// Offset of the first byte of the first invalid UTF-8 sequence (overlong, surrogate, > U+10FFFF,
// truncated, stray continuation byte), or npos if `s` is valid.
size_t find_invalid_utf8(std::string_view s);

std::string utf8_encode(uint32_t code_point);

// GPT-2's bytes_to_unicode(): the code point that stands for each byte in token strings.
std::array<uint32_t, 256> byte_to_code_point();

// Hugging Face's classes for added tokens (word_space_classes.inc): a word character (\w, which a single_word token
// must not touch) and whitespace (\s, what lstrip / rstrip take).
bool is_word_char(uint32_t code_point);
bool is_added_white_space(uint32_t code_point);

// A token string for an error message: quoted, control bytes escaped, cut after 48 bytes.
std::string quote(std::string_view s);

}  // namespace seaopt::tok_detail
