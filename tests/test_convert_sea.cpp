// seaopt-convert --sea: SEA checkpoints in every layout of the authors' trainer (sea.md §5) ->
// GGUF with the sea.* keys and the blk.N.sea.* tensors, checked value by value against the source
// (the fine-tuned OPT tensors replacing the base ones); bad checkpoints -> clear errors and no
// output; the loader's checks of the SEA part of a GGUF file.
#include <gtest/gtest.h>

#include "test_util.h"

#include <functional>
#include <map>
#include <set>

#include "model/gguf.h"
#include "model/opt_format.h"
#include "model/opt_model.h"
#include "seaopt.h"
#include "test_convert_util.h"
#include "weights-convert/checkpoint.h"
#include "weights-convert/convert.h"
#include "weights-convert/hf_config.h"
#include "weights-convert/sea_checkpoint.h"
#include "weights-convert/tiny_sea_checkpoint.h"
#include "weights-convert/torch_writer.h"
#include "weights-convert/unpickler.h"

using namespace convert_test;
using namespace seaopt::convert;
namespace gguf = seaopt::gguf;
namespace keys = seaopt::keys;

namespace {

const SeaCheckpointLayout kLayouts[] = {SeaCheckpointLayout::Safetensors, SeaCheckpointLayout::StateDict,
                                        SeaCheckpointLayout::Trainer, SeaCheckpointLayout::DeepSpeed};

const char *file_name(SeaCheckpointLayout l) {
    switch (l) {
    case SeaCheckpointLayout::Safetensors: return "sea.safetensors";
    case SeaCheckpointLayout::StateDict: return "sea_state_dict.pth";
    case SeaCheckpointLayout::Trainer: return "checkpoint.pth";
    case SeaCheckpointLayout::DeepSpeed: return "mp_rank_00_model_states.pt";
    }
    return "?";
}

std::vector<float> round_trip(const std::vector<float> &v, DType t) { return decode(encode(v, t).data(), v.size(), t); }

void expect_no_output(const std::string &out) {
    EXPECT_FALSE(fs::exists(out)) << out << " was left behind";
    EXPECT_FALSE(seaopt_test::temp_file_left(out)) << out << ".tmp* was left behind";
}

// A base HF checkpoint (TinyConfig: hidden 16, 2 heads of 8, 2 layers, 8 positions, tied) and
// SEA checkpoints made for it.
class SeaConvert : public ::testing::Test {
protected:
    TempDir tmp;
    TinyConfig c;
    std::string base_dir;
    std::vector<HfTensor> base;

    void SetUp() override {
        base = make_hf_tensors(c, false, 5);
        base_dir = tmp / "base";
        write_hf_checkpoint(base_dir, c.to_json(), base, DType::F32, Layout::Safetensors, true);
    }

    TinySeaSpec spec(SeaCheckpointLayout layout, DType dtype = DType::F16) const {
        TinySeaSpec s;
        s.hp = parse_hf_config(c.to_json().dump()).hp;
        s.tied = c.tie;
        s.compressed_width = 16;
        s.layout = layout;
        s.dtype = dtype;
        s.seed = 9;
        return s;
    }

    std::string write(const TinySeaSpec &s, const std::vector<TinySeaTensor> &student, const std::string &name = "") {
        const std::string path = tmp / (name.empty() ? file_name(s.layout) : name);
        write_tiny_sea_checkpoint(path, s, student);
        return path;
    }

    ConvertResult convert(const std::string &sea, const std::string &out, DType outtype = DType::F16, uint32_t k = 0) {
        ConvertOptions o;
        o.input_dir = base_dir;
        o.output_path = out;
        o.outtype = outtype;
        o.sea_checkpoint = sea;
        o.sea_k = k;
        return convert_checkpoint(o);
    }

