#include "weights-convert/sea_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "engine/error.h"
#include "model/opt_sea.h"
#include "weights-convert/convert.h"
#include "weights-convert/safetensors.h"
#include "weights-convert/unpickler.h"

namespace seaopt::convert {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxProblemsListed = 6;

bool starts_with(const std::string &s, const std::string &p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string &s, const std::string &p) {
    return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// The SEA state_dict entries sea.md §5.1 marks unused by OPT inference, after the layer's
// "...perlin_self_attention." prefix.
bool is_unused_sea_key(const std::string &rest) {
    static const std::set<std::string> kUnused = [] {
        std::set<std::string> s = {
            "attention.performer_proj_updater.instance.projection_matrix",  // duplicate of performer's
            "attention.performer_proj_updater.calls_since_last_redraw",     // int64 counter
            "attention.attention_predictor_enc_head_embd",                  // identity buffer
            "attention.v_eye_learned",                                      // bidirectional leftover
        };
        for (const char *m : {"0", "1"}) {  // only with --enc-per-layer, off in the paper runs
            for (const char *p : {"weight", "bias"}) {
                s.insert(std::string("attention.attention_predictor_enc_per_layer.") + m + "." + p);
            }
        }
        for (const char *n : {"norm_performer", "norm_partial", "norm_random", "norm"}) {  // 'norm' output mode
            for (const char *p : {"weight", "bias"}) s.insert(std::string("attention.") + n + "." + p);
        }
        for (const char *n : {"query_lora", "key_lora", "value_lora"}) {  // LoRA, disabled
            for (const char *p : {"lora_a", "lora_b"}) s.insert(std::string(n) + "." + p);
        }
        return s;
    }();
    return kUnused.count(rest) > 0;
}

// "decoder.layers.N.self_attn.perlin_self_attention.rest" -> N and rest.
bool parse_sea_key(const std::string &canonical, uint64_t *layer, std::string *rest) {
    static const std::string kLayers = "decoder.layers.", kMid = ".self_attn.perlin_self_attention.";
    if (!starts_with(canonical, kLayers)) return false;
    const size_t mid = canonical.find(kMid, kLayers.size());
    if (mid == std::string::npos) return false;
    const std::string num = canonical.substr(kLayers.size(), mid - kLayers.size());
    if (num.empty() || num.size() > 6 || num.find_first_not_of("0123456789") != std::string::npos) return false;
    *layer = std::stoull(num);
    *rest = canonical.substr(mid + kMid.size());
    return true;
}

std::string list_items(const std::vector<std::string> &items) {
    std::string s;
    for (size_t i = 0; i < items.size() && i < kMaxProblemsListed; ++i) s += (i ? ", " : "") + items[i];
    if (items.size() > kMaxProblemsListed) s += " and " + std::to_string(items.size() - kMaxProblemsListed) + " more";
    return s;
}

std::vector<uint64_t> pytorch_shape(const std::vector<int64_t> &ne) { return {ne.rbegin(), ne.rend()}; }

// The shape a SEA tensor has in the checkpoint (sea.md §5.1): E_pos is (1, 1, P, d); a causal
// conv weight of kernel (kh, kw) is stored (out, in, 2kh-1, kw); everything else as in the GGUF.
std::vector<uint64_t> sea_source_shape(const SeaPlannedTensor &t) {
    std::vector<uint64_t> shape = pytorch_shape(t.spec.ne);
    if (ends_with(t.spec.gguf_name, "sea.pos_table")) {
        shape.insert(shape.begin(), {1, 1});
    } else if (t.masked_conv) {
        if (shape.size() == 2) shape.insert(shape.end(), {1, 1});  // the 1x1 conv4 is stored 4-D
        shape[2] = 2 * shape[2] - 1;
    }
    return shape;
}

bool is_masked_conv(const std::string &gguf_name) {
    return ends_with(gguf_name, "sea.conv1.weight") || ends_with(gguf_name, "sea.conv2.weight") ||
           ends_with(gguf_name, "sea.conv4.weight");
}

std::vector<float> read_f32(const SourceTensor &t, const ByteSource &src) {
    const size_t esize = dtype_size(t.dtype);
    std::vector<uint8_t> raw = src.read_vec(t.offset, (size_t)t.n_bytes);
    std::vector<float> out(raw.size() / esize);
    convert_elements(raw.data(), t.dtype, out.data(), DType::F32, out.size());
    return out;
}

// A dict's string keys, quoted, for messages.
std::string dict_keys(const PickleValue &d) {
    std::vector<std::string> keys;
    for (size_t j = 0; j + 1 < d.items.size(); j += 2) {
        if (d.items[j]->kind == PickleValue::Kind::Str) keys.push_back("'" + d.items[j]->s.substr(0, 60) + "'");
    }
    return keys.empty() ? "none" : list_items(keys);
}

}  // namespace

namespace {

std::string without_orig_mod(std::string n) {
    for (size_t at; (at = n.find("_orig_mod.")) != std::string::npos;) n.erase(at, 10);  // torch.compile
    return n;
}

// The KD wrapper's teacher (sea.md §5.3).
bool is_teacher_name(const std::string &stored) { return starts_with(without_orig_mod(stored), "base_model."); }

}  // namespace

std::string sea_student_name(const std::string &stored) {
    std::string n = without_orig_mod(stored);
    if (starts_with(n, "base_model.")) return "";
    for (int i = 0; i < 2 && !starts_with(n, "decoder.") && n != "lm_head.weight" && starts_with(n, "model."); ++i) {
        n.erase(0, 6);
    }
    return starts_with(n, "decoder.") || n == "lm_head.weight" ? n : "";
}

SeaCheckpoint read_sea_checkpoint(const ByteSource &src, size_t file) {
    const std::string &what = src.name();
    SeaCheckpoint c;
    // safetensors: an 8-byte header length, then '{'; anything else goes to the torch reader, which
    // names what it is not (not a zip; a legacy pre-1.6 torch.save).
    uint8_t head[9] = {0};
    if (src.size() >= 9) src.read(0, head, 9);
    const bool zip = head[0] == 'P' && head[1] == 'K';
    if (!zip && head[8] == '{') {
        c.format = "safetensors";
        c.tensors = list_safetensors_file(src, file, /*keep_unconvertible=*/true);
        return c;
    }

    const TorchArchive archive = read_torch_archive(src);  // a legacy (pre-1.6) pickle is refused here
    const std::shared_ptr<const PickleValue> root =
        unpickle(archive.pickle.data(), archive.pickle.size(), what, PickleMode::Checkpoint);
    if (root->kind != PickleValue::Kind::Dict) {
        throw_model_format(what + ": holds a " + std::string(pickle_kind_name(root->kind)) +
                           ", not a state_dict or a training checkpoint dict");
    }
    const PickleValue *state_dict = nullptr;
    if (const PickleValue *m = root->get("module"); m && m->kind == PickleValue::Kind::Dict) {
        state_dict = m;
        c.format = "DeepSpeed model states (its 'module' state_dict)";
    } else if (const PickleValue *m = root->get("model"); m && m->kind == PickleValue::Kind::Dict) {
        state_dict = m;
        c.format = "trainer checkpoint (its 'model' state_dict)";
        const PickleValue *cfg = root->get("config");
        if (const PickleValue *extra = cfg ? cfg->get("additional_config") : nullptr) {
            if (const PickleValue *k = extra->get("k"); k && k->kind == PickleValue::Kind::Int) c.config_k = k->i;
            if (const PickleValue *w = extra->get("attention_predictor_length"); w && w->kind == PickleValue::Kind::Int) {
                c.config_compressed_width = w->i;
            }
            if (const PickleValue *e = extra->get("attention_predictor_enc_per_layer");
                e && e->kind == PickleValue::Kind::Bool) {
                c.config_enc_per_layer = e->b;
            }
        }
    } else {
        for (size_t j = 1; j < root->items.size(); j += 2) {
            if (root->items[j]->kind != PickleValue::Kind::Tensor) {
                throw_model_format(what + ": holds a dict with keys " + dict_keys(*root) +
                                   ": not a state_dict, a trainer checkpoint (with 'model') or DeepSpeed model "
                                   "states (with 'module')");
            }
        }
        state_dict = root.get();
        c.format = "torch state_dict";
    }
    c.tensors = locate_torch_tensors(src, archive, state_dict_tensors(*state_dict, what), file);
    return c;
}

SeaCheckpoint open_sea_checkpoint(const std::string &path, size_t file) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        throw_invalid_argument("--sea " + path + " is a directory: name the checkpoint file (checkpoint.pth, "
                               "mp_rank_00_model_states.pt or a .safetensors file)");
    }
    FileSource src(path, fs::path(path).filename().string());
    return read_sea_checkpoint(src, file);
}

