#include "weights-convert/convert.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/file_mode.h"
#include "engine/fp16.h"
#include "model/gguf.h"
#include "model/opt_format.h"
#include "model/q8_0.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"
#include "weights-convert/byte_source.h"
#include "weights-convert/checkpoint.h"
#include "weights-convert/hf_config.h"
#include "weights-convert/hf_added_tokens.h"
#include "weights-convert/interrupt_cleanup.h"
#include "weights-convert/sea_checkpoint.h"

namespace seaopt::convert {
namespace fs = std::filesystem;

namespace {

gguf::TensorType gguf_type(DType t) {
    switch (t) {
    case DType::F32: return gguf::TensorType::F32;
    case DType::F16: return gguf::TensorType::F16;
    case DType::BF16: return gguf::TensorType::BF16;
    }
    return gguf::TensorType::F32;
}

std::string default_model_name(const std::string &dir) {
    fs::path p(dir);
    while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "opt-1.3b/" -> "opt-1.3b"
    std::string name = p.filename().string();
    if (name.empty() || name == "." || name == "..") {
        std::error_code ec;
        name = fs::weakly_canonical(fs::path(dir), ec).filename().string();
    }
    return name.empty() ? "opt" : name;
}

void require_file(const fs::path &dir, const char *file, const char *why) {
    std::error_code ec;
    if (!fs::is_regular_file(dir / file, ec)) throw_io(dir.string() + " has no " + file + " (" + why + ")");
}

// All metadata keys of opt_format.h.
void set_metadata(gguf::Writer &w, const OptHparams &hp, DType outtype, bool q8_0, const std::string &name,
                  const TokenizerData &tok) {
    using gguf::Value;
    w.set(keys::kArchitecture, Value::make_str(kArchitectureName));
    w.set(keys::kName, Value::make_str(name));
    w.set(keys::kFileType, Value::make_u32(q8_0 ? kFileTypeMostlyQ8_0 : gguf_file_type(outtype)));
    w.set(keys::kAlignment, Value::make_u32((uint32_t)gguf::kDefaultAlignment));
    w.set(keys::kVocabSize, Value::make_u32(hp.n_vocab));
    w.set(keys::kContextLength, Value::make_u32(hp.n_ctx_train));
    w.set(keys::kEmbeddingLength, Value::make_u32(hp.n_embd));
    w.set(keys::kBlockCount, Value::make_u32(hp.n_layer));
    w.set(keys::kFeedForwardLength, Value::make_u32(hp.n_ff));
    w.set(keys::kHeadCount, Value::make_u32(hp.n_head));
    w.set(keys::kLayerNormEps, Value::make_f32(hp.ln_eps));
    w.set(keys::kDoLayerNormBefore, Value::make_bool(hp.pre_ln));
    w.set(keys::kWordEmbedProjDim, Value::make_u32(hp.n_embd_proj));
    w.set(keys::kPositionOffset, Value::make_u32(hp.pos_offset));
    w.set(keys::kTokModel, Value::make_str("gpt2"));
    w.set(keys::kTokTokens, Value::make_str_array(tok.tokens));
    w.set(keys::kTokTokenType, Value::make_i32_array(tok.token_types));
    w.set(keys::kTokMerges, Value::make_str_array(tok.merges));
    w.set(keys::kTokBos, Value::make_u32((uint32_t)tok.bos_id));
    w.set(keys::kTokEos, Value::make_u32((uint32_t)tok.eos_id));
    w.set(keys::kTokPad, Value::make_u32((uint32_t)tok.pad_id));
    w.set(keys::kTokUnk, Value::make_u32((uint32_t)tok.unk_id));
    w.set(keys::kTokAddBos, Value::make_bool(tok.add_bos));
    if (!tok.added_flags.empty()) {
        std::vector<int32_t> ids, flags;
        for (const AddedTokenFlagsEntry &e : tok.added_flags) {
            ids.push_back(e.id);
            flags.push_back((int32_t)e.flags);
        }
        w.set(keys::kTokAddedIds, Value::make_i32_array(ids));
        w.set(keys::kTokAddedFlags, Value::make_i32_array(flags));
    }
    if (hp.has_sea) {
        w.set(keys::kSeaK, Value::make_u32(hp.sea.k));
        w.set(keys::kSeaCompressedWidth, Value::make_u32(hp.sea.compressed_width));
        w.set(keys::kSeaRandomFeatures, Value::make_u32(hp.sea.random_features));
        w.set(keys::kSeaHidden, Value::make_u32(hp.sea.hidden));
        w.set(keys::kSeaPositionTableLength, Value::make_u32(hp.sea.position_table_length));
        w.set(keys::kSeaCnnChannelsPerHead, Value::make_u32(hp.sea.cnn_channels_per_head));
        w.set(keys::kSeaWidthReduction, Value::make_u32(hp.sea.width_reduction));
        w.set(keys::kSeaGrouping, Value::make_str(kSeaGroupingCausalPerBatch));
    }
}

// The line number of each merge in merges.txt, by load_hf_tokenizer's rules: a "#version" first line and blank lines
// are not merges, every other line is one.
std::vector<size_t> merge_line_numbers(const std::string &path) {
    std::vector<size_t> lines;
    FileSource f(path, "merges.txt");
    const std::vector<uint8_t> bytes = f.read_vec(0, (size_t)f.size());
    const std::string_view text(reinterpret_cast<const char *>(bytes.data()), bytes.size());
    size_t start = 0;
    for (size_t line_no = 1; start < text.size(); ++line_no) {
        const size_t end = std::min(text.find('\n', start), text.size());
        const std::string_view line = text.substr(start, end - start);
        start = end + 1;
        if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
        if (line.find_first_not_of(" \t\r\n\v\f") == std::string_view::npos) continue;
        lines.push_back(line_no);
    }
    return lines;
}

// What Hugging Face's BPE (the `tokenizers` library behind OPT's fast tokenizer) refuses when it builds its merge
// table (MergeTokenOutOfVocabulary): a merge whose parts or result are not tokens. seaopt's tokenizer would apply such
// a merge and emit <unk> for its result; with no merges at all it would split every word into bytes. Either way the
// GGUF would tokenize unlike the model's training, and perplexities would be silently wrong. `merges_txt` is the
// merges.txt they came from (for line numbers), or "" for tokenizer.json's model.merges.
void check_merges(const TokenizerData &tok, const std::string &merges_txt) {
    const std::string source = merges_txt.empty() ? "tokenizer.json's model.merges" : "merges.txt";
    const std::string vocab_name = merges_txt.empty() ? "tokenizer.json's model.vocab" : "vocab.json";
    if (tok.merges.empty()) {
        throw_model_format(source + " has no merges" + (merges_txt.empty() ? "" : " ('" + merges_txt + "')") +
                           ": a byte-level BPE tokenizer needs them");
    }
    std::unordered_set<std::string_view> vocab;
    for (size_t id = 0; id < tok.tokens.size(); ++id) {
        // Padding rows ("<unused_N>") are seaopt's names, not vocab.json's tokens.
        if (id < tok.token_types.size() && tok.token_types[id] == (int32_t)TokenType::UNUSED) continue;
        vocab.insert(tok.tokens[id]);
    }
    std::vector<size_t> lines;  // read only when there is something to report
    for (size_t i = 0; i < tok.merges.size(); ++i) {
        const std::string &m = tok.merges[i];
        const size_t space = m.find(' ');  // the loader joined the two parts with one space
        const std::string left = m.substr(0, space), right = m.substr(space + 1), merged = left + right;
        const std::string *missing = !vocab.count(left) ? &left : !vocab.count(right) ? &right
                                     : !vocab.count(merged) ? &merged : nullptr;
        if (!missing) continue;
        std::string where = "[" + std::to_string(i) + "]";
        if (!merges_txt.empty()) {
            if (lines.empty()) lines = merge_line_numbers(merges_txt);
            where = i < lines.size() ? " line " + std::to_string(lines[i]) : " merge " + std::to_string(i + 1);
        }
        throw_model_format(source + where + " (" + tok_detail::quote(m) + "): " + tok_detail::quote(*missing) +
                           " is not in " + vocab_name + " (Hugging Face's tokenizer refuses such a merge)");
    }
}

// tokenizer.json where the checkpoint has one (what transformers uses, and all that transformers 5 saves), else
// vocab.json + merges.txt; with the added and special tokens of tokenizer.json / tokenizer_config.json /
// special_tokens_map.json (hf_added_tokens.h). `notes` gets what the user should know.
TokenizerData load_tokenizer(const fs::path &dir, const OptHparams &hp, std::vector<std::string> &notes) {
    return load_checkpoint_tokenizer(dir.string(), hp.n_vocab, notes);
}

}  // namespace

TokenizerData load_checkpoint_tokenizer(const std::string &dir_name, uint32_t n_vocab, std::vector<std::string> &notes) {
    const fs::path dir(dir_name);
    OptHparams hp;
    hp.n_vocab = n_vocab;
    std::error_code ec;
    TokenizerData tok;
    nlohmann::json tokenizer_json;  // read once, for the model and for its added tokens
    const bool have_tokenizer_json = fs::exists(dir / "tokenizer.json", ec);
    if (have_tokenizer_json) {
        tokenizer_json = read_hf_tokenizer_json(dir);
        tok = load_hf_tokenizer_json(tokenizer_json, (int32_t)hp.n_vocab, "'" + (dir / "tokenizer.json").string() + "'");
        check_merges(tok, "");
    } else {
        const char *need = "the tokenizer: tokenizer.json, or vocab.json and merges.txt, are needed";
        require_file(dir, "vocab.json", need);
        require_file(dir, "merges.txt", need);
        tok = load_hf_tokenizer((dir / "vocab.json").string(), (dir / "merges.txt").string(), (int32_t)hp.n_vocab);
        check_merges(tok, (dir / "merges.txt").string());
    }
    nlohmann::json config;  // tokenizer_config.json, read once for the added tokens and the BOS
    const bool have_config = read_hf_tokenizer_config(dir, config);
    const nlohmann::json *tj = have_tokenizer_json ? &tokenizer_json : nullptr, *tc = have_config ? &config : nullptr;
    const HfAddedTokens added = read_hf_added_tokens(dir, tj, tc);
    for (std::string &note : apply_hf_added_tokens(added, tok)) notes.push_back(std::move(note));
    tok.add_bos = read_hf_add_bos(tj, tc, tok.bos_id, tok.tokens, notes);
    if (!tj && tc && tok.add_bos && added.bos.empty()) {
        notes.push_back("tokenizer_config.json adds a BOS but no file names the bos_token: transformers' GPT2Tokenizer "
                        "would prepend its default '<|endoftext|>' as a new token; seaopt prepends " +
                        tok_detail::quote(tok.tokens[(size_t)tok.bos_id]));
    }
    if (tok.tokens.size() != hp.n_vocab) {
        throw_model_format("the tokenizer has " + std::to_string(tok.tokens.size()) + " tokens but vocab_size is " +
                           std::to_string(hp.n_vocab));
    }
    for (int32_t id : {tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id}) {
        if (id < 0 || (uint32_t)id >= hp.n_vocab) {
            throw_model_format("the tokenizer's special token id " + std::to_string(id) + " is outside the vocabulary");
        }
    }
    return tok;
}

namespace {

// config.json's eos/pad ids win over the ones the tokenizer files give: Hugging Face's generate() stops at
// config.eos_token_id, so a fine-tune that changed it must stop there here too. The BOS is the tokenizer's:
// tokenizer(text) prepends the tokenizer's own BOS (its post-processor's, or tokenizer_config's bos_token), whatever
// config.json says, and that is the token the model saw in training. Returns the notes for the user where they
// differ (the usual OPT config repeats '</s>' = 2 and '<pad>' = 1: no note).
std::vector<std::string> apply_config_token_ids(const HfOptConfig &config, TokenizerData &tok) {
    std::vector<std::string> notes;
    auto apply = [&](const char *key, const HfTokenId &t, int32_t &id, const char *role, bool config_wins) {
        if (t.from_list) {
            notes.push_back(std::string("config.json's ") + key + " lists several ids; seaopt keeps one " + role +
                            " token, the first (" + std::to_string(t.id) + ")");
        }
        if (t.id < 0 || t.id == id) return;
        const std::string theirs = std::to_string(t.id) + " (" + tok_detail::quote(tok.tokens[(size_t)t.id]) + ")";
        const std::string ours = std::to_string(id) + " (" + tok_detail::quote(tok.tokens[(size_t)id]) + ")";
        if (!config_wins) {
            notes.push_back(std::string("config.json's ") + key + " " + theirs + " differs from the tokenizer's " +
                            role + " token " + ours + "; seaopt keeps the tokenizer's, which Hugging Face's "
                            "tokenizer(text) prepends");
            return;
        }
        notes.push_back(std::string("config.json's ") + key + " " + theirs + " is the " + role + " token, not " + ours);
        id = (int32_t)t.id;
    };
    apply("bos_token_id", config.bos_token_id, tok.bos_id, "beginning-of-sequence", false);
    apply("eos_token_id", config.eos_token_id, tok.eos_id, "end-of-sequence", true);
    apply("pad_token_id", config.pad_token_id, tok.pad_id, "padding", true);
    return notes;
}

// general.name is a GGUF string, which the format requires to be UTF-8.
void check_model_name(const std::string &name, bool given) {
    const size_t bad = tok_detail::find_invalid_utf8(name);
    if (bad == std::string::npos) return;
    char where[80];
    std::snprintf(where, sizeof where, " is not valid UTF-8 (byte %zu is 0x%02X)", bad, (unsigned)(unsigned char)name[bad]);
    throw Error(SEAOPT_ERR_INVALID_UTF8,
                given ? std::string("the model name") + where + ": general.name is a GGUF string, which must be UTF-8"
                      : std::string("the checkpoint directory's name, the default model name,") + where +
                            ": give one with --name");
}

}  // namespace

void refuse_output_over_input(const std::string &output, const std::vector<std::string> &inputs) {
    std::error_code ec;
    for (const std::string &in : inputs) {
        if (fs::equivalent(output, in, ec)) {
            throw_invalid_argument("the output " + output + " is the input file " + in + "; write to another path");
        }
    }
}

DType parse_outtype(const std::string &s) {
    if (s == "f16" || s == "F16") return DType::F16;
    if (s == "bf16" || s == "BF16") return DType::BF16;
    if (s == "f32" || s == "F32") return DType::F32;
    throw_invalid_argument("unknown output type '" + s + "' (use f16, bf16 or f32)");
}

const char *outtype_name(DType t) {
    switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    }
    return "?";
}