    // Expects convert() to fail with every needle in the message, and no output file.
    void expect_convert_error(const std::string &sea, std::initializer_list<std::string> needles,
                              seaopt_status code = SEAOPT_ERR_MODEL_FORMAT, uint32_t k = 0) {
        const std::string out = tmp / "bad.gguf";
        expect_error([&] { convert(sea, out, DType::F16, k); }, needles, code);
        expect_no_output(out);
    }
};

// The values a GGUF SEA tensor must hold: the source rounded to its dtype; for the causal convs
// the live kernel rows 0..kh-1 of weight * weight_mask (sea.md §2.6), computed here on its own.
std::vector<float> expected_sea_values(const seaopt::OptTensorSpec &spec,
                                       const std::map<std::string, const TinySeaTensor *> &by_name, DType dtype) {
    const TinySeaTensor &w = *by_name.at(spec.hf_name);
    std::vector<float> v = round_trip(w.values, dtype);
    if (w.shape.size() != 4 || spec.gguf_name.find("pos_table") != std::string::npos) return v;
    const std::vector<float> mask = round_trip(by_name.at(spec.hf_name + "_mask")->values, dtype);
    const uint64_t R = w.shape[2], kw = w.shape[3], kh = (R + 1) / 2;
    std::vector<float> out;
    for (uint64_t k = 0; k < w.shape[0] * w.shape[1]; ++k) {
        for (uint64_t i = 0; i < kh * kw; ++i) out.push_back(v[k * R * kw + i] * mask[k * R * kw + i]);
    }
    return out;
}

// Checks the keys and every tensor of a converted SEA model against the student state_dict.
void check_sea_gguf(const std::string &path, const TinyConfig &c, const TinySeaSpec &s,
                    const std::vector<TinySeaTensor> &student, DType outtype, uint32_t want_k) {
    const Bytes bytes = read_bytes(path);
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    EXPECT_EQ(f.get_u32(keys::kSeaK), want_k);
    EXPECT_EQ(f.get_u32(keys::kSeaCompressedWidth), s.compressed_width);
    EXPECT_EQ(f.get_u32(keys::kSeaRandomFeatures), s.m());
    EXPECT_EQ(f.get_u32(keys::kSeaHidden), s.d_hidden());
    EXPECT_EQ(f.get_u32(keys::kSeaPositionTableLength), s.positions());
    EXPECT_EQ(f.get_u32(keys::kSeaCnnChannelsPerHead), 2u);
    EXPECT_EQ(f.get_u32(keys::kSeaWidthReduction), 4u);
    EXPECT_EQ(f.get_str(keys::kSeaGrouping), "causal-per-batch");
    EXPECT_EQ(s.m(), 2u);  // int(8 ln 8 / 8)

    std::map<std::string, const TinySeaTensor *> by_name;  // canonical student name -> tensor
    for (const TinySeaTensor &t : student) {
        const std::string n = sea_student_name(t.name);
        if (!n.empty()) by_name[n] = &t;
    }
    seaopt::OptHparams hp = parse_hf_config(c.to_json().dump()).hp;
    const std::vector<seaopt::OptTensorSpec> opt = seaopt::opt_tensor_specs(hp, !c.tie);
    hp.has_sea = true;
    hp.sea.compressed_width = s.compressed_width;
    hp.sea.random_features = s.m();
    hp.sea.hidden = s.d_hidden();
    hp.sea.position_table_length = s.positions();
    const std::vector<seaopt::OptTensorSpec> sea = seaopt::sea_tensor_specs(hp);
    ASSERT_EQ(sea.size(), 20u * c.layers);
    ASSERT_EQ(f.tensors.size(), opt.size() + sea.size());

    const gguf::TensorType out_type =
        outtype == DType::F32 ? gguf::TensorType::F32 : outtype == DType::F16 ? gguf::TensorType::F16 : gguf::TensorType::BF16;
    for (const seaopt::OptTensorSpec &e : opt) {  // the fine-tuned tensors, in the output type
        SCOPED_TRACE(e.gguf_name);
        const gguf::TensorInfo *t = f.find_tensor(e.gguf_name);
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(t->type, out_type);
        ASSERT_TRUE(by_name.count(e.hf_name));
        const Bytes want = encode(round_trip(by_name[e.hf_name]->values, s.dtype), outtype);
        ASSERT_EQ(t->n_bytes, want.size());
        EXPECT_EQ(std::memcmp(bytes.data() + f.data_offset + t->offset, want.data(), want.size()), 0);
    }
    for (const seaopt::OptTensorSpec &e : sea) {  // the estimator, F32
        SCOPED_TRACE(e.gguf_name);
        const gguf::TensorInfo *t = f.find_tensor(e.gguf_name);
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(t->type, gguf::TensorType::F32);
        ASSERT_EQ(t->n_dims, e.ne.size());
        for (size_t d = 0; d < e.ne.size(); ++d) EXPECT_EQ(t->ne[d], e.ne[d]);
        const std::vector<float> want = expected_sea_values(e, by_name, s.dtype);
        ASSERT_EQ(t->n_elements, want.size());
        const std::vector<float> got = decode(bytes.data() + f.data_offset + t->offset, want.size(), DType::F32);
        EXPECT_EQ(got, want);
    }
}

seaopt_model_params cpu_params() {
    seaopt_model_params p = seaopt_model_default_params();
    p.device = SEAOPT_DEVICE_CPU;
    return p;
}

// ---- every layout ---------------------------------------------------------------------------

TEST_F(SeaConvert, EveryLayoutAndDtypeConverts) {
    for (SeaCheckpointLayout layout : kLayouts) {
        for (DType dtype : {DType::F16, DType::F32}) {
            SCOPED_TRACE(std::string(sea_checkpoint_layout_name(layout)) + " " + dtype_name(dtype));
            const TinySeaSpec s = spec(layout, dtype);
            const std::vector<TinySeaTensor> student = tiny_sea_state_dict(s);
            const std::string sea = write(s, student);
            const std::string out = tmp / "out.gguf";
            const DType outtype = dtype == DType::F16 ? DType::F16 : DType::F32;
            const ConvertResult r = convert(sea, out, outtype);
            EXPECT_TRUE(r.has_sea);
            EXPECT_EQ(r.n_sea_tensors, 40u);
            EXPECT_EQ(r.n_opt_replaced, 36u);  // every base tensor (the tied lm_head is the embedding)
            EXPECT_EQ(r.n_sea_ignored, 2u * 22u);  // sea.md §5.1's unused entries
            EXPECT_EQ(r.n_teacher_ignored, layout == SeaCheckpointLayout::DeepSpeed ? 37u : 0u);
            EXPECT_EQ(r.sea_k_source, "the default of sea.md §6");
            EXPECT_TRUE(r.notes.empty()) << r.notes[0];
            EXPECT_NE(r.sea_engine_warning.find("head size of 64 (the estimator's shapes, sea.md §5.1); this model has 8"),
                      std::string::npos)
                << r.sea_engine_warning;
            EXPECT_NE(r.sea_format.find(layout == SeaCheckpointLayout::DeepSpeed ? "DeepSpeed"
                                        : layout == SeaCheckpointLayout::Trainer  ? "trainer"
                                        : layout == SeaCheckpointLayout::StateDict ? "torch state_dict"
                                                                                  : "safetensors"),
                      std::string::npos)
                << r.sea_format;
            check_sea_gguf(out, c, s, student, outtype, 64);
            EXPECT_FALSE(seaopt_test::temp_file_left(out));
        }
    }
}

TEST_F(SeaConvert, FineTunedOptTensorsReplaceTheBaseOnes) {
    const TinySeaSpec s = spec(SeaCheckpointLayout::DeepSpeed);
    const std::string out = tmp / "out.gguf";
    convert(write(s, tiny_sea_state_dict(s)), out, DType::F32);
    const Bytes bytes = read_bytes(out);
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    const gguf::TensorInfo *t = f.find_tensor("blk.1.attn_q.weight");
    ASSERT_NE(t, nullptr);
    const std::vector<float> got = decode(bytes.data() + f.data_offset + t->offset, t->n_elements, DType::F32);
    for (const HfTensor &b : base) {
        if (b.name == "decoder.layers.1.self_attn.q_proj.weight") {
            EXPECT_NE(got, b.values);
        }
    }
    // Without the SEA checkpoint the same tensor is the base one.
    ConvertOptions o;
    o.input_dir = base_dir;
    o.output_path = tmp / "plain.gguf";
    o.outtype = DType::F32;
    const ConvertResult r = convert_checkpoint(o);
    EXPECT_FALSE(r.has_sea);
    const Bytes plain = read_bytes(o.output_path);
    const gguf::File pf = gguf::parse(plain.data(), plain.size());
    EXPECT_EQ(pf.find(keys::kSeaK), nullptr);
    for (const gguf::TensorInfo &pt : pf.tensors) EXPECT_EQ(pt.name.find(".sea."), std::string::npos) << pt.name;
}

TEST_F(SeaConvert, CheckpointWithOnlySeaTensorsKeepsTheBaseWeights) {
    TinySeaSpec s = spec(SeaCheckpointLayout::Safetensors, DType::F32);
    s.with_opt = false;
    const std::string out = tmp / "out.gguf";
    const ConvertResult r = convert(write(s, tiny_sea_state_dict(s)), out, DType::F32);
    EXPECT_EQ(r.n_opt_replaced, 0u);
    const Bytes bytes = read_bytes(out);
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    const gguf::TensorInfo *t = f.find_tensor("blk.0.ffn_up.weight");
    ASSERT_NE(t, nullptr);
    for (const HfTensor &b : base) {
        if (b.name == "decoder.layers.0.fc1.weight") {
            EXPECT_EQ(decode(bytes.data() + f.data_offset + t->offset, t->n_elements, DType::F32), b.values);
        }
    }
}

TEST_F(SeaConvert, KeyPrefixVariants) {
    for (const char *prefix : {"", "model.", "model.model.", "model._orig_mod."}) {
        SCOPED_TRACE(std::string("prefix '") + prefix + "'");
        for (SeaCheckpointLayout layout : {SeaCheckpointLayout::Safetensors, SeaCheckpointLayout::StateDict}) {
            TinySeaSpec s = spec(layout);
            s.prefix = prefix;
            const std::vector<TinySeaTensor> student = tiny_sea_state_dict(s);
            const std::string out = tmp / "out.gguf";
            const ConvertResult r = convert(write(s, student), out);
            EXPECT_EQ(r.n_opt_replaced, 36u);
            check_sea_gguf(out, c, s, student, DType::F16, 64);
        }
    }
}

TEST_F(SeaConvert, BF16CheckpointAndBF16Output) {
    const TinySeaSpec s = spec(SeaCheckpointLayout::StateDict, DType::BF16);
    const std::vector<TinySeaTensor> student = tiny_sea_state_dict(s);
    const std::string out = tmp / "out.gguf";
    convert(write(s, student), out, DType::BF16);
    check_sea_gguf(out, c, s, student, DType::BF16, 64);
}

TEST_F(SeaConvert, UnusedTensorsAreIgnored) {
    TinySeaSpec with = spec(SeaCheckpointLayout::DeepSpeed), without = with;
    without.with_unused = false;
    without.with_teacher = false;
    convert(write(with, tiny_sea_state_dict(with), "with.pt"), tmp / "with.gguf");
    const ConvertResult r = convert(write(without, tiny_sea_state_dict(without), "without.pt"), tmp / "without.gguf");
    EXPECT_EQ(r.n_sea_ignored, 0u);
    EXPECT_EQ(r.n_teacher_ignored, 0u);
    EXPECT_EQ(read_bytes(tmp / "with.gguf"), read_bytes(tmp / "without.gguf"));
}

TEST_F(SeaConvert, KFromOptionConfigOrDefault) {
    TinySeaSpec s = spec(SeaCheckpointLayout::Trainer);
    s.config_k = 32;
    const std::vector<TinySeaTensor> student = tiny_sea_state_dict(s);
    const std::string sea = write(s, student);
    ConvertResult r = convert(sea, tmp / "a.gguf");
    EXPECT_EQ(r.sea.k, 32u);
    EXPECT_EQ(r.sea_k_source, "the trainer config");
    check_sea_gguf(tmp / "a.gguf", c, s, student, DType::F16, 32);

    r = convert(sea, tmp / "b.gguf", DType::F16, 16);
    EXPECT_EQ(r.sea.k, 16u);
    EXPECT_EQ(r.sea_k_source, "--sea-k");
    ASSERT_EQ(r.notes.size(), 1u);
    EXPECT_NE(r.notes[0].find("the trainer config says k = 32"), std::string::npos) << r.notes[0];
    check_sea_gguf(tmp / "b.gguf", c, s, student, DType::F16, 16);

    s.config_k = -3;
    expect_convert_error(write(s, tiny_sea_state_dict(s), "neg.pth"), {"trainer config has k = -3", "--sea-k"});
    s.config_k = 0;
    s.config_enc_per_layer = true;
    expect_convert_error(write(s, tiny_sea_state_dict(s), "epl.pth"), {"--enc-per-layer"}, SEAOPT_ERR_UNSUPPORTED);

    // The option needs --sea.
    ConvertOptions o;
    o.input_dir = base_dir;
    o.output_path = tmp / "c.gguf";
    o.sea_k = 8;
    expect_error([&] { convert_checkpoint(o); }, {"--sea-k needs --sea"}, SEAOPT_ERR_INVALID_ARGUMENT);
}

// plan_sea directly: what the trainer config and the shapes say, and the notes it gives.
TEST_F(SeaConvert, PlanNotes) {
    TinySeaSpec s = spec(SeaCheckpointLayout::Trainer);
    s.position_table_length = 4;  // fewer rows than the model's 8 positions
    const std::string path = write(s, tiny_sea_state_dict(s));
    SeaCheckpoint ckpt = open_sea_checkpoint(path, 1);
    EXPECT_EQ(ckpt.format, "trainer checkpoint (its 'model' state_dict)");
    EXPECT_FALSE(ckpt.config_k.has_value());  // s.config_k = 0: not written
    ASSERT_TRUE(ckpt.config_compressed_width.has_value());
    EXPECT_EQ(*ckpt.config_compressed_width, 16);
    ASSERT_TRUE(ckpt.config_enc_per_layer.has_value());
    EXPECT_FALSE(*ckpt.config_enc_per_layer);
    ckpt.config_compressed_width = 64;

    const HfOptConfig config = read_hf_config(base_dir + "/config.json");
    const Checkpoint base_ckpt = open_checkpoint(base_dir);
    TensorPlan base_plan = plan_tensors(base_ckpt.tensors, config);
    const SeaPlan plan = plan_sea(ckpt, config, 0, base_plan);
    EXPECT_EQ(plan.sea.compressed_width, 16u);  // the tensors win
    EXPECT_EQ(plan.sea.position_table_length, 4u);
    EXPECT_EQ(plan.n_opt_replaced, 36u);
    EXPECT_EQ(plan.n_tied_lm_head, 1u);
    EXPECT_EQ(plan.n_sea_source, 2u * (20u + 3u));  // 20 tensors and 3 masks per layer
    for (const PlannedTensor &p : base_plan.tensors) EXPECT_EQ(p.source->file, 1u) << p.expected.gguf_name;
    ASSERT_EQ(plan.notes.size(), 2u);
    EXPECT_NE(plan.notes[0].find("attention_predictor_length = 64 but the tensors have K = 16"), std::string::npos)
        << plan.notes[0];
    EXPECT_NE(plan.notes[1].find("4 rows, fewer than the model's 8 positions"), std::string::npos) << plan.notes[1];
}

// ---- refusals ----------------------------------------------------------------------------

TEST_F(SeaConvert, MismatchedSeaShapeNamesTheTensor) {
    const TinySeaSpec s = spec(SeaCheckpointLayout::DeepSpeed);
    std::vector<TinySeaTensor> student = tiny_sea_state_dict(s);
    const std::string conv = "model.model.decoder.layers.1.self_attn.perlin_self_attention.attention."
                             "attention_predictor_cnn.1.module.net.2.module.weight";
    for (TinySeaTensor &t : student) {
        if (t.name == conv) {
            t.shape = {4, 4, 3, 3};  // stored without the masked rows
            t.values.resize(4 * 4 * 9);
        }
    }
    expect_convert_error(write(s, student), {"'" + conv + "' has shape [4, 4, 3, 3], expected [4, 4, 5, 3]",
                                             "blk.1.sea.conv2.weight"});

    // A layer-0 tensor the hyperparameters are read from: the rank is checked first.
    student = tiny_sea_state_dict(s);
    for (TinySeaTensor &t : student) {
        if (t.name.find("layers.0.") != std::string::npos && t.name.find("v_eye_learned_causal") != std::string::npos) {
            t.shape = {1, 8, 8};
        }
    }
    expect_convert_error(write(s, student), {"v_eye_learned_causal' has shape [1, 8, 8], expected [1, 1, P, 8]"});

    // Layers disagreeing with layer 0 on K.
    student = tiny_sea_state_dict(s);
    for (TinySeaTensor &t : student) {
        if (t.name.find("layers.1.") != std::string::npos && t.name.find("cnn.2.module.bias") != std::string::npos) {
            t.shape = {32};
            t.values.resize(32);
        }
    }
    expect_convert_error(write(s, student), {"cnn.2.module.bias' has shape [32], expected [16]", "K = 16"});
}

// --sea-k is checked against the checkpoint's K: k·K <= 2^24 (the engine's fp32 budget), named at conversion.
TEST_F(SeaConvert, KTimesCompressedWidthMustBeExactInFp32) {
    TinySeaSpec s = spec(SeaCheckpointLayout::Safetensors);
    s.compressed_width = 64;
    const std::string sea = write(s, tiny_sea_state_dict(s));
    expect_convert_error(sea, {"sea.k = 262145 is out of range", "at most 262144"}, SEAOPT_ERR_MODEL_FORMAT,
                         (1u << 18) + 1);
    EXPECT_EQ(convert(sea, tmp / "ok.gguf", DType::F16, 1u << 18).sea.k, 1u << 18);
}

TEST_F(SeaConvert, CompressedWidthMustBeAMultipleOf4) {
    TinySeaSpec s = spec(SeaCheckpointLayout::Safetensors);
    s.compressed_width = 18;
    expect_convert_error(write(s, tiny_sea_state_dict(s)), {"sea.compressed_width = 18", "multiple of 4"});
}

TEST_F(SeaConvert, MissingSeaTensor) {
    const TinySeaSpec s = spec(SeaCheckpointLayout::StateDict);
    std::vector<TinySeaTensor> student = tiny_sea_state_dict(s);
    std::vector<TinySeaTensor> kept;
    for (TinySeaTensor &t : student) {
        if (t.name.find("layers.1.") != std::string::npos && t.name.find("dec_scaler.0.weight") != std::string::npos) continue;
        kept.push_back(t);
    }
    expect_convert_error(write(s, kept), {"1 SEA tensor(s) missing",
                                          "'decoder.layers.1.self_attn.perlin_self_attention.attention."
                                          "attention_predictor_dec_scaler.0.weight' (blk.1.sea.scaler.weight)"});
}

TEST_F(SeaConvert, CheckpointWithoutSeaTensors) {
    TinySeaSpec s = spec(SeaCheckpointLayout::Safetensors);
    std::vector<TinySeaTensor> opt_only;
    for (const TinySeaTensor &t : tiny_sea_state_dict(s)) {
        if (t.name.find("perlin") == std::string::npos) opt_only.push_back(t);
    }
    expect_convert_error(write(s, opt_only), {"has no SEA estimator tensors", "sea.md §5.1"});
    // The base HF checkpoint itself is no SEA checkpoint either.
    expect_convert_error(base_dir + "/model.safetensors", {"has no SEA estimator tensors"});
}

TEST_F(SeaConvert, OptTensorsMustMatchTheBaseModel) {
    TinySeaSpec s = spec(SeaCheckpointLayout::Trainer);
    s.hp.n_ff = 48;  // trained from another model
    expect_convert_error(write(s, tiny_sea_state_dict(s)),
                         {"fine-tuned OPT tensor(s) whose shape differs from the base model's",
                          "'model.decoder.layers.0.fc1.weight' has shape [48, 16], the base model's "
                          "'decoder.layers.0.fc1.weight' has [32, 16]"});
    s = spec(SeaCheckpointLayout::Trainer);
    s.hp.n_layer = 3;  // more layers than the base
    expect_convert_error(write(s, tiny_sea_state_dict(s)), {"layers the base model (2 layers) does not have",
                                                             "OPT tensor(s) the base model does not have"});
}

TEST_F(SeaConvert, UnknownAndDuplicatedKeysAreRefused) {
    const TinySeaSpec s = spec(SeaCheckpointLayout::StateDict);
    std::vector<TinySeaTensor> student = tiny_sea_state_dict(s);
    TinySeaTensor extra = student.back();
    extra.shares_storage_with = -1;
    // PERLIN_HOTFIX_OPT_DEEPER adds a third conv (sea.md §5.1): its output would differ.
    extra.name = "model.decoder.layers.0.self_attn.perlin_self_attention.attention.attention_predictor_cnn.keepres.conv3.weight";
    student.push_back(extra);
    expect_convert_error(write(s, student), {"unknown tensor(s)", "keepres.conv3.weight"});

    student = tiny_sea_state_dict(s);
    extra = student.back();
    extra.shares_storage_with = -1;
    extra.name = "optimizer_junk";
    student.push_back(extra);
    expect_convert_error(write(s, student), {"unknown tensor(s)", "'optimizer_junk'"});

    student = tiny_sea_state_dict(s);
    extra = student.back();
    extra.shares_storage_with = -1;
    extra.name = "model.model." + extra.name.substr(6);  // the same tensor under a second prefix
    student.push_back(extra);
    expect_convert_error(write(s, student), {"the same student tensor under two names"});
}

TEST_F(SeaConvert, ConvWeightMask) {
    const TinySeaSpec s = spec(SeaCheckpointLayout::Safetensors, DType::F32);
    // A mask that lets a future row through: refused (sea.md §2.6).
    std::vector<TinySeaTensor> student = tiny_sea_state_dict(s);
    for (TinySeaTensor &t : student) {
        if (t.name.find("layers.0.") != std::string::npos && t.name.find("net.0.module.weight_mask") != std::string::npos) {
            t.values[3 * 3 + 1] = 1.0f;  // kernel 0, row 3, column 1
        }
    }
    expect_convert_error(write(s, student), {"net.0.module.weight' times its weight_mask is non-zero in kernel row 3",
                                             "sea.md §2.6"});

    // No masks at all: the module's own mask is applied, with a note.
    student = tiny_sea_state_dict(s);
    std::vector<TinySeaTensor> no_masks;
    for (const TinySeaTensor &t : student) {
        if (t.name.find("weight_mask") == std::string::npos) no_masks.push_back(t);
    }
    const ConvertResult r = convert(write(s, no_masks), tmp / "out.gguf", DType::F32);
    ASSERT_EQ(r.notes.size(), 1u);
    EXPECT_NE(r.notes[0].find("6 causal conv weight(s) came without a weight_mask"), std::string::npos) << r.notes[0];
    check_sea_gguf(tmp / "out.gguf", c, s, student, DType::F32, 64);  // same values as with the masks
}

TEST_F(SeaConvert, UnconvertibleTypeOfAUsedTensor) {
    const TinySeaSpec s = spec(SeaCheckpointLayout::StateDict);
    std::vector<TinySeaTensor> student = tiny_sea_state_dict(s);
    for (TinySeaTensor &t : student) {
        if (t.name.find("layers.0.") != std::string::npos && t.name.find("dec_scaler.0.bias") != std::string::npos) {
            t.int64 = true;
        }
    }
    expect_convert_error(write(s, student), {"dec_scaler.0.bias' (storage torch.LongStorage)", "cannot read"});
}

TEST_F(SeaConvert, NotACheckpoint) {
    write_text(tmp / "junk.pth", "this is not a checkpoint at all");
    expect_convert_error(tmp / "junk.pth", {"junk.pth"});
    expect_convert_error(tmp.path(), {"is a directory"}, SEAOPT_ERR_INVALID_ARGUMENT);
    expect_convert_error(tmp / "missing.pth", {"missing.pth"}, SEAOPT_ERR_IO);
    // A torch file whose dict is none of the known containers.
    std::vector<TorchStorage> st;
    torch_save(tmp / "other.pth", PyValue::dict({{PyValue::str("weights"), PyValue::list({})}}), st);
    expect_convert_error(tmp / "other.pth", {"keys 'weights'", "trainer checkpoint (with 'model')"});
    // Malicious pickles stay refused or inert: nothing in Checkpoint mode resolves a global.
    const Bytes evil = read_bytes(std::string(SEAOPT_SOURCE_DIR) + "/tests/convert_data/evil_posix_system.pkl");
    const std::shared_ptr<const PickleValue> v = unpickle(evil.data(), evil.size(), "evil.pkl", PickleMode::Checkpoint);
    ASSERT_EQ(v->kind, PickleValue::Kind::Dict);  // {'w': posix.system('echo pwned')}
    const PickleValue *w = v->get("w");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->kind, PickleValue::Kind::Opaque);
    EXPECT_EQ(w->s, "an object made by posix.system");
    expect_error([&] { state_dict_tensors(*v, "evil.pkl"); }, {"entry 'w' is a object, not a tensor"});
    expect_error([&] { unpickle_state_dict(evil.data(), evil.size(), "evil.pkl"); }, {"global 'posix.system'"});
}

