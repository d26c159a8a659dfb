// seaopt-tokenize: print the tokens of a text, like llama-tokenize. A thin program over seaopt.h.
//
//   seaopt-tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--no-bos] [--no-parse-special]
//
// Default output: one line per token, "ID -> 'piece'", the piece's non-printable bytes escaped.
// With --ids: only the ids, one per line.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "seaopt.h"
#include "tools/common/api.h"
#include "tools/common/cli.h"
#include "tools/common/files.h"
#include "tools/common/log.h"

namespace {

const char *const kProgram = "seaopt-tokenize";

int fail(const std::string &message) { return seaopt_tools::fail(kProgram, message); }

int fail_with_last_error() { return fail(seaopt_last_error()); }

// Length of the valid UTF-8 multi-byte sequence starting at s[i], or 0 if there is none.
size_t utf8_sequence_length(const std::string &s, size_t i) {
    const unsigned char c = (unsigned char)s[i];
    size_t n = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    for (size_t k = 1; k < n; ++k) {
        const unsigned char cc = (unsigned char)s[i + k];
        if ((cc & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (cc & 0x3F);
    }
    // Reject overlong forms, surrogates and code points past U+10FFFF.
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return n;
}

// A token's bytes for display: printable ASCII and complete UTF-8 characters as they are, the
// quote and backslash escaped, control bytes and stray bytes of split characters as \n, \xHH, ...
std::string escape_piece(const std::string &piece) {
    std::string out;
    for (size_t i = 0; i < piece.size();) {
        const unsigned char c = (unsigned char)piece[i];
        if (c >= 0x80) {
            const size_t n = utf8_sequence_length(piece, i);
            if (n > 0) {
                out.append(piece, i, n);
                i += n;
                continue;
            }
        }
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '\'': out += "\\'"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c >= 0x20 && c < 0x7F) {
                out += (char)c;
            } else {
                char hex[8];
                std::snprintf(hex, sizeof hex, "\\x%02X", c);
                out += hex;
            }
        }
        ++i;
    }
    return out;
}

}  // namespace

static int tool_main(int argc, char **argv) {
    std::string model_path;
    bool ids_only = false, no_bos = false, no_parse_special = false;

    CLI::App app{"Print the tokens of a text with an OPT model's tokenizer (GPT-2 byte-level BPE).", kProgram};
    app.add_option("-m,--model", model_path, "model file (seaopt GGUF); only its tokenizer is loaded")->required();
    seaopt_tools::PromptOptions prompt;
    seaopt_tools::add_prompt_options(app, prompt, "the text to tokenize", "read the text to tokenize from a file (bytes)");
    app.add_flag("--ids", ids_only, "print only the token ids, one per line");
    app.add_flag("--no-bos", no_bos, "do not prepend the BOS token (</s>, id 2)");
    app.add_flag("--no-parse-special", no_parse_special,
                 "tokenize special-token strings such as \"</s>\" as plain text");
    int exit_status = 0;
    if (!seaopt_tools::parse_command_line(app, argc, argv, &exit_status)) return exit_status;
    if (!prompt.given()) return fail("give the text with -p TEXT or -f FILE");
    seaopt_tools::install_log(false);

    std::string text, error;
    if (!prompt.read(text, error)) return fail(error);

    seaopt_model_params mparams = seaopt_model_default_params();
    mparams.vocab_only = true;
    const seaopt_tools::ModelPtr model = seaopt_tools::load_model(model_path, mparams);
    if (!model) return fail_with_last_error();

    std::vector<seaopt_token> tokens;
    if (!seaopt_tools::tokenize(model.get(), text, !no_bos, !no_parse_special, tokens)) {
        return fail("cannot tokenize " + prompt.source("the text") + ": " + seaopt_last_error());
    }

    std::string piece;
    for (seaopt_token t : tokens) {
        if (ids_only) {
            std::printf("%d\n", t);
            continue;
        }
        if (!seaopt_tools::token_piece(model.get(), t, piece)) return fail_with_last_error();
        std::printf("%6d -> '%s'\n", t, escape_piece(piece).c_str());
    }
    return 0;  // guarded_main flushes stdout and reports a failed write
}

int main(int argc, char **argv) { return seaopt_tools::guarded_main(kProgram, argc, argv, tool_main); }
