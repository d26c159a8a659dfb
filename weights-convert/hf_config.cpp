#include "weights-convert/hf_config.h"

#include "engine/error.h"
#include "weights-convert/byte_source.h"
#include "weights-convert/json_strict.h"

#include <cstdint>
#include <utility>

namespace seaopt::convert {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxConfigBytes = 1u << 20;

std::string value_text(const json &v) {
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    if (v.is_string()) s = "'" + v.get<std::string>().substr(0, 60) + "'";
    return s;
}

class ConfigReader {
public:
    ConfigReader(const json &j, const std::string &what) : j_(j), what_(what) {}

    // A positive integer in [1, cap]; `fallback` when absent (0 = required).
    uint32_t size(const char *key, uint64_t cap, uint32_t fallback = 0) const {
        const auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) {
            if (fallback) return fallback;
            throw_model_format(what_ + ": required key '" + key + "' is missing");
        }
        if (!it->is_number_integer()) {
            throw_model_format(what_ + ": " + key + " is " + json_type_words(*it) + " (" + value_text(*it) +
                               "), expected a positive integer");
        }
        if (it->is_number_unsigned() ? it->get<uint64_t>() == 0 : true) {
            throw_model_format(what_ + ": " + key + " = " + value_text(*it) + " must be positive");
        }
        const uint64_t v = it->get<uint64_t>();
        if (v > cap) {
            throw_unsupported(what_ + ": " + key + " = " + std::to_string(v) + " exceeds seaopt's limit of " +
                              std::to_string(cap));
        }
        return (uint32_t)v;
    }
    bool flag(const char *key, bool fallback) const {
        const auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return fallback;
        if (!it->is_boolean()) {
            throw_model_format(what_ + ": " + key + " is " + json_type_words(*it) + " (" + value_text(*it) +
                               "), expected true or false");
        }
        return it->get<bool>();
    }
    // A boolean that seaopt supports only with one value.
    void require_flag(const char *key, bool supported, const char *why) const {
        if (flag(key, supported) != supported) {
            throw_unsupported(what_ + ": " + key + " " + (supported ? "false" : "true") + " is not supported (" + why +
                              ")");
        }
    }
    // A string key that, when present, must equal `want`.
    void require_string(const char *key, const char *want, const char *why) const {
        const auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return;
        if (!it->is_string()) {
            throw_model_format(what_ + ": " + key + " is " + json_type_words(*it) + ", expected a string");
        }
        if (it->get<std::string>() != want) {
            throw_unsupported(what_ + ": " + key + " " + value_text(*it) + " is not supported (" + why + ")");
        }
    }

    // A token id: a non-negative integer, or a non-empty list of them (the first is used).
    HfTokenId token_id(const char *key) const {
        HfTokenId t;
        const auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return t;
        const json *v = &*it;
        if (v->is_array()) {
            if (v->empty()) return t;
            for (const json &e : *v) {
                if (!e.is_number_integer()) {
                    throw_model_format(what_ + ": " + key + " " + value_text(*it) + " holds " + json_type_words(e) +
                                       ", expected token ids (integers)");
                }
            }
            t.from_list = v->size() > 1;
            v = &v->front();
        }
        if (!v->is_number_integer()) {
            throw_model_format(what_ + ": " + key + " is " + json_type_words(*v) + " (" + value_text(*v) +
                               "), expected a token id (an integer)");
        }
        if (v->is_number_unsigned()) {
            const uint64_t u = v->get<uint64_t>();
            t.id = u > (uint64_t)INT32_MAX ? INT64_MAX : (int64_t)u;  // too large: the vocabulary check names it
        }
        return t;  // negative: "none", as some configs write it
    }

private:
    const json &j_;
    const std::string &what_;
};

}  // namespace

HfOptConfig parse_hf_config(const std::string &json_text, const std::string &what) {
    const json j = parse_json_strict(json_text.data(), json_text.size(), what);
    if (!j.is_object()) throw_model_format(what + ": is " + std::string(json_type_words(j)) + ", not a JSON object");
    const ConfigReader r(j, what);

    r.require_string("model_type", "opt", "seaopt converts OPT models, model_type 'opt'");
    r.require_string("activation_function", "relu", "OPT uses 'relu'");
    r.require_flag("enable_bias", true, "OPT's linear layers have biases");
    r.require_flag("layer_norm_elementwise_affine", true, "OPT's LayerNorms have weights and biases");
    r.require_flag("_remove_final_layer_norm", false, "only the original OPT layout is implemented");

    HfOptConfig c;
    OptHparams &hp = c.hp;
    hp.n_vocab = r.size("vocab_size", kMaxVocab);
    hp.n_ctx_train = r.size("max_position_embeddings", kMaxContext);
    hp.n_embd = r.size("hidden_size", kMaxEmbedding);
    hp.n_layer = r.size("num_hidden_layers", kMaxLayers);
    hp.n_ff = r.size("ffn_dim", 4ull * kMaxEmbedding);
    hp.n_head = r.size("num_attention_heads", hp.n_embd);
    hp.n_embd_proj = r.size("word_embed_proj_dim", kMaxEmbedding, hp.n_embd);
    hp.pre_ln = r.flag("do_layer_norm_before", true);
    hp.ln_eps = 1e-5f;  // OPT's LayerNorm default; config.json has no key for it
    hp.pos_offset = kPositionOffset;
    c.tie_word_embeddings = r.flag("tie_word_embeddings", true);
    c.bos_token_id = r.token_id("bos_token_id");
    c.eos_token_id = r.token_id("eos_token_id");
    c.pad_token_id = r.token_id("pad_token_id");

    if (hp.n_vocab < 4) {
        throw_model_format(what + ": vocab_size " + std::to_string(hp.n_vocab) + " is too small for OPT's special tokens");
    }
    if (hp.n_embd % hp.n_head != 0) {
        throw_model_format(what + ": hidden_size " + std::to_string(hp.n_embd) + " is not a multiple of num_attention_heads " +
                          std::to_string(hp.n_head));
    }
    for (const auto &[key, t] : {std::pair<const char *, HfTokenId>{"bos_token_id", c.bos_token_id},
                                 {"eos_token_id", c.eos_token_id}, {"pad_token_id", c.pad_token_id}}) {
        if (t.id >= (int64_t)hp.n_vocab) {
            throw_model_format(what + ": " + key + " " + (t.id == INT64_MAX ? std::string("(too large)") : std::to_string(t.id)) +
                               " is outside the vocabulary (vocab_size " + std::to_string(hp.n_vocab) + ")");
        }
    }
    return c;
}

HfOptConfig read_hf_config(const std::string &path) {
    FileSource f(path, "config.json");
    if (f.size() > kMaxConfigBytes) {
        throw_model_format("config.json: file is " + std::to_string(f.size()) + " bytes; at most " +
                           std::to_string(kMaxConfigBytes) + " are accepted");
    }
    const std::vector<uint8_t> bytes = f.read_vec(0, (size_t)f.size());
    return parse_hf_config(std::string(bytes.begin(), bytes.end()), "config.json");
}

}  // namespace seaopt::convert