uint32_t gguf_file_type(DType t) {
    switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::BF16: return 32;
    }
    return 0;
}

namespace {

// One loop per (from, to) pair, so the per-element work has no type branches.
template <typename Load, typename Store>
void convert_loop(const uint8_t *s, size_t ss, uint8_t *d, size_t ds, size_t n, Load load, Store store) {
    for (size_t i = 0; i < n; ++i, s += ss, d += ds) store(d, load(s));
}

float load_f32(const uint8_t *p) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
}
float load_f16(const uint8_t *p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}
float load_bf16(const uint8_t *p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return bf16_to_f32(h);
}
void store_f32(uint8_t *p, float f) { std::memcpy(p, &f, 4); }
void store_f16(uint8_t *p, float f) {
    const uint16_t h = f32_to_f16(f);
    std::memcpy(p, &h, 2);
}
void store_bf16(uint8_t *p, float f) {
    const uint16_t h = f32_to_bf16(f);
    std::memcpy(p, &h, 2);
}

template <typename Load>
void convert_from(const uint8_t *s, size_t ss, uint8_t *d, DType to, size_t n, Load load) {
    switch (to) {
    case DType::F32: convert_loop(s, ss, d, 4, n, load, store_f32); break;
    case DType::F16: convert_loop(s, ss, d, 2, n, load, store_f16); break;
    case DType::BF16: convert_loop(s, ss, d, 2, n, load, store_bf16); break;
    }
}

}  // namespace