// The unpickler's Checkpoint mode: what a training checkpoint holds besides tensors is read as inert
// placeholders; the same bytes stay refused in StateDict mode (pytorch_model.bin).
TEST(SeaPickle, CheckpointModeReadsObjectsInertly) {
    auto bytes = [](const std::string &s) { return Bytes(s.begin(), s.end()); };
    auto read = [](const Bytes &b, PickleMode mode) { return unpickle(b.data(), b.size(), "checkpoint.pth", mode); };
    struct Case {
        std::string pickle, opcode, state_dict_error;
    };
    const std::string P4 = std::string("\x80\x04", 2);
    const Case cases[] = {
        {P4 + "\x8f(K\x01K\x02\x90.", "EMPTY_SET", ""},
        {P4 + "(K\x01\x91.", "FROZENSET", ""},
        {P4 + "C\x03" "abc.", "SHORT_BINBYTES", ""},
        {P4 + std::string("B\x03\x00\x00\x00" "abc.", 9), "BINBYTES", ""},
        {P4 + std::string("\x8b\x02\x00\x00\x00\x01\x02.", 8), "LONG4", ""},
        {P4 + "(K\x05" "2t.", "DUP", ""},
        {P4 + "cdeepspeed.x\nScaler\n)}\x92.", "NEWOBJ_EX", "global 'deepspeed.x.Scaler', which is not allowed"},
        {P4 + "cdeepspeed.x\nScaler\n)\x81}b.", "NEWOBJ", "global 'deepspeed.x.Scaler', which is not allowed"},
    };
    for (const Case &c : cases) {
        SCOPED_TRACE(c.opcode);
        const std::shared_ptr<const PickleValue> v = read(bytes(c.pickle), PickleMode::Checkpoint);
        EXPECT_TRUE(v->kind == PickleValue::Kind::Opaque || v->kind == PickleValue::Kind::Tuple) << pickle_kind_name(v->kind);
        expect_error([&] { read(bytes(c.pickle), PickleMode::StateDict); },
                     {c.state_dict_error.empty() ? "pickle opcode " + c.opcode + " (" : c.state_dict_error});
    }
    EXPECT_EQ(read(bytes(cases[0].pickle), PickleMode::Checkpoint)->items.size(), 2u);  // the set's items
    EXPECT_EQ(read(bytes(cases[6].pickle), PickleMode::Checkpoint)->s, "an object of deepspeed.x.Scaler");
    // Still bounded and checked.
    expect_error([&] { read(bytes(P4 + "C\x05" "ab"), PickleMode::Checkpoint); }, {"truncated pickle"});
    expect_error([&] { read(bytes(P4 + "](K\x01\x90."), PickleMode::Checkpoint); }, {"ADDITEMS on a list"});
    expect_error([&] { read(bytes(P4 + "K\x01\x81."), PickleMode::Checkpoint); }, {"stack underflow"});

    // Tensors seaopt cannot convert are kept, marked, in Checkpoint mode only.
    const Bytes sd = make_state_dict_pickle({{"long", "LongStorage", "0", 6, 0, {6}, {1}},
                                             {"transposed", "HalfStorage", "1", 6, 0, {2, 3}, {1, 2}},
                                             {"expanded", "FloatStorage", "2", 1, 0, {4}, {0}},
                                             {"ok", "HalfStorage", "3", 4, 0, {4}, {1}}});
    const std::vector<PickledTensor> t = state_dict_tensors(*read(sd, PickleMode::Checkpoint), "checkpoint.pth");
    ASSERT_EQ(t.size(), 4u);
    EXPECT_EQ(t[0].unconvertible, "storage torch.LongStorage");
    EXPECT_EQ(t[1].unconvertible, "not contiguous");
    EXPECT_EQ(t[2].unconvertible, "not contiguous");
    EXPECT_EQ(t[3].unconvertible, "");
    expect_error([&] { read(sd, PickleMode::StateDict); }, {"torch.LongStorage"}, SEAOPT_ERR_UNSUPPORTED);
    // A strided view still has to fit its storage.
    expect_error([&] { read(make_state_dict_pickle({{"w", "HalfStorage", "0", 5, 0, {2, 3}, {1, 2}}}), PickleMode::Checkpoint); },
                 {"[0 + 6] run past the end of storage '0' (5 elements)"});
}