SeaPlan plan_sea(const SeaCheckpoint &ckpt, const HfOptConfig &config, uint32_t k_option, TensorPlan &base_plan) {
    const OptHparams &base = config.hp;
    SeaPlan plan;

    // ---- sort the entries: the teacher, the student's SEA tensors, the student's OPT tensors
    std::unordered_map<std::string, const SourceTensor *> student;  // canonical name -> entry
    std::vector<std::string> unknown, duplicated;
    size_t n_sea_keys = 0;
    for (const SourceTensor &s : ckpt.tensors) {
        const std::string c = sea_student_name(s.name);
        if (c.empty()) {
            if (is_teacher_name(s.name)) {
                ++plan.n_teacher;
            } else {
                unknown.push_back("'" + s.name + "'");
            }
            continue;
        }
        if (!student.emplace(c, &s).second) {
            duplicated.push_back("'" + student[c]->name + "' and '" + s.name + "'");
            continue;
        }
        uint64_t layer;
        std::string rest;
        if (parse_sea_key(c, &layer, &rest)) ++n_sea_keys;
    }
    if (n_sea_keys == 0) {
        throw_model_format("the SEA checkpoint (" + ckpt.format + ") has no SEA estimator tensors (keys like "
                           "'model.decoder.layers.0.self_attn.perlin_self_attention.attention.performer."
                           "projection_matrix', sea.md §5.1): is it a checkpoint of the authors' SEA trainer?");
    }
    if (!duplicated.empty()) {
        throw_model_format("the SEA checkpoint holds the same student tensor under two names: " + list_items(duplicated));
    }

    // ---- the hyperparameters, from layer 0's shapes (sea.md §5.1)
    const uint64_t d = base.head_dim();
    auto layer0 = [&](const char *rest, size_t rank, const std::string &want) -> const SourceTensor & {
        const std::string name = sea_hf_prefix(0) + "attention." + rest;
        const auto it = student.find(name);
        if (it == student.end()) {
            throw_model_format("the SEA checkpoint has no '" + name + "' (of shape " + want +
                               "), needed to read the SEA hyperparameters (sea.md §5.1)");
        }
        if (it->second->shape.size() != rank) {
            throw_model_format("SEA tensor '" + it->second->name + "' has shape " + shape_string(it->second->shape) +
                               ", expected " + want + " (sea.md §5.1)");
        }
        return *it->second;
    };
    const std::string ds = std::to_string(d);
    const SourceTensor &pos = layer0("v_eye_learned_causal", 4, "[1, 1, P, " + ds + "]");
    const SourceTensor &proj = layer0("performer.projection_matrix", 2, "[m, " + ds + "]");
    const SourceTensor &enc = layer0("attention_predictor_enc.0.weight", 2, "[d', " + std::to_string(3 * d) + "]");
    const SourceTensor &norm_out = layer0("attention_predictor_cnn.2.module.weight", 1, "[K]");
    auto dim = [](uint64_t v) { return (uint32_t)std::min<uint64_t>(v, UINT32_MAX); };
    plan.sea.position_table_length = dim(pos.shape[2]);
    plan.sea.random_features = dim(proj.shape[0]);
    plan.sea.hidden = dim(enc.shape[0]);
    plan.sea.compressed_width = dim(norm_out.shape[0]);

    // k: --sea-k, else the trainer's config, else sea.md §6's 64.
    if (ckpt.config_enc_per_layer.value_or(false)) {
        throw_unsupported("the SEA checkpoint was trained with --enc-per-layer (the trainer config's "
                          "attention_predictor_enc_per_layer): seaopt implements the shared encoder of the paper's "
                          "runs (sea.md §2.4, §13)");
    }
    if (k_option != 0) {
        plan.sea.k = k_option;
        plan.k_source = "--sea-k";
        if (ckpt.config_k && *ckpt.config_k != (int64_t)k_option) {
            plan.notes.push_back("k = " + std::to_string(k_option) + " from --sea-k; the trainer config says k = " +
                                 std::to_string(*ckpt.config_k));
        }
    } else if (ckpt.config_k) {
        if (*ckpt.config_k < 1 || *ckpt.config_k > (int64_t)kSeaMaxK) {
            throw_model_format("the SEA checkpoint's trainer config has k = " + std::to_string(*ckpt.config_k) +
                               ", outside [1, " + std::to_string(kSeaMaxK) + "] (give --sea-k)");
        }
        plan.sea.k = (uint32_t)*ckpt.config_k;
        plan.k_source = "the trainer config";
    } else {
        plan.sea.k = kSeaDefaultK;
        plan.k_source = "the default of sea.md §6";
    }
    if (ckpt.config_compressed_width && *ckpt.config_compressed_width != (int64_t)plan.sea.compressed_width) {
        plan.notes.push_back("the trainer config says attention_predictor_length = " +
                             std::to_string(*ckpt.config_compressed_width) + " but the tensors have K = " +
                             std::to_string(plan.sea.compressed_width) + "; the tensors' K is used");
    }
    OptHparams hp = base;
    hp.has_sea = true;
    hp.sea = plan.sea;
    try {
        check_sea_hparams(hp);
    } catch (const Error &e) {
        throw Error(e.code(), std::string("the SEA checkpoint's hyperparameters (K from '") + norm_out.name + "' " +
                                  shape_string(norm_out.shape) + ", m from '" + proj.name + "', d' from '" + enc.name +
                                  "', P from '" + pos.name + "') are not usable: " + e.what());
    }
    // The file is valid GGUF for any head size, but the engine runs SEA on heads of 64 only (model/opt_sea.cpp):
    // said at conversion, not first when a context asks for SEA.
    try {
        sea_config_for_model(hp, 0);
    } catch (const Error &e) {
        plan.engine_warning = std::string("seaopt's engine cannot run SEA attention on this model (") + e.what() +
                              "): the file is written, and contexts with --attention sea will refuse it";
    }
    if (plan.sea.position_table_length < base.n_ctx_train) {
        plan.notes.push_back("the SEA positional table has " + std::to_string(plan.sea.position_table_length) +
                             " rows, fewer than the model's " + std::to_string(base.n_ctx_train) +
                             " positions: longer sequences need it resized (sea.md §2.2)");
    }

    // ---- every SEA tensor of every layer, with its shape
    std::vector<std::string> missing, misshaped, bad_dtype;
    std::set<std::string> used;  // canonical names
    size_t n_default_masks = 0;
    for (OptTensorSpec &spec : sea_tensor_specs(hp)) {
        SeaPlannedTensor t;
        t.masked_conv = is_masked_conv(spec.gguf_name);
        t.spec = std::move(spec);
        const std::vector<uint64_t> want = sea_source_shape(t);
        auto take = [&](const std::string &name) -> const SourceTensor * {
            const auto it = student.find(name);
            if (it == student.end()) return nullptr;
            used.insert(name);
            const SourceTensor &s = *it->second;
            if (s.shape != want) {
                misshaped.push_back("'" + s.name + "' has shape " + shape_string(s.shape) + ", expected " +
                                    shape_string(want) + " (" + t.spec.gguf_name + ")");
            } else if (!s.unconvertible.empty()) {
                bad_dtype.push_back("'" + s.name + "' (" + s.unconvertible + ")");
            }
            return &s;
        };
        t.source = take(t.spec.hf_name);
        if (!t.source) missing.push_back("'" + t.spec.hf_name + "' (" + t.spec.gguf_name + ")");
        if (t.masked_conv) {
            t.mask = take(t.spec.hf_name + "_mask");
            if (!t.mask) ++n_default_masks;
        }
        plan.tensors.push_back(std::move(t));
    }
    plan.n_sea_source = used.size();
    if (n_default_masks) {
        plan.notes.push_back(std::to_string(n_default_masks) + " causal conv weight(s) came without a weight_mask: "
                             "the module's own mask (1 on kernel rows 0..2) was applied (sea.md §2.6)");
    }

    // ---- the rest: unused SEA entries, and the fine-tuned OPT tensors that replace the base ones
    std::unordered_map<std::string, size_t> base_by_hf;
    for (size_t i = 0; i < base_plan.tensors.size(); ++i) base_by_hf.emplace(base_plan.tensors[i].expected.hf_name, i);
    std::vector<std::string> beyond, not_base, opt_misshaped;
    for (const auto &[c, s] : student) {
        if (used.count(c)) continue;
        uint64_t layer;
        std::string rest;
        if (parse_sea_key(c, &layer, &rest)) {
            if (layer >= base.n_layer) {
                beyond.push_back("'" + s->name + "'");
            } else if (is_unused_sea_key(rest)) {
                ++plan.n_ignored;
            } else {
                unknown.push_back("'" + s->name + "'");
            }
            continue;
        }
        const auto it = base_by_hf.find(c);
        if (it == base_by_hf.end()) {
            if (c == "lm_head.weight" && config.tie_word_embeddings) {
                ++plan.n_tied_lm_head;
            } else {
                not_base.push_back("'" + s->name + "'");
            }
            continue;
        }
        PlannedTensor &p = base_plan.tensors[it->second];
        const std::vector<uint64_t> want = pytorch_shape(p.expected.ne);
        if (s->shape != want) {
            opt_misshaped.push_back("'" + s->name + "' has shape " + shape_string(s->shape) + ", the base model's '" +
                                    p.expected.hf_name + "' has " + shape_string(want));
            continue;
        }
        if (!s->unconvertible.empty()) {
            bad_dtype.push_back("'" + s->name + "' (" + s->unconvertible + ")");
            continue;
        }
        p.source = s;
        ++plan.n_opt_replaced;
    }

    std::string problems;
    auto add = [&](std::vector<std::string> items, const std::string &head) {
        if (items.empty()) return;
        std::sort(items.begin(), items.end());
        problems += (problems.empty() ? "" : "; ") + std::to_string(items.size()) + " " + head + ": " + list_items(items);
    };
    add(missing, "SEA tensor(s) missing");
    add(misshaped, "SEA tensor(s) with the wrong shape (the base model has " + std::to_string(base.n_head) +
                       " heads of " + std::to_string(d) + "; K = " + std::to_string(hp.sea.compressed_width) +
                       ", m = " + std::to_string(hp.sea.random_features) + ", d' = " + std::to_string(hp.sea.hidden) +
                       ", P = " + std::to_string(hp.sea.position_table_length) + ")");
    add(opt_misshaped, "fine-tuned OPT tensor(s) whose shape differs from the base model's");
    add(beyond, "tensor(s) of layers the base model (" + std::to_string(base.n_layer) + " layers) does not have");
    add(not_base, "OPT tensor(s) the base model does not have");
    add(unknown, "unknown tensor(s) (not in sea.md §5.1: a SEA variant made with other architecture switches?)");
    add(bad_dtype, "tensor(s) of a type seaopt-convert cannot read (it reads F16, BF16 and F32, contiguous)");
    if (!problems.empty()) {
        throw_model_format("the SEA checkpoint (" + ckpt.format + ") does not match the base model: " + problems);
    }
    return plan;
}