void convert_elements(const void *src, DType from, void *dst, DType to, size_t n) {
    if (from == to) {
        std::memcpy(dst, src, n * dtype_size(from));
        return;
    }
    const uint8_t *s = static_cast<const uint8_t *>(src);
    uint8_t *d = static_cast<uint8_t *>(dst);
    switch (from) {
    case DType::F32: convert_from(s, 4, d, to, n, load_f32); break;
    case DType::F16: convert_from(s, 2, d, to, n, load_f16); break;
    case DType::BF16: convert_from(s, 2, d, to, n, load_bf16); break;
    }
}

size_t first_non_finite(const void *data, DType t, size_t n) {
    const uint8_t *p = static_cast<const uint8_t *>(data);
    switch (t) {
    case DType::F32:
        for (size_t i = 0; i < n; ++i) {
            uint32_t u;
            std::memcpy(&u, p + 4 * i, 4);
            if ((u & 0x7f800000u) == 0x7f800000u) return i;
        }
        break;
    case DType::F16:
    case DType::BF16: {
        const uint16_t exp = t == DType::F16 ? 0x7c00 : 0x7f80;
        for (size_t i = 0; i < n; ++i) {
            uint16_t u;
            std::memcpy(&u, p + 2 * i, 2);
            if ((u & exp) == exp) return i;
        }
        break;
    }
    }
    return n;
}