// Random corruption of SEA checkpoints: a clean result or a seaopt::Error, never a crash.
TEST_F(SeaConvert, MutatedSeaCheckpointsNeverCrash) {
    for (SeaCheckpointLayout layout : {SeaCheckpointLayout::Trainer, SeaCheckpointLayout::DeepSpeed,
                                       SeaCheckpointLayout::Safetensors}) {
        TinySeaSpec s = spec(layout);
        s.hp.n_layer = 1;
        s.with_unused = false;
        const Bytes good = read_bytes(write(s, tiny_sea_state_dict(s)));
        std::mt19937 rng(7);
        for (int iter = 0; iter < 1500; ++iter) {
            Bytes b = good;
            // Mostly the header / pickle region, where the structure is.
            const size_t span = std::min<size_t>(b.size(), 4096);
            for (int k = 0; k < 1 + (int)(rng() % 3); ++k) b[(iter % 2 ? rng() % span : rng() % b.size())] = (uint8_t)rng();
            try {
                MemorySource src(b.data(), b.size(), "mutated");
                for (const SourceTensor &t : read_sea_checkpoint(src, 0).tensors) {
                    if (t.unconvertible.empty()) {
                        ASSERT_LE(t.offset + t.n_bytes, b.size());
                    }
                }
            } catch (const seaopt::Error &) {
            }
        }
    }
}