std::vector<float> sea_tensor_data(const SeaPlannedTensor &t, const ByteSource &src) {
    std::vector<float> w = read_f32(*t.source, src);
    if (!t.masked_conv) return w;  // E_pos (1, 1, P, d) -> {d, P}: the same elements

    // (out, in, R = 2kh-1, kw) * mask -> rows 0..kh-1 (sea.md §2.6: rows kh.. are masked to zero).
    const std::vector<uint64_t> &shape = t.source->shape;
    const uint64_t n_kernels = shape[0] * shape[1], R = shape[2], kw = shape[3], kh = (R + 1) / 2;
    std::vector<float> mask = t.mask ? read_f32(*t.mask, src) : std::vector<float>();
    if (!t.mask) {
        mask.assign(w.size(), 0.0f);
        for (uint64_t k = 0; k < n_kernels; ++k) std::fill_n(mask.begin() + (ptrdiff_t)(k * R * kw), kh * kw, 1.0f);
    }
    std::vector<float> out;
    out.reserve(n_kernels * kh * kw);
    for (uint64_t k = 0; k < n_kernels; ++k) {
        for (uint64_t r = 0; r < R; ++r) {
            for (uint64_t x = 0; x < kw; ++x) {
                const size_t i = (size_t)((k * R + r) * kw + x);
                const float v = w[i] * mask[i];
                if (r < kh) {
                    out.push_back(v);
                } else if (v != 0.0f) {
                    throw_model_format("SEA tensor '" + t.source->name + "' times its weight_mask is non-zero in kernel row " +
                                       std::to_string(r) + " (element " + std::to_string(i) + "): the causal conv has live rows 0.." +
                                       std::to_string(kh - 1) + " only (sea.md §2.6)");
                }
            }
        }
    }
    return out;
}

}  // namespace seaopt::convert