namespace {

// A weight that is NaN or infinite in the checkpoint, or that the output type cannot hold (an f32 above 65504 written
// as f16), would make a model that loads and then answers NaN: refused with the tensor, element and value instead.
void check_finite(const std::string &tensor, const std::vector<uint8_t> &in, DType from, const uint8_t *out, DType to,
                  size_t n, uint64_t first_element) {
    size_t bad = first_non_finite(in.data(), from, n);
    float value = 0.0f;
    if (bad < n) {
        convert_elements(in.data() + bad * dtype_size(from), from, &value, DType::F32, 1);
        throw_model_format("tensor '" + tensor + "' has a non-finite value (" + std::to_string(value) + ") at element " +
                           std::to_string(first_element + bad) + ": the checkpoint is damaged");
    }
    if (out == nullptr) return;
    bad = first_non_finite(out, to, n);
    if (bad < n) {
        convert_elements(in.data() + bad * dtype_size(from), from, &value, DType::F32, 1);
        throw_model_format("tensor '" + tensor + "' has a value (" + std::to_string(value) + ") at element " +
                           std::to_string(first_element + bad) + " that " + outtype_name(to) +
                           " cannot hold: convert with --outtype f32");
    }
}

}  // namespace

ConvertResult convert_checkpoint(const ConvertOptions &options, const ProgressFn &progress) {
    const auto t0 = std::chrono::steady_clock::now();
    const fs::path dir(options.input_dir);
    {
        std::error_code ec;
        if (!fs::is_directory(dir, ec)) throw_io(options.input_dir + " is not a directory");
    }
    if (options.output_path.empty()) throw_invalid_argument("no output path given");
    if (options.sea_k != 0 && options.sea_checkpoint.empty()) throw_invalid_argument("--sea-k needs --sea");

    require_file(dir, "config.json", "the model's Hugging Face configuration");
    const HfOptConfig config = read_hf_config((dir / "config.json").string());
    OptHparams hp = config.hp;
    std::vector<std::string> notes;
    TokenizerData tok = load_tokenizer(dir, hp, notes);
    for (std::string &note : apply_config_token_ids(config, tok)) notes.push_back(std::move(note));
    const Checkpoint ckpt = open_checkpoint(options.input_dir);
    {
        std::vector<std::string> inputs = {(dir / "config.json").string(), (dir / "vocab.json").string(),
                                           (dir / "merges.txt").string(), (dir / "tokenizer.json").string()};
        inputs.insert(inputs.end(), ckpt.files.begin(), ckpt.files.end());
        if (!ckpt.index_file.empty()) inputs.push_back(ckpt.index_file);
        for (const char *name : {"tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}) {
            inputs.push_back((dir / name).string());
        }
        if (!options.sea_checkpoint.empty()) inputs.push_back(options.sea_checkpoint);
        if (const std::string why = output_path_problem(options.output_path); !why.empty()) {
            throw_invalid_argument("the output " + why);
        }
        refuse_output_over_input(options.output_path, inputs);
    }
    const std::string name = options.name.empty() ? default_model_name(options.input_dir) : options.name;
    check_model_name(name, !options.name.empty());
    TensorPlan plan = plan_tensors(ckpt.tensors, config);
    std::vector<std::string> files = ckpt.files;  // the SEA checkpoint, if any, comes last

    // --sea: the estimator's values are computed here (they are small: sea.md §5.1), so that every
    // check is done before the output is started; its OPT tensors are streamed like the others.
    ConvertResult result;
    SeaCheckpoint sea_ckpt;
    SeaPlan sea_plan;
    std::vector<std::vector<float>> sea_values;
    if (!options.sea_checkpoint.empty()) {
        sea_ckpt = open_sea_checkpoint(options.sea_checkpoint, files.size());
        files.push_back(options.sea_checkpoint);
        sea_plan = plan_sea(sea_ckpt, config, options.sea_k, plan);
        hp.has_sea = true;
        hp.sea = sea_plan.sea;
        FileSource src(options.sea_checkpoint, fs::path(options.sea_checkpoint).filename().string());
        for (const SeaPlannedTensor &t : sea_plan.tensors) {
            sea_values.push_back(sea_tensor_data(t, src));
            const std::vector<float> &v = sea_values.back();
            if (const size_t bad = first_non_finite(v.data(), DType::F32, v.size()); bad < v.size()) {
                const std::string name = t.source ? t.source->name : t.spec.gguf_name;
                throw_model_format("SEA tensor '" + name + "' has a non-finite value (" + std::to_string(v[bad]) +
                                   ") at element " + std::to_string(bad) + ": the checkpoint is damaged");
            }
        }
        result.has_sea = true;
        result.sea_format = sea_ckpt.format;
        result.sea = hp.sea;
        result.sea_k_source = sea_plan.k_source;
        result.n_sea_tensors = sea_plan.tensors.size();
        result.n_opt_replaced = sea_plan.n_opt_replaced;
        result.n_sea_ignored = sea_plan.n_ignored;
        result.n_teacher_ignored = sea_plan.n_teacher;
        notes.insert(notes.end(), sea_plan.notes.begin(), sea_plan.notes.end());
        result.sea_engine_warning = sea_plan.engine_warning;
    }

    result.notes = std::move(notes);
    if (options.q8_0) check_q8_0_widths(hp);
    static_assert(kConvertChunkElements % kQ8Block == 0, "a chunk must hold whole Q8_0 blocks");
    auto quantized = [&](const PlannedTensor &p) { return options.q8_0 && p.expected.quantizable; };

    gguf::Writer writer;
    set_metadata(writer, hp, options.outtype, options.q8_0, name, tok);
    result.source_format = ckpt.format;
    result.n_skipped_tied_lm_head = plan.n_skipped_tied_lm_head;
    for (const PlannedTensor &p : plan.tensors) {
        writer.add_tensor(p.expected.gguf_name, quantized(p) ? gguf::TensorType::Q8_0 : gguf_type(options.outtype),
                          p.expected.ne);
    }
    for (const SeaPlannedTensor &t : sea_plan.tensors) writer.add_tensor(t.spec.gguf_name, gguf::TensorType::F32, t.spec.ne);
    for (const gguf::TensorInfo &t : writer.tensors()) {
        result.n_params += t.n_elements;
        result.tensor_bytes += t.n_bytes;
    }
    result.n_tensors = writer.tensors().size();

    // Stream: each tensor is read in chunks with pread, converted, and handed to the writer.
    std::vector<std::unique_ptr<FileSource>> sources(files.size());
    const size_t out_size = dtype_size(options.outtype);
    std::vector<uint8_t> in_buf, out_buf;
    std::vector<float> f32_buf;
    ConvertProgress prog;
    prog.n_tensors = result.n_tensors;
    prog.bytes_total = result.tensor_bytes;
    write_gguf_guarded(writer, options.output_path, [&](size_t i, const gguf::Writer::Sink &sink) {
        prog.tensor_index = i;
        if (i >= plan.tensors.size()) {  // a SEA tensor, F32
            const size_t k = i - plan.tensors.size();
            prog.tensor_name = &sea_plan.tensors[k].spec.gguf_name;
            sink(sea_values[k].data(), sea_values[k].size() * sizeof(float));
            prog.bytes_done += sea_values[k].size() * sizeof(float);
            if (progress) progress(prog);
            return;
        }
        const PlannedTensor &p = plan.tensors[i];
        const SourceTensor &src = *p.source;
        std::unique_ptr<FileSource> &file = sources[src.file];
        if (!file) file = std::make_unique<FileSource>(files[src.file], fs::path(files[src.file]).filename().string());
        const size_t in_size = dtype_size(src.dtype);
        const uint64_t n_elements = src.n_bytes / in_size;
        prog.tensor_name = &p.expected.gguf_name;
        for (uint64_t done = 0; done < n_elements;) {
            const size_t n = (size_t)std::min<uint64_t>(kConvertChunkElements, n_elements - done);
            in_buf.resize(n * in_size);
            file->read(src.offset + done * in_size, in_buf.data(), in_buf.size());
            uint64_t written = (uint64_t)n * out_size;
            if (quantized(p)) {  // chunks are whole blocks: kConvertChunkElements and the element count are multiples of 32
                f32_buf.resize(n);
                convert_elements(in_buf.data(), src.dtype, f32_buf.data(), DType::F32, n);
                out_buf.resize(n / kQ8Block * kQ8BlockBytes);
                size_t bad = 0;
                if (!quantize_q8_0(f32_buf.data(), out_buf.data(), n, &bad)) {
                    throw_model_format("tensor '" + src.name + "' " + q8_0_refusal(f32_buf[bad], done + bad));
                }
                written = out_buf.size();
                sink(out_buf.data(), out_buf.size());
            } else if (src.dtype == options.outtype) {
                check_finite(src.name, in_buf, src.dtype, nullptr, options.outtype, n, done);
                sink(in_buf.data(), in_buf.size());
            } else {
                out_buf.resize(n * out_size);
                convert_elements(in_buf.data(), src.dtype, out_buf.data(), options.outtype, n);
                check_finite(src.name, in_buf, src.dtype, out_buf.data(), options.outtype, n, done);
                sink(out_buf.data(), out_buf.size());
            }
            done += n;
            prog.bytes_done += written;
            if (progress) progress(prog);
        }
        if (n_elements == 0 && progress) progress(prog);
    });

    std::error_code ec;
    result.file_bytes = fs::file_size(options.output_path, ec);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
}

}  // namespace seaopt::convert