// ---- the loader --------------------------------------------------------------------------

class SeaLoad : public SeaConvert {
protected:
    std::string model;
    TinySeaSpec s;
    std::vector<TinySeaTensor> student;

    void SetUp() override {
        SeaConvert::SetUp();
        s = spec(SeaCheckpointLayout::DeepSpeed, DType::F32);
        student = tiny_sea_state_dict(s);
        model = tmp / "sea.gguf";
        convert(write(s, student), model, DType::F32);
    }

    // The SEA model rewritten: `edit_kv` changes metadata, `keep_tensor` drops tensors.
    std::string rewrite(const std::string &name, const std::function<void(gguf::Writer &)> &edit_kv,
                        const std::function<bool(const std::string &)> &keep_tensor = nullptr,
                        const std::function<bool(const std::string &)> &keep_key = nullptr) {
        gguf::MappedFile mf(model);
        const gguf::File f = gguf::parse(mf.data(), mf.size());
        gguf::Writer w;
        for (const auto &[k, v] : f.kv) {
            if (!keep_key || keep_key(k)) w.set(k, v);
        }
        edit_kv(w);
        std::vector<const gguf::TensorInfo *> src;
        for (const gguf::TensorInfo &t : f.tensors) {
            if (keep_tensor && !keep_tensor(t.name)) continue;
            w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims));
            src.push_back(&t);
        }
        const std::string out = tmp / (name + ".gguf");
        w.write(out, [&](size_t i, const gguf::Writer::Sink &sink) { sink(mf.data() + f.data_offset + src[i]->offset, src[i]->n_bytes); });
        return out;
    }

    void expect_load_error(const std::string &path, seaopt_status code, std::initializer_list<std::string> needles) {
        const seaopt_model_params p = cpu_params();
        seaopt_model *m = reinterpret_cast<seaopt_model *>(0x1);
        EXPECT_EQ(seaopt_model_load(path.c_str(), &p, &m), code) << seaopt_last_error();
        EXPECT_EQ(m, nullptr);
        const std::string msg = seaopt_last_error();
        for (const std::string &n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message: " << msg << "\nmissing: " << n;
    }
};

