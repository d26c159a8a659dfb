// Loading a seaopt GGUF file: everything is validated before it is trusted (anchors.md E4's
// checklist): the GGUF structure by gguf::parse, then here the architecture, every hyperparameter
// with its type and range, the tokenizer arrays, and the exact set of tensors with their shapes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/error.h"
#include "engine/fp16.h"
#include "engine/host_memory.h"
#include "engine/cuda/device.h"
#include "engine/cuda/ops.h"  // attention_head_dim_supported (plain C++, no CUDA headers)
#include "engine/log.h"
#include "model/gguf.h"
#include "model/opt_model.h"
#include "model/q8_0.h"

namespace seaopt {
namespace {

uint32_t get_u32_in_range(const gguf::File &f, const char *key, uint32_t lo, uint32_t hi) {
    const uint32_t v = f.get_u32(key);
    if (v < lo || v > hi) {
        throw_model_format(std::string("key ") + key + " = " + std::to_string(v) + " is out of range [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v;
}

std::string shape_str(const int64_t *ne, size_t n) {
    std::string s = "{";
    for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "}";
}

// seaopt-convert before 2026-11-29 typed all of '<s>', '<pad>', '</s>', '<unk>', '<mask>' as CONTROL (split out of
// prompts with parse_special, dropped by remove_special) and made '<unk>' the unknown token; Hugging Face's OPT
// tokenizer has only '</s>' and '<pad>' as special tokens (unk is '</s>'). Such files still load as they are; the
// user is told how to get Hugging Face's behaviour. (Today's converter types them so only where the checkpoint's
// tokenizer_config.json names all three, which no OPT checkpoint does.)
void warn_if_old_special_tokens(const TokenizerData &d) {
    if (d.token_types.empty() || d.tokens[(size_t)d.unk_id] != "<unk>") return;
    int control = 0;
    for (size_t i = 0; i < d.tokens.size(); ++i) {
        const std::string &t = d.tokens[i];
        if (d.token_types[i] == (int32_t)TokenType::CONTROL && (t == "<s>" || t == "<unk>" || t == "<mask>")) ++control;
    }
    if (control < 3) return;
    SEAOPT_LOG_WARN_("this model file marks '<s>', '<unk>' and '<mask>' as special tokens, as seaopt-convert did before "
                     "2026-11-29; Hugging Face's OPT tokenizer treats them as text. Re-convert the checkpoint to "
                     "tokenize prompts that contain them as Hugging Face does\n");
}

// An ARRAY whose elements are integers (any width; BOOL counts as one here, as the parser stores it in int_array).
bool is_integer_array(const gguf::Value &v) {
    return v.type == gguf::ValueType::ARRAY && v.array_type != gguf::ValueType::STRING &&
           v.array_type != gguf::ValueType::FLOAT32 && v.array_type != gguf::ValueType::FLOAT64 &&
           v.array_type != gguf::ValueType::ARRAY;
}

TokenizerData read_tokenizer(const gguf::File &f, const OptHparams &hp) {
    const std::string &model = f.get_str(keys::kTokModel);
    if (model != "gpt2") {
        throw_model_format(std::string("key ") + keys::kTokModel + " = '" + model +
                           "': seaopt's OPT tokenizer is GPT-2 byte-level BPE ('gpt2')");
    }
    TokenizerData d;
    d.tokens = f.get_str_array(keys::kTokTokens);
    if (d.tokens.size() != hp.n_vocab) {
        throw_model_format(std::string("key ") + keys::kTokTokens + " has " + std::to_string(d.tokens.size()) +
                           " tokens but the model's vocabulary has " + std::to_string(hp.n_vocab) + " rows");
    }
    d.merges = f.get_str_array(keys::kTokMerges);
    if (const gguf::Value *tt = f.find(keys::kTokTokenType)) {
        if (!is_integer_array(*tt)) {
            throw_model_format(std::string("key ") + keys::kTokTokenType + " must be an array of integers");
        }
        if (tt->int_array.size() != d.tokens.size()) {
            throw_model_format(std::string("key ") + keys::kTokTokenType + " has " +
                               std::to_string(tt->int_array.size()) + " entries for " +
                               std::to_string(d.tokens.size()) + " tokens");
        }
        d.token_types.reserve(tt->int_array.size());
        for (size_t i = 0; i < tt->int_array.size(); ++i) {
            const int64_t v = tt->int_array[i];
            if (v < 1 || v > 6) {
                throw_model_format(std::string("key ") + keys::kTokTokenType + ": token " + std::to_string(i) +
                                   " has invalid type " + std::to_string(v));
            }
            d.token_types.push_back((int32_t)v);
        }
    }
    const gguf::Value *added_ids = f.find(keys::kTokAddedIds), *added_flags = f.find(keys::kTokAddedFlags);
    if (added_ids || added_flags) {
        auto int_array = [&](const gguf::Value *v, const char *key, const char *other) -> const std::vector<int64_t> & {
            if (!v) {
                throw_model_format(std::string("key ") + key + " is missing, but " + other +
                                   " is there (the two come together)");
            }
            if (!is_integer_array(*v) || v->array_type == gguf::ValueType::BOOL) {
                throw_model_format(std::string("key ") + key + " must be an array of integers");
            }
            return v->int_array;
        };
        const std::vector<int64_t> &ids = int_array(added_ids, keys::kTokAddedIds, keys::kTokAddedFlags);
        const std::vector<int64_t> &flags = int_array(added_flags, keys::kTokAddedFlags, keys::kTokAddedIds);
        if (ids.size() != flags.size()) {
            throw_model_format(std::string("key ") + keys::kTokAddedIds + " has " + std::to_string(ids.size()) +
                               " entries but " + keys::kTokAddedFlags + " has " + std::to_string(flags.size()));
        }
        for (size_t i = 0; i < ids.size(); ++i) {
            if (ids[i] < 0 || ids[i] >= (int64_t)hp.n_vocab) {
                throw_model_format(std::string("key ") + keys::kTokAddedIds + ": entry " + std::to_string(i) + " (" +
                                   std::to_string(ids[i]) + ") is not a token id");
            }
            if (flags[i] < 0 || flags[i] > (int64_t)kAddedAllFlags) {
                throw_model_format(std::string("key ") + keys::kTokAddedFlags + ": entry " + std::to_string(i) + " (" +
                                   std::to_string(flags[i]) + ") has unknown bits");
            }
            d.added_flags.push_back({(int32_t)ids[i], (uint32_t)flags[i]});
        }
    }
    d.bos_id = (int32_t)get_u32_in_range(f, keys::kTokBos, 0, hp.n_vocab - 1);
    d.eos_id = (int32_t)get_u32_in_range(f, keys::kTokEos, 0, hp.n_vocab - 1);
    d.pad_id = (int32_t)get_u32_in_range(f, keys::kTokPad, 0, hp.n_vocab - 1);
    d.unk_id = (int32_t)get_u32_in_range(f, keys::kTokUnk, 0, hp.n_vocab - 1);
    // Optional (its type is checked with the other optional keys): absent, BOS is added as OPT's tokenizer does.
    if (const gguf::Value *v = f.find(keys::kTokAddBos); v && v->type == gguf::ValueType::BOOL) d.add_bos = v->u64 != 0;
    warn_if_old_special_tokens(d);
    return d;
}

void check_finite(const std::vector<float> &v, const std::string &path, const std::string &name) {
    for (size_t i = 0; i < v.size(); ++i) {
        if (!std::isfinite(v[i])) {
            throw_model_format(path + ": tensor '" + name + "' has a non-finite value at element " + std::to_string(i));
        }
    }
}

// AUTO takes the GPU when this build has CUDA, a GPU is present and the CUDA engine supports the
// model (head_dim 64, 80 or 128: those of every OPT size); otherwise the CPU. CUDA demands all three.
// OptModel::fingerprint: FNV-1a 64 over each tensor's name, type and shape and 4 KiB from the start, the middle and
// the end of its data (parse() has checked the ranges): ~5 MB of reading for OPT-1.3B, and any two checkpoints
// differ in those bytes.
uint64_t tensor_fingerprint(const gguf::File &file, const uint8_t *bytes) {
    uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&h](const void *p, size_t n) {
        const uint8_t *b = static_cast<const uint8_t *>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    };
    constexpr uint64_t kSample = 4096;
    for (const gguf::TensorInfo &t : file.tensors) {
        mix(t.name.data(), t.name.size());
        const uint32_t type = (uint32_t)t.type;
        mix(&type, sizeof type);
        mix(t.ne, sizeof t.ne);
        const uint8_t *data = bytes + file.data_offset + t.offset;
        const uint64_t n = std::min(kSample, t.n_bytes);
        for (const uint64_t at : {uint64_t{0}, (t.n_bytes - n) / 2, t.n_bytes - n}) mix(data + at, (size_t)n);
    }
    return h;
}

seaopt_device choose_device(const seaopt_model_params &params, const OptHparams &hp) {
    if (params.device == SEAOPT_DEVICE_CPU) return SEAOPT_DEVICE_CPU;
    const bool want_cuda = params.device == SEAOPT_DEVICE_CUDA;
    const int n_gpus = cuda_device_count();
    std::string why_not;
    if (!cuda_engine_built()) {
        why_not = "this build of seaopt has no CUDA engine";
    } else if (n_gpus == 0) {
        const std::string cuda_says = cuda_device_count_error();
        why_not = "no CUDA GPU was found" + (cuda_says.empty() ? std::string() : " (" + cuda_says + ")");
    } else if (params.gpu_index < 0 || params.gpu_index >= n_gpus) {
        why_not = "gpu_index " + std::to_string(params.gpu_index) + " is outside the " + std::to_string(n_gpus) + " GPUs present";
    } else if (std::string r = cuda_device_unsupported_reason(params.gpu_index); !r.empty()) {
        why_not = r;
    } else if (!cuda::attention_head_dim_supported((int)hp.head_dim())) {
        why_not = "the CUDA engine supports head_dim 64, 80 and 128 (those of the OPT models), this model has " +
                  std::to_string(hp.head_dim());
    }
    if (why_not.empty()) return SEAOPT_DEVICE_CUDA;
    if (want_cuda) {
        throw Error(n_gpus == 0 ? SEAOPT_ERR_DEVICE : SEAOPT_ERR_UNSUPPORTED,
                    "device cuda: " + why_not +
                        " (run on the CPU instead: --device cpu, or --device auto to fall back to it; SEAOPT_DEVICE_CPU "
                        "or SEAOPT_DEVICE_AUTO in the C API)");
    }
    // A build with CUDA that cannot use it says so where it is seen (WARN reaches stderr by default): the fp32 CPU
    // engine is far slower than the GPU the caller may think it has. Without CUDA in the build it is the only engine.
    if (cuda_engine_built()) {
        SEAOPT_LOG_WARN_("using the CPU engine (the fp32 reference, slow): %s\n", why_not.c_str());
    } else {
        SEAOPT_LOG_INFO_("using the CPU engine: %s\n", why_not.c_str());
    }
    return SEAOPT_DEVICE_CPU;
}

// The sea.* keys (opt_format.h): all of them when any is present (sea.md §1, §6 for the values).
void read_sea_hparams(const gguf::File &f, OptHparams &hp) {
    bool any = false;
    for (const auto &kv : f.kv) any = any || kv.first.rfind(keys::kSeaPrefix, 0) == 0;
    if (!any) return;
    hp.has_sea = true;
    SeaHparams &s = hp.sea;
    s.k = f.get_u32(keys::kSeaK);
    s.compressed_width = f.get_u32(keys::kSeaCompressedWidth);
    s.random_features = f.get_u32(keys::kSeaRandomFeatures);
    s.hidden = f.get_u32(keys::kSeaHidden);
    s.position_table_length = f.get_u32(keys::kSeaPositionTableLength);
    s.cnn_channels_per_head = f.get_u32(keys::kSeaCnnChannelsPerHead);
    s.width_reduction = f.get_u32(keys::kSeaWidthReduction);
    const std::string &grouping = f.get_str(keys::kSeaGrouping);
    if (grouping != kSeaGroupingCausalPerBatch) {
        throw_unsupported(std::string("key ") + keys::kSeaGrouping + " = '" + grouping + "': SEA on OPT groups its top-k '" +
                          kSeaGroupingCausalPerBatch + "' (sea.md §2.7)");
    }
    check_sea_hparams(hp);
}

}  // namespace

void tensor_to_f32(std::vector<float> &out, const gguf::TensorInfo &t, const uint8_t *data) {
    out.resize(t.n_elements);
    switch (t.type) {
    case gguf::TensorType::F32:
        std::memcpy(out.data(), data, t.n_elements * 4);
        break;
    case gguf::TensorType::F16:
        for (uint64_t i = 0; i < t.n_elements; ++i) {
            uint16_t h;
            std::memcpy(&h, data + 2 * i, 2);
            out[i] = f16_to_f32(h);
        }
        break;
    case gguf::TensorType::BF16:
        for (uint64_t i = 0; i < t.n_elements; ++i) {
            uint16_t h;
            std::memcpy(&h, data + 2 * i, 2);
            out[i] = bf16_to_f32(h);
        }
        break;
    case gguf::TensorType::Q8_0:
        dequantize_q8_0(data, out.data(), t.n_elements);  // parse() checked ne[0] % 32 == 0
        break;
    }
}

OptHparams read_opt_hparams(const gguf::File &f) {
    const std::string &arch = f.get_str(keys::kArchitecture);
    if (arch != kArchitectureName) {
        throw_unsupported("model architecture '" + arch + "' is not supported: seaopt runs OPT models ('opt')");
    }
    OptHparams hp;
    hp.n_vocab = get_u32_in_range(f, keys::kVocabSize, 4, kMaxVocab);
    hp.n_ctx_train = get_u32_in_range(f, keys::kContextLength, 1, kMaxContext);
    hp.n_embd = get_u32_in_range(f, keys::kEmbeddingLength, 1, kMaxEmbedding);
    hp.n_layer = get_u32_in_range(f, keys::kBlockCount, 1, kMaxLayers);
    hp.n_ff = get_u32_in_range(f, keys::kFeedForwardLength, 1, 4 * kMaxEmbedding);
    hp.n_head = get_u32_in_range(f, keys::kHeadCount, 1, hp.n_embd);
    hp.n_embd_proj = get_u32_in_range(f, keys::kWordEmbedProjDim, 1, kMaxEmbedding);
    hp.pre_ln = f.get_bool(keys::kDoLayerNormBefore);
    hp.ln_eps = f.get_f32(keys::kLayerNormEps);
    hp.pos_offset = f.get_u32(keys::kPositionOffset);
    if (hp.n_embd % hp.n_head != 0) {
        throw_model_format("embedding length " + std::to_string(hp.n_embd) + " is not a multiple of the head count " +
                           std::to_string(hp.n_head));
    }
    if (!(std::isfinite(hp.ln_eps) && hp.ln_eps > 0.0f && hp.ln_eps < 1.0f)) {
        throw_model_format(std::string("key ") + keys::kLayerNormEps + " = " + std::to_string(hp.ln_eps) +
                           " is not a usable LayerNorm epsilon");
    }
    if (hp.pos_offset != kPositionOffset) {
        throw_unsupported(std::string("key ") + keys::kPositionOffset + " = " + std::to_string(hp.pos_offset) +
                          ": OPT's learned positions use offset 2");
    }
    read_sea_hparams(f, hp);
    return hp;
}

std::unique_ptr<OptModel> load_opt_model(const std::string &path, const seaopt_model_params &params) {
    gguf::MappedFile mapped(path);
    return load_opt_model_from_memory(mapped.data(), mapped.size(), path, params);
}

std::unique_ptr<OptModel> load_opt_model_from_memory(const uint8_t *bytes, size_t size, const std::string &path,
                                                     const seaopt_model_params &params) {
    gguf::File file;
    try {
        file = gguf::parse(bytes, size);
    } catch (const Error &e) {
        throw Error(e.code(), path + ": " + e.what());
    }

    auto model = std::make_unique<OptModel>();
    // The hyperparameter and tokenizer checks name the file too, as the parser's and the tensor checks do.
    try {
        model->hp = read_opt_hparams(file);
        // Optional keys: absent is fine, another type is a damaged or foreign file.
        const std::pair<const char *, gguf::ValueType> optional_keys[] = {{keys::kName, gguf::ValueType::STRING},
                                                                           {keys::kFileType, gguf::ValueType::UINT32},
                                                                           {keys::kTokAddBos, gguf::ValueType::BOOL}};
        for (const auto &[key, want] : optional_keys) {
            const gguf::Value *v = file.find(key);
            if (v && v->type != want) {
                throw_model_format(std::string("key ") + key + " must be " + gguf::value_type_name(want) + ", found " +
                                   gguf::value_type_name(v->type));
            }
        }
        if (const gguf::Value *name = file.find(keys::kName)) model->name = name->str;
        model->tokenizer = std::make_unique<Tokenizer>(read_tokenizer(file, model->hp));
    } catch (const Error &e) {
        throw Error(e.code(), path + ": " + e.what());
    }
    const OptHparams &hp = model->hp;

    // The exact tensor set: every expected tensor with its shape; nothing unexpected. The SEA
    // tensors are expected exactly when the sea.* keys are present.
    const bool has_untied_output = file.find_tensor("output.weight") != nullptr;
    const std::vector<OptTensorSpec> expected = opt_tensor_specs(hp, has_untied_output);
    std::vector<OptTensorSpec> expected_all = expected;
    for (OptTensorSpec &e : sea_tensor_specs(hp)) expected_all.push_back(std::move(e));
    for (const OptTensorSpec &e : expected_all) {
        const gguf::TensorInfo *t = file.find_tensor(e.gguf_name);
        if (!t) throw_model_format(path + ": tensor '" + e.gguf_name + "' is missing");
        bool same = t->n_dims == e.ne.size();
        for (size_t i = 0; same && i < e.ne.size(); ++i) same = t->ne[i] == e.ne[i];
        if (!same) {
            throw_model_format(path + ": tensor '" + e.gguf_name + "' has shape " + shape_str(t->ne, t->n_dims) +
                               ", expected " + shape_str(e.ne.data(), e.ne.size()) + " from the hyperparameters");
        }
    }
    // Q8_0: the six matrices of every block, all of them or none (the engines keep one layout per model).
    const std::string first_matrix = blk_tensor(0, "attn_q.weight");
    const bool q8 = file.find_tensor(first_matrix)->type == gguf::TensorType::Q8_0;
    for (const OptTensorSpec &e : expected_all) {
        const gguf::TensorInfo *t = file.find_tensor(e.gguf_name);
        const bool is_q8 = t->type == gguf::TensorType::Q8_0;
        if (is_q8 && !e.quantizable) {
            throw_model_format(path + ": tensor '" + e.gguf_name + "' is Q8_0, but seaopt reads Q8_0 only for the "
                               "blocks' weight matrices (attn_q/k/v/output, ffn_up/down); this one must be F32, F16 or "
                               "BF16");
        }
        if (e.quantizable && is_q8 != q8) {
            throw_model_format(path + ": tensor '" + e.gguf_name + "' is " + gguf::tensor_type_name(t->type) + " but '" +
                               first_matrix + "' is " + (q8 ? "Q8_0" : "not") + "; a file stores either all of the "
                               "blocks' weight matrices as Q8_0 or none");
        }
    }
    std::unordered_set<std::string> expected_names;
    for (const OptTensorSpec &e : expected_all) expected_names.insert(e.gguf_name);
    for (const gguf::TensorInfo &t : file.tensors) {
        if (expected_names.count(t.name)) continue;
        if (!hp.has_sea && t.name.find(".sea.") != std::string::npos) {
            throw_model_format(path + ": SEA tensor '" + t.name + "' is present but the file has no sea.* keys (a file "
                               "has either the whole SEA estimator or none of it)");
        }
        throw_model_format(path + ": unexpected tensor '" + t.name + "' for this OPT configuration");
    }

    for (const gguf::TensorInfo &t : file.tensors) model->n_params += t.n_elements;
    model->fingerprint = tensor_fingerprint(file, bytes);
    switch (file.find_tensor("token_embd.weight")->type) {
    case gguf::TensorType::F32: model->file_type = "f32"; break;
    case gguf::TensorType::F16: model->file_type = "f16"; break;
    case gguf::TensorType::BF16: model->file_type = "bf16"; break;
    case gguf::TensorType::Q8_0: break;  // refused above: the embeddings are never Q8_0
    }
    if (q8) model->file_type = "q8_0";
    model->vocab_only = params.vocab_only;

    // vocab_only: no weights go anywhere, so no device is chosen (nor a fallback warned about).
    model->device = params.vocab_only ? SEAOPT_DEVICE_CPU : choose_device(params, hp);
    SEAOPT_LOG_INFO_("%s: opt, %u layers, hidden %u, %u heads, ffn %u, vocab %u, %u positions, %s, %s, %.1f M parameters\n",
                     path.c_str(), hp.n_layer, hp.n_embd, hp.n_head, hp.n_ff, hp.n_vocab, hp.n_ctx_train,
                     hp.pre_ln ? "pre-LN" : "post-LN", model->file_type.c_str(), (double)model->n_params / 1e6);
    if (hp.has_sea) {
        SEAOPT_LOG_INFO_("%s: SEA estimator: k %u, K %u, %u random features, hidden %u, %u positions\n", path.c_str(),
                         hp.sea.k, hp.sea.compressed_width, hp.sea.random_features, hp.sea.hidden,
                         hp.sea.position_table_length);
    }
    if (params.vocab_only) {
        // No weights to load: the callback is still called once, at 1.0, so that it may cancel as documented.
        if (params.progress_callback && !params.progress_callback(1.0f, params.progress_callback_user_data)) {
            throw Error(SEAOPT_ERR_CANCELLED, "model loading was cancelled by the progress callback");
        }
        return model;
    }

    // The SEA estimator stays on the host in fp32 whatever the device (it is small: sea.md §5.1).
    if (hp.has_sea) {
        model->sea.resize(hp.n_layer);
        for (uint32_t l = 0; l < hp.n_layer; ++l) {
            SeaLayerWeightsCpu &S = model->sea[l];
            struct Part {
                std::vector<float> *dst;
                const char *name;
            };
            const Part parts[] = {
                {&S.pos_table, "sea.pos_table"},         {&S.performer_proj, "sea.performer_proj"},
                {&S.enc_w, "sea.enc.weight"},            {&S.enc_b, "sea.enc.bias"},
                {&S.enc_norm_w, "sea.enc_norm.weight"},  {&S.enc_norm_b, "sea.enc_norm.bias"},
                {&S.dec_row_w, "sea.dec_row.weight"},    {&S.dec_row_b, "sea.dec_row.bias"},
                {&S.cnn_norm_in_w, "sea.cnn_norm_in.weight"}, {&S.cnn_norm_in_b, "sea.cnn_norm_in.bias"},
                {&S.conv1_w, "sea.conv1.weight"},        {&S.conv1_b, "sea.conv1.bias"},
                {&S.conv2_w, "sea.conv2.weight"},        {&S.conv2_b, "sea.conv2.bias"},
                {&S.conv4_w, "sea.conv4.weight"},        {&S.conv4_b, "sea.conv4.bias"},
                {&S.cnn_norm_out_w, "sea.cnn_norm_out.weight"}, {&S.cnn_norm_out_b, "sea.cnn_norm_out.bias"},
                {&S.scaler_w, "sea.scaler.weight"},      {&S.scaler_b, "sea.scaler.bias"},
            };
            for (const Part &p : parts) {
                const std::string name = blk_tensor(l, p.name);
                const gguf::TensorInfo *t = file.find_tensor(name);
                tensor_to_f32(*p.dst, *t, bytes + file.data_offset + t->offset);
                if (params.check_tensors) check_finite(*p.dst, path, name);
            }
        }
    }

    if (model->device == SEAOPT_DEVICE_CUDA) {
        if (params.check_tensors) {  // the same scan as the CPU engine's, before anything goes to the device
            std::vector<float> values;
            for (const OptTensorSpec &e : expected) {
                const gguf::TensorInfo *t = file.find_tensor(e.gguf_name);
                tensor_to_f32(values, *t, bytes + file.data_offset + t->offset);
                check_finite(values, path, e.gguf_name);
            }
        }
        uint64_t total = 0;
        for (const OptTensorSpec &e : expected) total += file.find_tensor(e.gguf_name)->n_bytes;
        model->cuda = upload_opt_weights_cuda(hp, file, bytes, params.gpu_index, has_untied_output,
                                              [&](uint64_t done) {
                                                  if (params.progress_callback &&
                                                      !params.progress_callback((float)((double)done / (double)total),
                                                                                params.progress_callback_user_data)) {
                                                      throw Error(SEAOPT_ERR_CANCELLED,
                                                                  "model loading was cancelled by the progress callback");
                                                  }
                                              });
        SEAOPT_LOG_INFO_("CUDA engine: GPU %d (%s), weights %.1f MiB %s\n", params.gpu_index,
                         cuda_device_name(params.gpu_index).c_str(), cuda_weights_bytes(*model->cuda) / 1048576.0,
                         cuda_weights_q8(*model->cuda) ? "(Q8_0 matrices, the rest fp16)" : "fp16");
        return model;
    }

    uint64_t needed = 0;
    for (const OptTensorSpec &e : expected) needed += file.find_tensor(e.gguf_name)->n_elements * 4;
    if (const uint64_t avail = available_host_memory(); avail && needed > avail) {
        throw Error(SEAOPT_ERR_OUT_OF_MEMORY, "the CPU engine needs " + std::to_string(needed >> 20) +
                                                  " MiB for fp32 weights but only " + std::to_string(avail >> 20) +
                                                  " MiB of memory is available");
    }

    uint64_t done = 0;
    auto load = [&](std::vector<float> &dst, const std::string &name) {
        const gguf::TensorInfo *t = file.find_tensor(name);
        tensor_to_f32(dst, *t, bytes + file.data_offset + t->offset);
        if (params.check_tensors) check_finite(dst, path, name);
        done += t->n_elements * 4;
        if (params.progress_callback &&
            !params.progress_callback(needed ? (float)((double)done / (double)needed) : 1.0f,
                                      params.progress_callback_user_data)) {
            throw Error(SEAOPT_ERR_CANCELLED, "model loading was cancelled by the progress callback");
        }
    };

    SEAOPT_LOG_INFO_("CPU engine: converting weights to fp32 (%.1f MiB)\n", (double)needed / (1 << 20));
    OptWeightsCpu &w = model->cpu;
    load(w.tok_embd, "token_embd.weight");
    load(w.pos_embd, "position_embd.weight");
    if (hp.has_proj()) {
        load(w.proj_in, "proj_in.weight");
        load(w.proj_out, "proj_out.weight");
    }
    if (hp.has_output_norm()) {
        load(w.out_norm_w, "output_norm.weight");
        load(w.out_norm_b, "output_norm.bias");
    }
    if (has_untied_output) load(w.output, "output.weight");
    w.layers.resize(hp.n_layer);
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        OptLayerWeightsCpu &L = w.layers[l];
        load(L.attn_norm_w, blk_tensor(l, "attn_norm.weight"));
        load(L.attn_norm_b, blk_tensor(l, "attn_norm.bias"));
        load(L.q_w, blk_tensor(l, "attn_q.weight"));
        load(L.q_b, blk_tensor(l, "attn_q.bias"));
        load(L.k_w, blk_tensor(l, "attn_k.weight"));
        load(L.k_b, blk_tensor(l, "attn_k.bias"));
        load(L.v_w, blk_tensor(l, "attn_v.weight"));
        load(L.v_b, blk_tensor(l, "attn_v.bias"));
        load(L.o_w, blk_tensor(l, "attn_output.weight"));
        load(L.o_b, blk_tensor(l, "attn_output.bias"));
        load(L.ffn_norm_w, blk_tensor(l, "ffn_norm.weight"));
        load(L.ffn_norm_b, blk_tensor(l, "ffn_norm.bias"));
        load(L.up_w, blk_tensor(l, "ffn_up.weight"));
        load(L.up_b, blk_tensor(l, "ffn_up.bias"));
        load(L.down_w, blk_tensor(l, "ffn_down.weight"));
        load(L.down_b, blk_tensor(l, "ffn_down.bias"));
    }
    return model;
}

}  // namespace seaopt
