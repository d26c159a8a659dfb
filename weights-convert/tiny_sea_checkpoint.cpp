#include "weights-convert/tiny_sea_checkpoint.h"

#include <cmath>
#include <cstring>
#include <map>

#include "engine/error.h"
#include "engine/fp16.h"
#include "weights-convert/safetensors_writer.h"
#include "weights-convert/torch_writer.h"

namespace seaopt::convert {

SeaCheckpointLayout parse_sea_checkpoint_layout(const std::string &s) {
    if (s == "safetensors") return SeaCheckpointLayout::Safetensors;
    if (s == "state-dict") return SeaCheckpointLayout::StateDict;
    if (s == "trainer") return SeaCheckpointLayout::Trainer;
    if (s == "deepspeed") return SeaCheckpointLayout::DeepSpeed;
    throw_invalid_argument("unknown SEA checkpoint layout '" + s + "' (safetensors, state-dict, trainer or deepspeed)");
}

const char *sea_checkpoint_layout_name(SeaCheckpointLayout l) {
    switch (l) {
    case SeaCheckpointLayout::Safetensors: return "safetensors";
    case SeaCheckpointLayout::StateDict: return "state-dict";
    case SeaCheckpointLayout::Trainer: return "trainer";
    case SeaCheckpointLayout::DeepSpeed: return "deepspeed";
    }
    return "?";
}

uint32_t TinySeaSpec::m() const {
    const double d = hp.head_dim();
    return random_features ? random_features : (uint32_t)std::max(1.0, std::floor(d * std::log(d) / 8.0));
}
uint32_t TinySeaSpec::d_hidden() const { return hidden ? hidden : 2 * hp.head_dim(); }
uint32_t TinySeaSpec::positions() const { return position_table_length ? position_table_length : hp.n_ctx_train; }

namespace {

using Bytes = std::vector<uint8_t>;

uint64_t splitmix64(uint64_t &state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// n standard normal numbers (Box-Muller over splitmix64), seeded from the seed and the name.
std::vector<float> normal_values(uint64_t n, uint64_t seed, const std::string &name, double scale, double shift) {
    uint64_t state = seed ^ 0xcbf29ce484222325ull;
    for (unsigned char c : name) state = (state ^ c) * 0x100000001b3ull;
    std::vector<float> v(n);
    for (uint64_t i = 0; i < n; i += 2) {
        const double u1 = ((double)(splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;
        const double u2 = (double)(splitmix64(state) >> 11) * 0x1.0p-53;
        const double r = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
        v[i] = (float)(shift + scale * r * std::cos(a));
        if (i + 1 < n) v[i + 1] = (float)(shift + scale * r * std::sin(a));
    }
    return v;
}

uint64_t numel(const std::vector<uint64_t> &shape) {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
}

bool ends_with(const std::string &s, const char *suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Embeddings and tables N(0,1); weights N(0,1)/sqrt(fan_in); LayerNorm weights 1 + 0.1 N; biases 0.1 N.
TinySeaTensor random_tensor(const std::string &name, std::vector<uint64_t> shape, uint64_t seed, bool layer_norm = false) {
    double scale = 1.0, shift = 0.0;
    if (ends_with(name, ".bias")) {
        scale = 0.1;
    } else if (layer_norm) {
        scale = 0.1;
        shift = 1.0;
    } else if (shape.size() >= 2 && name.find("embed") == std::string::npos && name.find("v_eye") == std::string::npos &&
               name.find("projection_matrix") == std::string::npos) {
        scale = 1.0 / std::sqrt((double)(numel(shape) / shape[0]));
    }
    TinySeaTensor t;
    t.name = name;
    t.values = normal_values(numel(shape), seed, name, scale, shift);
    t.shape = std::move(shape);
    return t;
}

// OPT tensors (canonical HF names) of the base model's shape, plus lm_head.weight.
void add_opt_tensors(std::vector<TinySeaTensor> &out, const TinySeaSpec &spec, const std::string &prefix,
                     const std::string &lm_head_prefix, uint64_t seed) {
    const size_t embed_index = out.size();
    for (const OptTensorSpec &s : opt_tensor_specs(spec.hp, !spec.tied)) {
        if (s.hf_name == "lm_head.weight") continue;
        const bool ln = s.hf_name.find("layer_norm") != std::string::npos && ends_with(s.hf_name, ".weight");
        out.push_back(random_tensor(prefix + s.hf_name, std::vector<uint64_t>(s.ne.rbegin(), s.ne.rend()), seed, ln));
    }
    // OPTForCausalLM.state_dict() lists lm_head.weight; tied, it is the embedding's storage.
    if (spec.tied) {
        TinySeaTensor lm = out[embed_index];
        lm.name = lm_head_prefix + "lm_head.weight";
        lm.shares_storage_with = (int)embed_index;
        out.push_back(std::move(lm));
    } else {
        const uint64_t V = spec.hp.n_vocab, D = spec.hp.n_embd_proj;
        out.push_back(random_tensor(lm_head_prefix + "lm_head.weight", {V, D}, seed));
    }
}

// The SEA entries of one layer, as sea.md §5.1 lists them (used and unused).
void add_sea_layer(std::vector<TinySeaTensor> &out, const TinySeaSpec &spec, const std::string &prefix, uint32_t layer) {
    const uint64_t d = spec.hp.head_dim(), H = spec.hp.n_head, C = spec.hp.n_embd, m = spec.m(), Dh = spec.d_hidden(),
                   K = spec.compressed_width, P = spec.positions(), G = kSeaCnnChannelsPerHead * H, lora_r = 32;
    const std::string p = prefix + sea_hf_prefix(layer), a = p + "attention.";
    const uint64_t seed = spec.seed + 17;
    auto add = [&](const std::string &name, std::vector<uint64_t> shape, bool ln = false) {
        out.push_back(random_tensor(name, std::move(shape), seed, ln));
    };
    auto add_unused = [&](const std::string &name, std::vector<uint64_t> shape) {
        if (spec.with_unused) add(name, std::move(shape));
    };
    auto add_conv = [&](const std::string &name, uint64_t out_ch, uint64_t in_ch, uint64_t kh, uint64_t kw) {
        const uint64_t R = 2 * kh - 1;  // CausalConv2d stores (out, in, 2k-1, k) and masks rows k.. (sea.md §2.6)
        add(name + ".weight", {out_ch, in_ch, R, kw});
        TinySeaTensor mask;
        mask.name = name + ".weight_mask";
        mask.shape = {out_ch, in_ch, R, kw};
        mask.values.assign(numel(mask.shape), 0.0f);
        for (uint64_t k = 0; k < out_ch * in_ch; ++k) {
            for (uint64_t i = 0; i < kh * kw; ++i) mask.values[k * R * kw + i] = 1.0f;
        }
        out.push_back(std::move(mask));
        add(name + ".bias", {out_ch});
    };
    add(a + "v_eye_learned_causal", {1, 1, P, d});
    add_unused(a + "v_eye_learned", {1, 1, d, d});
    add(a + "performer.projection_matrix", {m, d});
    if (spec.with_unused) {
        TinySeaTensor dup = out.back();  // the same buffer under a second name
        dup.name = a + "performer_proj_updater.instance.projection_matrix";
        dup.shares_storage_with = (int)out.size() - 1;
        out.push_back(std::move(dup));
        TinySeaTensor calls;
        calls.name = a + "performer_proj_updater.calls_since_last_redraw";
        calls.values = {0.0f};
        calls.int64 = true;
        out.push_back(std::move(calls));
    }
    add(a + "attention_predictor_enc.0.weight", {Dh, 3 * d});
    add(a + "attention_predictor_enc.0.bias", {Dh});
    add(a + "attention_predictor_enc.1.weight", {Dh}, true);
    add(a + "attention_predictor_enc.1.bias", {Dh});
    add_unused(a + "attention_predictor_enc_head_embd", {H, H});
    add_unused(a + "attention_predictor_enc_per_layer.0.weight", {H * Dh, H * 3 * d});
    add_unused(a + "attention_predictor_enc_per_layer.0.bias", {H * Dh});
    add_unused(a + "attention_predictor_enc_per_layer.1.weight", {H * Dh});
    add_unused(a + "attention_predictor_enc_per_layer.1.bias", {H * Dh});
    add(a + "attention_predictor_dec_row.0.weight", {kSeaCnnChannelsPerHead * K / kSeaWidthReduction, Dh});
    add(a + "attention_predictor_dec_row.0.bias", {kSeaCnnChannelsPerHead * K / kSeaWidthReduction});
    add(a + "attention_predictor_cnn.0.module.weight", {K / kSeaWidthReduction}, true);
    add(a + "attention_predictor_cnn.0.module.bias", {K / kSeaWidthReduction});
    add_conv(a + "attention_predictor_cnn.1.module.net.0.module", G, G, 3, 3);
    add_conv(a + "attention_predictor_cnn.1.module.net.2.module", G, G, 3, 3);
    add_conv(a + "attention_predictor_cnn.1.module.net.5.module", H, G, 1, 1);
    add(a + "attention_predictor_cnn.2.module.weight", {K}, true);
    add(a + "attention_predictor_cnn.2.module.bias", {K});
    add(a + "attention_predictor_dec_scaler.0.weight", {2, Dh});
    add(a + "attention_predictor_dec_scaler.0.bias", {2});
    for (const char *n : {"norm_performer", "norm_partial", "norm_random", "norm"}) {
        add_unused(a + n + ".weight", {C});
        add_unused(a + n + ".bias", {C});
    }
    for (const char *n : {"query_lora", "key_lora", "value_lora"}) {
        add_unused(p + n + ".lora_a", {lora_r, C});
        add_unused(p + n + ".lora_b", {C, lora_r});
    }
}

std::string student_prefix(const TinySeaSpec &spec) {
    if (spec.prefix != "default") return spec.prefix;
    return spec.layout == SeaCheckpointLayout::DeepSpeed ? "model.model." : "model.";
}

// The KD wrapper's prefix minus the OPTModel's "model.": lm_head sits beside "model." (sea.md §5.3).
std::string lm_head_prefix(const std::string &prefix) {
    return prefix.size() >= 6 && prefix.compare(prefix.size() - 6, 6, "model.") == 0 ? prefix.substr(0, prefix.size() - 6)
                                                                                     : prefix;
}

Bytes encode_values(const TinySeaTensor &t, DType dtype) {
    if (t.int64) {
        Bytes b(t.values.size() * 8);
        for (size_t i = 0; i < t.values.size(); ++i) {
            const int64_t v = (int64_t)t.values[i];
            std::memcpy(&b[8 * i], &v, 8);
        }
        return b;
    }
    Bytes b(t.values.size() * dtype_size(dtype));
    for (size_t i = 0; i < t.values.size(); ++i) {
        if (dtype == DType::F32) {
            std::memcpy(&b[4 * i], &t.values[i], 4);
        } else {
            const uint16_t h = dtype == DType::F16 ? f32_to_f16(t.values[i]) : f32_to_bf16(t.values[i]);
            std::memcpy(&b[2 * i], &h, 2);
        }
    }
    return b;
}

const char *storage_class(DType t) {
    return t == DType::F16 ? "HalfStorage" : t == DType::BF16 ? "BFloat16Storage" : "FloatStorage";
}

// The tensors as an OrderedDict, their storages appended to `storages`.
PyValue torch_state_dict(const std::vector<TinySeaTensor> &tensors, DType dtype, std::vector<TorchStorage> &storages) {
    std::vector<size_t> storage_of(tensors.size());
    std::vector<std::pair<PyValue, PyValue>> items;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const TinySeaTensor &t = tensors[i];
        if (t.shares_storage_with >= 0 && (size_t)t.shares_storage_with < i) {
            storage_of[i] = storage_of[(size_t)t.shares_storage_with];
        } else {
            storage_of[i] = storages.size();
            storages.push_back({t.int64 ? "LongStorage" : storage_class(dtype), t.int64 ? 8 : dtype_size(dtype),
                                encode_values(t, dtype)});
        }
        items.push_back({PyValue::str(t.name), PyValue::tensor(storage_of[i], t.shape)});
    }
    return PyValue::ordered_dict(std::move(items));
}

// A scalar fp32 tensor and an int64 one, as optimizer states hold (torch >= 1.12 keeps 'step' as a tensor).
PyValue optimizer_state(std::vector<TorchStorage> &storages) {
    auto scalar = [&](const char *cls, uint64_t size, Bytes bytes) {
        storages.push_back({cls, size, std::move(bytes)});
        return PyValue::tensor(storages.size() - 1, {});
    };
    float ten = 10.0f;
    Bytes f(4);
    std::memcpy(f.data(), &ten, 4);
    Bytes l(8, 0);
    l[0] = 10;
    storages.push_back({"FloatStorage", 4, Bytes(4 * 6, 0)});
    const PyValue exp_avg = PyValue::tensor(storages.size() - 1, {2, 3});
    using P = PyValue;
    return P::dict({
        {P::str("state"),
         P::dict({{P::integer(0), P::dict({{P::str("step"), scalar("FloatStorage", 4, f)},
                                           {P::str("exp_avg"), exp_avg},
                                           {P::str("exp_avg_sq"), exp_avg}})},
                  {P::integer(1), P::dict({{P::str("step"), scalar("LongStorage", 8, l)}})}})},
        {P::str("param_groups"),
         P::list({P::dict({{P::str("lr"), P::real(1e-5)},
                           {P::str("betas"), P::tuple({P::real(0.9), P::real(0.999)})},
                           {P::str("eps"), P::real(1e-8)},
                           {P::str("weight_decay"), P::real(0.01)},
                           {P::str("amsgrad"), P::boolean(false)},
                           {P::str("foreach"), P::none()},
                           {P::str("params"), P::list({P::integer(0), P::integer(1)})}})})},
    });
}

}  // namespace

std::vector<TinySeaTensor> tiny_sea_state_dict(const TinySeaSpec &spec) {
    // The decoder image is K/4 wide (sea.md §2.5): below 4 there is no image (a zero-sized tensor, a division by
    // zero). Widths that are not multiples of 4 stay possible, for the converter's tests of its refusal.
    if (spec.compressed_width < 4) {
        throw_invalid_argument("SEA's compressed width K = " + std::to_string(spec.compressed_width) +
                               " is below 4 (the decoder image is K/4 wide, sea.md §2.5)");
    }
    const std::string prefix = student_prefix(spec);
    std::vector<TinySeaTensor> out;
    if (spec.with_opt) add_opt_tensors(out, spec, prefix, lm_head_prefix(prefix), spec.seed + 1000);
    for (uint32_t l = 0; l < spec.hp.n_layer; ++l) add_sea_layer(out, spec, prefix, l);
    return out;
}

void write_tiny_sea_checkpoint(const std::string &path, const TinySeaSpec &spec, const std::vector<TinySeaTensor> &student) {
    using P = PyValue;
    if (spec.layout == SeaCheckpointLayout::Safetensors) {
        std::vector<SafetensorsWriteSpec> specs;
        std::map<size_t, SafetensorsOtherDtype> int64s;
        for (size_t i = 0; i < student.size(); ++i) {
            specs.push_back({student[i].name, spec.dtype, student[i].shape});
            if (student[i].int64) int64s[i] = {"I64", 8};
        }
        write_safetensors(
            path, specs,
            [&](size_t i, const ByteSink &sink) {
                const Bytes b = encode_values(student[i], spec.dtype);
                sink(b.data(), b.size());
            },
            {}, int64s);
        return;
    }

    std::vector<TorchStorage> storages;
    std::vector<TinySeaTensor> all = student;
    if (spec.layout == SeaCheckpointLayout::DeepSpeed && spec.with_teacher) {
        add_opt_tensors(all, spec, "base_model.model.", "base_model.", spec.seed + 2000);  // the KD wrapper's teacher
    }
    const PyValue state_dict = torch_state_dict(all, spec.dtype, storages);
    PyValue root;
    switch (spec.layout) {
    case SeaCheckpointLayout::StateDict:
        root = state_dict;
        break;
    case SeaCheckpointLayout::Trainer: {
        std::vector<TinySeaTensor> teacher;
        if (spec.with_teacher) add_opt_tensors(teacher, spec, "model.", "", spec.seed + 2000);
        const PyValue base_model = torch_state_dict(teacher, spec.dtype, storages);
        std::vector<std::pair<P, P>> extra = {
            {P::str("performer_nb_factor"), P::real(8.0)},
            {P::str("k_flatten_dim"), P::str("causal_batch")},
            {P::str("attention_predictor_length"), P::integer(spec.compressed_width)},
            {P::str("attention_predictor_enc_per_layer"), P::boolean(spec.config_enc_per_layer)},
            {P::str("context_output_method"), P::str("mix")},
        };
        if (spec.config_k) extra.insert(extra.begin(), {P::str("k"), P::integer(spec.config_k)});
        // asdict(TrainerConfig): class references, a bound method (getattr(trainer, name)), a dict.
        const P trainer = P::object(P::global("src.trainer.perlin_trainer", "OptTrainer"),
                                    P::dict({{P::str("attention_method"), P::str("perlin")}}));
        const P config = P::dict({
            {P::str("experiment_name"), P::str("opt-tiny_wikitext2_kf1_lw0_perlin_k64_full_nbf8.0_com_mix")},
            {P::str("teacher_model_cls"), P::global("src.models.hf_opt.modeling_opt", "OPTForCausalLM")},
            {P::str("model_cls"), P::global("src.models.perlin_opt.perlin_opt", "OPTForCausalLM")},
            {P::str("load_ignore_keys"), P::list({P::str("perlin")})},
            {P::str("additional_config"), P::dict(std::move(extra))},
            {P::str("on_model_init"),
             P::reduce(P::global("builtins", "getattr"), P::tuple({trainer, P::str("on_model_init")}))},
        });
        root = P::dict({
            {P::str("step"), P::integer(10)},
            {P::str("_istep"), P::integer(80)},
            {P::str("epoch"), P::integer(0)},
            {P::str("model"), state_dict},
            {P::str("base_model"), base_model},
            {P::str("scaler"), P::dict({{P::str("scale"), P::real(65536.0)},
                                        {P::str("growth_factor"), P::real(2.0)},
                                        {P::str("_growth_tracker"), P::integer(0)}})},
            {P::str("optimizer"), optimizer_state(storages)},
            {P::str("config"), config},
        });
        break;
    }
    case SeaCheckpointLayout::DeepSpeed: {
        std::vector<std::pair<P, P>> shapes;
        for (const TinySeaTensor &t : student) {
            std::vector<P> dims;
            for (uint64_t x : t.shape) dims.push_back(P::integer((int64_t)x));
            shapes.push_back({P::str(t.name), P::reduce(P::global("torch", "Size"), P::tuple({P::tuple(dims)}))});
        }
        root = P::dict({
            {P::str("module"), state_dict},
            {P::str("buffer_names"), P::list({P::str("model.model.decoder.embed_positions.weight")})},
            {P::str("optimizer"), P::none()},
            {P::str("param_shapes"), P::list({P::ordered_dict(std::move(shapes))})},
            {P::str("frozen_param_shapes"), P::none()},
            {P::str("shared_params"), P::dict({})},
            {P::str("lr_scheduler"), P::none()},
            {P::str("sparse_tensor_module_names"), P::reduce(P::global("builtins", "set"), P::tuple({P::list({})}))},
            {P::str("skipped_steps"), P::integer(0)},
            {P::str("global_steps"), P::integer(10000)},
            {P::str("global_samples"), P::integer(320000)},
            {P::str("dp_world_size"), P::integer(1)},
            {P::str("mp_world_size"), P::integer(1)},
            {P::str("ds_config"), P::dict({{P::str("train_batch_size"), P::integer(32)},
                                           {P::str("fp16"), P::dict({{P::str("enabled"), P::boolean(true)}})}})},
            {P::str("ds_version"), P::str("0.10.3")},
            {P::str("loss_scaler"), P::object(P::global("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"),
                                              P::dict({{P::str("cur_scale"), P::real(65536.0)}}))},
        });
        break;
    }
    case SeaCheckpointLayout::Safetensors:
        break;
    }
    torch_save(path, root, storages);
}

}  // namespace seaopt::convert