TEST_F(SeaLoad, LoadsTheEstimatorIntoTheModel) {
    seaopt_model_params p = cpu_params();
    p.check_tensors = true;
    seaopt_model *m = nullptr;
    ASSERT_EQ(seaopt_model_load(model.c_str(), &p, &m), SEAOPT_OK) << seaopt_last_error();
    EXPECT_TRUE(seaopt_model_has_sea(m));
    seaopt_model_free(m);

    const std::unique_ptr<seaopt::OptModel> om = seaopt::load_opt_model(model, cpu_params());
    ASSERT_TRUE(om->hp.has_sea);
    EXPECT_EQ(om->hp.sea.k, 64u);
    EXPECT_EQ(om->hp.sea.compressed_width, 16u);
    EXPECT_EQ(om->hp.sea.random_features, 2u);
    EXPECT_EQ(om->hp.sea.hidden, 16u);
    EXPECT_EQ(om->hp.sea.position_table_length, 8u);
    ASSERT_EQ(om->sea.size(), 2u);
    std::map<std::string, const TinySeaTensor *> by_name;
    for (const TinySeaTensor &t : student) by_name[sea_student_name(t.name)] = &t;
    const std::string a = "decoder.layers.1.self_attn.perlin_self_attention.attention.";
    seaopt::OptTensorSpec conv{"blk.1.sea.conv1.weight", a + "attention_predictor_cnn.1.module.net.0.module.weight", {3, 3, 4, 4}};
    EXPECT_EQ(om->sea[1].conv1_w, expected_sea_values(conv, by_name, DType::F32));
    EXPECT_EQ(om->sea[1].conv1_w.size(), 4u * 4 * 3 * 3);
    EXPECT_EQ(om->sea[1].pos_table, by_name[a + "v_eye_learned_causal"]->values);
    EXPECT_EQ(om->sea[0].scaler_w.size(), 2u * 16);
    EXPECT_EQ(om->sea[0].conv4_w.size(), 2u * 4);

    // vocab_only loads no weights, SEA included; a model without SEA has none.
    seaopt_model_params vp = cpu_params();
    vp.vocab_only = true;
    EXPECT_TRUE(seaopt::load_opt_model(model, vp)->sea.empty());
    ConvertOptions o;
    o.input_dir = base_dir;
    o.output_path = tmp / "plain.gguf";
    convert_checkpoint(o);
    ASSERT_EQ(seaopt_model_load(o.output_path.c_str(), &p, &m), SEAOPT_OK) << seaopt_last_error();
    EXPECT_FALSE(seaopt_model_has_sea(m));
    seaopt_model_free(m);
}

