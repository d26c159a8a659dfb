#include "tools/common/api.h"

#include <algorithm>
#include <cstdio>

namespace seaopt_tools {

ModelPtr load_model(const std::string &path, const seaopt_model_params &params) {
    seaopt_model *raw = nullptr;
    if (seaopt_model_load(path.c_str(), &params, &raw) != SEAOPT_OK) return nullptr;
    return ModelPtr(raw);
}

ContextPtr new_context(seaopt_model *model, const seaopt_context_params &params) {
    seaopt_context *raw = nullptr;
    if (seaopt_context_new(model, &params, &raw) != SEAOPT_OK) return nullptr;
    return ContextPtr(raw);
}

SamplerPtr new_sampler(const seaopt_sampler_params &params) {
    seaopt_sampler *raw = nullptr;
    if (seaopt_sampler_new(&params, &raw) != SEAOPT_OK) return nullptr;
    return SamplerPtr(raw);
}

bool tokenize(const seaopt_model *model, const std::string &text, bool add_bos, bool parse_special,
              std::vector<seaopt_token> &tokens) {
    tokens.resize(text.size() + 1);
    int32_t n = 0;
    seaopt_status st = seaopt_tokenize(model, text.data(), text.size(), add_bos, parse_special, tokens.data(),
                                       (int32_t)tokens.size(), &n);
    if (st == SEAOPT_ERR_BUFFER_TOO_SMALL) {  // special tokens can beat the one-per-byte bound
        tokens.resize((size_t)n);
        st = seaopt_tokenize(model, text.data(), text.size(), add_bos, parse_special, tokens.data(),
                             (int32_t)tokens.size(), &n);
    }
    if (st != SEAOPT_OK) {
        tokens.clear();
        return false;
    }
    tokens.resize((size_t)n);
    return true;
}

bool token_piece(const seaopt_model *model, seaopt_token token, std::string &piece) {
    piece.resize(std::max<size_t>(piece.capacity(), 64));
    size_t n = 0;
    seaopt_status st = seaopt_token_to_piece(model, token, piece.data(), piece.size(), &n);
    if (st == SEAOPT_ERR_BUFFER_TOO_SMALL) {
        piece.resize(n);
        st = seaopt_token_to_piece(model, token, piece.data(), piece.size(), &n);
    }
    if (st != SEAOPT_OK) {
        piece.clear();
        return false;
    }
    piece.resize(n);
    return true;
}

int fail(const char *program, const std::string &message) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", program, message.c_str());
    return 1;
}

}  // namespace seaopt_tools