TEST_F(SeaLoad, PartialSeaTensorsAreAMalformedFile) {
    expect_load_error(rewrite("drop-one", [](gguf::Writer &) {}, [](const std::string &n) { return n != "blk.1.sea.conv2.bias"; }),
                      SEAOPT_ERR_MODEL_FORMAT, {"tensor 'blk.1.sea.conv2.bias' is missing"});
    expect_load_error(rewrite("no-tensors", [](gguf::Writer &) {},
                              [](const std::string &n) { return n.find(".sea.") == std::string::npos; }),
                      SEAOPT_ERR_MODEL_FORMAT, {"tensor 'blk.0.sea.pos_table' is missing"});
    expect_load_error(rewrite("no-keys", [](gguf::Writer &) {}, nullptr,
                              [](const std::string &k) { return k.rfind("sea.", 0) != 0; }),
                      SEAOPT_ERR_MODEL_FORMAT, {"SEA tensor 'blk.0.sea.pos_table' is present but the file has no sea.* keys"});
    expect_load_error(rewrite("one-key-missing", [](gguf::Writer &) {}, nullptr,
                              [](const std::string &k) { return k != keys::kSeaHidden; }),
                      SEAOPT_ERR_MODEL_FORMAT, {"sea.hidden"});
}

TEST_F(SeaLoad, SeaKeysAreValidated) {
    using gguf::Value;
    expect_load_error(rewrite("k0", [](gguf::Writer &w) { w.set(keys::kSeaK, Value::make_u32(0)); }),
                      SEAOPT_ERR_MODEL_FORMAT, {"key sea.k = 0 is out of range [1, 1048576]"});
    expect_load_error(rewrite("kbig", [](gguf::Writer &w) { w.set(keys::kSeaK, Value::make_u32(seaopt::kSeaMaxK + 1)); }),
                      SEAOPT_ERR_MODEL_FORMAT, {"key sea.k = 1048577 is out of range"});
    // Each in range on its own, but k·K > 2^24 (the engine's budget is computed in fp32): refused at load, before
    // the tensors (whose K is 16) are looked at.
    expect_load_error(rewrite("kK",
                              [](gguf::Writer &w) {
                                  w.set(keys::kSeaK, Value::make_u32(1u << 20));
                                  w.set(keys::kSeaCompressedWidth, Value::make_u32(32));
                              }),
                      SEAOPT_ERR_MODEL_FORMAT,
                      {"key sea.k = 1048576 is out of range: with sea.compressed_width = 32 it can be at most 524288"});
    expect_load_error(rewrite("ktype", [](gguf::Writer &w) { w.set(keys::kSeaK, Value::make_str("64")); }),
                      SEAOPT_ERR_MODEL_FORMAT, {"sea.k"});
    expect_load_error(rewrite("width", [](gguf::Writer &w) { w.set(keys::kSeaCompressedWidth, Value::make_u32(18)); }),
                      SEAOPT_ERR_MODEL_FORMAT, {"sea.compressed_width = 18 is not a multiple of 4"});
    // Consistent values, but not those of the tensors.
    expect_load_error(rewrite("width32", [](gguf::Writer &w) { w.set(keys::kSeaCompressedWidth, Value::make_u32(32)); }),
                      SEAOPT_ERR_MODEL_FORMAT, {"'blk.0.sea.dec_row.weight' has shape {16, 8}, expected {16, 16}"});
    expect_load_error(rewrite("m0", [](gguf::Writer &w) { w.set(keys::kSeaRandomFeatures, Value::make_u32(0)); }),
                      SEAOPT_ERR_MODEL_FORMAT, {"sea.random_features = 0"});
    expect_load_error(rewrite("ch", [](gguf::Writer &w) { w.set(keys::kSeaCnnChannelsPerHead, Value::make_u32(3)); }),
                      SEAOPT_ERR_UNSUPPORTED, {"sea.cnn_channels_per_head = 3"});
    expect_load_error(rewrite("cs", [](gguf::Writer &w) { w.set(keys::kSeaWidthReduction, Value::make_u32(2)); }),
                      SEAOPT_ERR_UNSUPPORTED, {"sea.width_reduction = 2"});
    expect_load_error(rewrite("grouping", [](gguf::Writer &w) { w.set(keys::kSeaGrouping, Value::make_str("per-head")); }),
                      SEAOPT_ERR_UNSUPPORTED, {"sea.grouping = 'per-head'"});
}

// -o naming the SEA checkpoint would rename the GGUF onto it.
TEST_F(SeaConvert, OutputOverTheSeaCheckpointIsRefused) {
    const std::string sea = write(spec(SeaCheckpointLayout::DeepSpeed), tiny_sea_state_dict(spec(SeaCheckpointLayout::DeepSpeed)));
    const Bytes before = read_bytes(sea);
    expect_error([&] { convert(sea, sea); }, {"the output " + sea + " is the input file", "write to another path"},
                 SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(read_bytes(sea) == before) << "the SEA checkpoint was changed";
    EXPECT_FALSE(seaopt_test::temp_file_left(sea));
}

// ---- the binaries ------------------------------------------------------------------------

TEST_F(SeaConvert, CommandLine) {
    const std::string dir = tmp / "tiny", sea = tmp / "mp_rank_00_model_states.pt", out = tmp / "cli.gguf";
    RunResult r = run_process({binary("seaopt-make-tiny-checkpoint"), "--out", dir, "--tokenizer-dir",
                               std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer", "--layers", "1", "--sea", sea,
                               "--sea-layout", "deepspeed", "--sea-width", "32"},
                              tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = run_process({binary("seaopt-convert"), dir, "-o", out, "--sea", sea, "--sea-k", "48", "--no-progress"}, tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("SEA from " + sea + " (DeepSpeed model states"), std::string::npos) << r.out;
    // hidden 64, 4 heads of 16: m = int(16 ln 16 / 8) = 5, d' = 32.
    EXPECT_NE(r.out.find("20 estimator tensors (f32), k 48 (--sea-k), K 32, m 5, d' 32, 2048 positions"), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("20 OPT tensors replaced"), std::string::npos) << r.out;
    // Heads of 16: the file is written, and the converter says the engine will not run its SEA.
    EXPECT_NE(r.err.find("seaopt-convert: warning: seaopt's engine cannot run SEA attention on this model (SEA "
                         "attention needs a head size of 64"),
              std::string::npos)
        << r.err;
    seaopt_model *m = nullptr;
    const seaopt_model_params p = cpu_params();
    ASSERT_EQ(seaopt_model_load(out.c_str(), &p, &m), SEAOPT_OK) << seaopt_last_error();
    EXPECT_TRUE(seaopt_model_has_sea(m));
    seaopt_model_free(m);

    // --sea-k without --sea, and a bad SEA checkpoint: errors, no output.
    const std::string out2 = tmp / "cli2.gguf";
    r = run_process({binary("seaopt-convert"), dir, "-o", out2, "--sea-k", "48"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("seaopt-convert: error: --sea-k requires --sea"), std::string::npos) << r.err;
    write_text(tmp / "junk.pt", "PK junk");
    r = run_process({binary("seaopt-convert"), dir, "-o", out2, "--sea", tmp / "junk.pt", "--no-progress"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("seaopt-convert: error: junk.pt"), std::string::npos) << r.err;
    expect_no_output(out2);
}

}  // namespace

// The torch.save writer of the test checkpoints (seaopt-make-tiny-checkpoint --sea) writes ZIP64 records where a
// value passes its 32-bit field, as torch.save does for archives over 4 GiB (a DeepSpeed checkpoint of the OPT-1.3B
// shape with its teacher is ~5.3 GB: without them its offsets wrapped and seaopt-convert found a corrupt archive).
// With a small threshold the same records are written for a few bytes, and the reader must see the same tensors.
TEST(SeaTorchWriter, WritesZip64RecordsPastThe32BitFields) {
    std::vector<TorchStorage> st(3);
    for (size_t i = 0; i < st.size(); ++i) {
        st[i].storage_class = "FloatStorage";
        st[i].element_size = 4;
        st[i].bytes.resize(4 * (5 + 3 * i));
        for (size_t b = 0; b < st[i].bytes.size(); ++b) st[i].bytes[b] = (uint8_t)(7 * b + 31 * i + 1);
    }
    const PyValue root = PyValue::ordered_dict({{PyValue::str("a.weight"), PyValue::tensor(0, {5})},
                                                {PyValue::str("b.weight"), PyValue::tensor(1, {2, 4})},
                                                {PyValue::str("c.bias"), PyValue::tensor(2, {11})}});
    auto has_signature = [](const Bytes &b, uint32_t sig) {
        for (size_t i = 0; i + 4 <= b.size(); ++i) {
            if ((uint32_t)b[i] + ((uint32_t)b[i + 1] << 8) + ((uint32_t)b[i + 2] << 16) + ((uint32_t)b[i + 3] << 24) ==
                sig) {
                return true;
            }
        }
        return false;
    };
    auto tensors = [](const Bytes &b) {
        MemorySource src(b.data(), b.size(), "archive.pth");
        std::map<std::string, Bytes> out;
        for (const SourceTensor &t : list_torch_zip_file(src, 0)) {
            out[t.name] = Bytes(b.begin() + (std::ptrdiff_t)t.offset, b.begin() + (std::ptrdiff_t)(t.offset + t.n_bytes));
        }
        return out;
    };
    const Bytes plain = torch_save_bytes(root, st, "archive");
    EXPECT_FALSE(has_signature(plain, 0x06064b50u));
    const std::map<std::string, Bytes> want = tensors(plain);
    ASSERT_EQ(want.size(), 3u);
    EXPECT_EQ(want.at("b.weight"), st[1].bytes);
    for (const uint64_t from : {uint64_t(0), uint64_t(1), uint64_t(200)}) {
        const Bytes z = torch_save_bytes(root, st, "archive", from);
        EXPECT_TRUE(has_signature(z, 0x06064b50u)) << "ZIP64 end record, threshold " << from;
        EXPECT_TRUE(has_signature(z, 0x07064b50u)) << "ZIP64 locator, threshold " << from;
        EXPECT_EQ(tensors(z), want) << "threshold " << from;
    }
}
