// seaopt-convert end to end: HF-style checkpoint directories in every layout and naming variant
// -> GGUF, checked key by key and byte by byte against the source; bad checkpoints -> clear errors
// and no output file.
#include <gtest/gtest.h>

#include "test_util.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <set>
#include <sstream>

#include "model/gguf.h"
#include "model/opt_format.h"
#include "model/opt_model.h"
#include "model/q8_0.h"
#include "seaopt.h"
#include "test_convert_util.h"
#include "weights-convert/checkpoint.h"
#include "weights-convert/convert.h"
#include "weights-convert/hf_config.h"

using namespace convert_test;
using namespace seaopt::convert;
namespace gguf = seaopt::gguf;
namespace keys = seaopt::keys;

namespace {

std::string convert_dir(const std::string &dir, const std::string &out, DType outtype, const std::string &name = "") {
    ConvertOptions o;
    o.input_dir = dir;
    o.output_path = out;
    o.outtype = outtype;
    o.name = name;
    convert_checkpoint(o);
    return out;
}

// The bits a source value becomes: stored in `src` type, then converted to `out` type.
Bytes expected_bytes(const std::vector<float> &values, DType src, DType out) {
    const std::vector<float> stored = decode(encode(values, src).data(), values.size(), src);
    return encode(stored, out);  // encode uses f32_to_f16 / f32_to_bf16: the reference rounding
}

struct Checked {
    size_t n_tensors = 0;
};

// Checks every key and every tensor of a converted file against its source.
void check_gguf(const std::string &path, const TinyConfig &c, const std::vector<HfTensor> &source, DType src_type,
                DType outtype, const std::string &name) {
    const Bytes bytes = read_bytes(path);
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());

    // ---- metadata: exactly the keys of opt_format.h
    const std::set<std::string> want_keys = {
        keys::kArchitecture, keys::kName, keys::kFileType, keys::kAlignment, keys::kVocabSize, keys::kContextLength,
        keys::kEmbeddingLength, keys::kBlockCount, keys::kFeedForwardLength, keys::kHeadCount, keys::kLayerNormEps,
        keys::kDoLayerNormBefore, keys::kWordEmbedProjDim, keys::kPositionOffset, keys::kTokModel, keys::kTokTokens,
        keys::kTokTokenType, keys::kTokMerges, keys::kTokBos, keys::kTokEos, keys::kTokPad, keys::kTokUnk,
        keys::kTokAddBos};
    std::set<std::string> got_keys;
    for (const auto &kv : f.kv) got_keys.insert(kv.first);
    EXPECT_EQ(got_keys, want_keys);
    EXPECT_EQ(f.get_str(keys::kArchitecture), "opt");
    EXPECT_EQ(f.get_str(keys::kName), name);
    EXPECT_EQ(f.get_u32(keys::kFileType), outtype == DType::F32 ? 0u : outtype == DType::F16 ? 1u : 32u);
    EXPECT_EQ(f.get_u32(keys::kAlignment), 32u);
    EXPECT_EQ(f.alignment, 32u);
    EXPECT_EQ(f.get_u32(keys::kVocabSize), c.vocab);
    EXPECT_EQ(f.get_u32(keys::kContextLength), c.max_pos);
    EXPECT_EQ(f.get_u32(keys::kEmbeddingLength), c.hidden);
    EXPECT_EQ(f.get_u32(keys::kBlockCount), c.layers);
    EXPECT_EQ(f.get_u32(keys::kFeedForwardLength), c.ffn);
    EXPECT_EQ(f.get_u32(keys::kHeadCount), c.heads);
    EXPECT_FLOAT_EQ(f.get_f32(keys::kLayerNormEps), 1e-5f);
    EXPECT_EQ(f.get_bool(keys::kDoLayerNormBefore), c.pre_ln);
    EXPECT_EQ(f.get_u32(keys::kWordEmbedProjDim), c.proj);
    EXPECT_EQ(f.get_u32(keys::kPositionOffset), 2u);
    EXPECT_EQ(f.get_str(keys::kTokModel), "gpt2");
    const std::vector<std::string> &tokens = f.get_str_array(keys::kTokTokens);
    ASSERT_EQ(tokens.size(), c.vocab);
    EXPECT_EQ(tokens[0], "<s>");
    EXPECT_EQ(tokens[2], "</s>");
    EXPECT_EQ(tokens[50264], "<mask>");
    EXPECT_EQ(tokens[50271], "<unused_50271>");
    const gguf::Value *types = f.find(keys::kTokTokenType);
    ASSERT_NE(types, nullptr);
    ASSERT_EQ(types->int_array.size(), c.vocab);
    EXPECT_EQ(types->int_array[2], 3);          // CONTROL: '</s>' and '<pad>', Hugging Face's special tokens for OPT
    EXPECT_EQ(types->int_array[1], 3);
    for (size_t id : {0, 3, 50264}) EXPECT_EQ(types->int_array[id], 1) << id;  // '<s>', '<unk>', '<mask>': text to HF
    EXPECT_EQ(types->int_array[100], 1);        // NORMAL
    EXPECT_EQ(types->int_array[50271], 5);      // UNUSED
    const std::vector<std::string> &merges = f.get_str_array(keys::kTokMerges);
    EXPECT_EQ(merges.size(), 50000u);
    EXPECT_EQ(merges[0], "\xC4\xA0 t");  // "Ġ t"
    EXPECT_EQ(f.get_u32(keys::kTokBos), 2u);
    EXPECT_EQ(f.get_u32(keys::kTokEos), 2u);
    EXPECT_EQ(f.get_u32(keys::kTokPad), 1u);
    EXPECT_EQ(f.get_u32(keys::kTokUnk), 2u);  // OPT's unk_token is '</s>'
    EXPECT_TRUE(f.get_bool(keys::kTokAddBos));

    // ---- tensors: the exact set, in order, with shapes, type and bytes
    seaopt::OptHparams hp = parse_hf_config(c.to_json().dump()).hp;
    const std::vector<ExpectedTensor> expected = expected_opt_tensors(hp, !c.tie);
    ASSERT_EQ(f.tensors.size(), expected.size());
    std::map<std::string, const HfTensor *> by_hf;
    for (const HfTensor &t : source) by_hf[t.name] = &t;
    const gguf::TensorType want_type =
        outtype == DType::F32 ? gguf::TensorType::F32 : outtype == DType::F16 ? gguf::TensorType::F16 : gguf::TensorType::BF16;
    for (size_t i = 0; i < expected.size(); ++i) {
        const gguf::TensorInfo &t = f.tensors[i];
        SCOPED_TRACE(expected[i].gguf_name);
        EXPECT_EQ(t.name, expected[i].gguf_name);
        ASSERT_EQ(t.n_dims, expected[i].ne.size());
        for (size_t d = 0; d < t.n_dims; ++d) EXPECT_EQ(t.ne[d], expected[i].ne[d]);
        EXPECT_EQ(t.type, want_type);
        ASSERT_TRUE(by_hf.count(expected[i].hf_name));
        const HfTensor &src = *by_hf[expected[i].hf_name];
        const Bytes want = expected_bytes(src.values, src_type, outtype);
        ASSERT_EQ(t.n_bytes, want.size());
        const uint8_t *got = bytes.data() + f.data_offset + t.offset;
        EXPECT_EQ(std::memcmp(got, want.data(), want.size()), 0) << "tensor bytes differ";
    }
}

void expect_no_output(const std::string &out) {
    EXPECT_FALSE(fs::exists(out)) << out << " was left behind";
    EXPECT_FALSE(seaopt_test::temp_file_left(out)) << out << ".tmp* was left behind";
}

TEST(EndToEnd, PreLnEveryNamingVariantAndOuttype) {
    TempDir tmp;
    TinyConfig c;  // pre-LN, hidden 16, tied
    for (bool model_prefix : {true, false}) {
        for (bool lm_head : {true, false}) {
            SCOPED_TRACE(std::string(model_prefix ? "model.decoder." : "decoder.") + (lm_head ? " with lm_head" : ""));
            const std::vector<HfTensor> src = make_hf_tensors(c, lm_head, model_prefix ? 11 : 22);
            const std::string dir = tmp / ("ck" + std::to_string(model_prefix) + std::to_string(lm_head));
            write_hf_checkpoint(dir, c.to_json(), src, DType::F32, Layout::Safetensors, model_prefix);
            for (DType out : {DType::F32, DType::F16, DType::BF16}) {
                SCOPED_TRACE(outtype_name(out));
                const std::string path = convert_dir(dir, tmp / "out.gguf", out, "opt-test");
                check_gguf(path, c, src, DType::F32, out, "opt-test");
            }
        }
    }
}

TEST(EndToEnd, Opt350mStyleInEveryLayout) {
    TempDir tmp;
    TinyConfig c;
    c.pre_ln = false;
    c.proj = 8;  // word_embed_proj_dim < hidden: project_in / project_out, no final LayerNorm
    const std::vector<HfTensor> src = make_hf_tensors(c, true, 5);
    int k = 0;
    for (Layout layout : {Layout::Safetensors, Layout::ShardedSafetensors, Layout::Bin, Layout::ShardedBin}) {
        SCOPED_TRACE(k);
        const std::string dir = tmp / ("ck" + std::to_string(k++));
        write_hf_checkpoint(dir, c.to_json(), src, DType::F16, layout, k % 2 == 0);
        const std::string path = convert_dir(dir, tmp / "out.gguf", DType::F32);
        check_gguf(path, c, src, DType::F16, DType::F32, dir.substr(dir.rfind('/') + 1));
    }
}

TEST(EndToEnd, SourceDtypesConvert) {
    TempDir tmp;
    TinyConfig c;
    const std::vector<HfTensor> src = make_hf_tensors(c, false, 9);
    for (DType st : {DType::F16, DType::BF16}) {
        const std::string dir = tmp / dtype_name(st);
        write_hf_checkpoint(dir, c.to_json(), src, st, Layout::Bin, true);
        for (DType out : {DType::F32, DType::F16, DType::BF16}) {
            SCOPED_TRACE(std::string(dtype_name(st)) + " -> " + outtype_name(out));
            check_gguf(convert_dir(dir, tmp / "out.gguf", out, "n"), c, src, st, out, "n");
        }
    }
}

TEST(EndToEnd, UntiedLmHeadBecomesOutputWeight) {
    TempDir tmp;
    TinyConfig c;
    c.tie = false;
    const std::vector<HfTensor> src = make_hf_tensors(c, true, 3);
    write_hf_checkpoint(tmp / "ck", c.to_json(), src, DType::F32, Layout::ShardedSafetensors, false);
    check_gguf(convert_dir(tmp / "ck", tmp / "out.gguf", DType::F16, "u"), c, src, DType::F32, DType::F16, "u");

    // Without lm_head an untied model cannot be converted.
    const std::vector<HfTensor> no_head = make_hf_tensors(c, false, 3);
    write_hf_checkpoint(tmp / "ck2", c.to_json(), no_head, DType::F32, Layout::Safetensors, true);
    expect_error([&] { convert_dir(tmp / "ck2", tmp / "out2.gguf", DType::F16); },
                 {"missing", "'lm_head.weight' (output.weight)"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_no_output(tmp / "out2.gguf");
}

TEST(EndToEnd, Zip64TorchArchive) {
    TempDir tmp;
    TinyConfig c;
    const std::vector<HfTensor> src = make_hf_tensors(c, false, 4);
    write_hf_checkpoint(tmp / "ck", c.to_json(), {}, DType::F16, Layout::Safetensors, true);  // config + tokenizer
    fs::remove(tmp / "ck/model.safetensors");
    std::vector<BinTensor> bins;
    for (const HfTensor &t : src) bins.push_back({"model." + t.name, DType::F16, t.shape, encode(t.values, DType::F16)});
    write_bytes(tmp / "ck/pytorch_model.bin", make_torch_bin(bins, "archive", /*zip64=*/true));
    check_gguf(convert_dir(tmp / "ck", tmp / "out.gguf", DType::F16, "z"), c, src, DType::F16, DType::F16, "z");
}

TEST(EndToEnd, PrefersSafetensorsOverBin) {
    TempDir tmp;
    TinyConfig c;
    const std::vector<HfTensor> src = make_hf_tensors(c, false, 4);
    write_hf_checkpoint(tmp / "ck", c.to_json(), src, DType::F16, Layout::Safetensors, true);
    write_bytes(tmp / "ck/pytorch_model.bin", Bytes(100, 'x'));  // would fail if it were read
    check_gguf(convert_dir(tmp / "ck", tmp / "out.gguf", DType::F16, "p"), c, src, DType::F16, DType::F16, "p");
}

// The transformers-made fixtures (torch 2.11): safetensors and pytorch_model.bin of one model
// convert to identical files, whose tensors are the source fp16 values.
TEST(EndToEnd, RealTransformersCheckpoints) {
    const std::string data = SEAOPT_TEST_DATA_DIR;
    ASSERT_TRUE(fs::exists(data + "/opt-tiny-pre/bin/pytorch_model.bin")) << "tests/data fixtures not found";
    TempDir tmp;
    const std::pair<std::string, std::string> pairs[] = {{"opt-tiny-pre/safetensors", "opt-tiny-pre/bin"},
                                                         {"opt-tiny-post/safetensors-sharded", "opt-tiny-post/bin"}};
    for (const auto &[a, b] : pairs) {
        SCOPED_TRACE(a);
        const Bytes fa = read_bytes(convert_dir(data + "/" + a, tmp / "a.gguf", DType::F16, "same"));
        const Bytes fb = read_bytes(convert_dir(data + "/" + b, tmp / "b.gguf", DType::F16, "same"));
        EXPECT_TRUE(fa == fb) << a << " and " << b << " convert differently";
        // Byte-exact against the safetensors source (fp16 -> fp16 is a copy).
        const gguf::File f = gguf::parse(fa.data(), fa.size());
        const Checkpoint ck = open_checkpoint(data + "/" + a);
        const HfOptConfig cfg = read_hf_config(data + "/" + a + "/config.json");
        const TensorPlan plan = plan_tensors(ck.tensors, cfg);
        for (const PlannedTensor &p : plan.tensors) {
            const gguf::TensorInfo *t = f.find_tensor(p.expected.gguf_name);
            ASSERT_NE(t, nullptr);
            const Bytes file = read_bytes(ck.files[p.source->file]);
            ASSERT_EQ(t->n_bytes, p.source->n_bytes);
            EXPECT_EQ(std::memcmp(fa.data() + f.data_offset + t->offset, file.data() + p.source->offset, t->n_bytes), 0)
                << p.expected.gguf_name;
        }
    }
}

// The converted file is what the engine's loader demands (model/opt_loader.cpp).
TEST(EndToEnd, OutputLoadsInTheEngine) {
    TempDir tmp;
    for (bool pre_ln : {true, false}) {
        TinyConfig c;
        c.pre_ln = pre_ln;
        c.proj = pre_ln ? 16 : 8;
        c.tie = pre_ln;
        const std::vector<HfTensor> src = make_hf_tensors(c, !c.tie, 8);
        write_hf_checkpoint(tmp / "ck", c.to_json(), src, DType::F16, Layout::Safetensors, true);
        const std::string path = convert_dir(tmp / "ck", tmp / "out.gguf", DType::F16);
        seaopt_model_params params = seaopt_model_default_params();
        params.device = SEAOPT_DEVICE_CPU;
        seaopt_model *model = nullptr;
        ASSERT_EQ(seaopt_model_load(path.c_str(), &params, &model), SEAOPT_OK) << seaopt_last_error();
        EXPECT_EQ(seaopt_model_n_vocab(model), 50272);
        seaopt_model_free(model);
        fs::remove_all(tmp / "ck");
    }
}

// config.json's EOS and padding ids are what the GGUF (and so generation) uses: a fine-tune that ends its turns with
// another token stops there, as Hugging Face's generate() does; the converter says so. Its bos_token_id is not:
// tokenizer(text) prepends the tokenizer's BOS whatever config.json says (transformers 5.17, measured: OPT's files
// beside a config.json with bos_token_id 0 give [2, 31414, 232]).
TEST(EndToEnd, ConfigSpecialTokenIdsAreKept) {
    TempDir tmp;
    TinyConfig c;
    nlohmann::json config = c.to_json();
    config["eos_token_id"] = 50118;  // "\u010a" (a newline): OPT-IML-style chat fine-tunes stop on it
    config["bos_token_id"] = 0;
    config["pad_token_id"] = nullptr;
    write_hf_checkpoint(tmp / "ck", config, make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    ConvertOptions o;
    o.input_dir = tmp / "ck";
    o.output_path = tmp / "out.gguf";
    const ConvertResult r = convert_checkpoint(o);
    ASSERT_EQ(r.notes.size(), 2u);
    EXPECT_NE(r.notes[0].find("config.json's bos_token_id 0 ('<s>') differs from the tokenizer's beginning-of-sequence "
                              "token 2 ('</s>'); seaopt keeps the tokenizer's"),
              std::string::npos)
        << r.notes[0];
    EXPECT_NE(r.notes[1].find("config.json's eos_token_id 50118 ('\xC4\x8A') is the end-of-sequence token, not 2 ('</s>')"),
              std::string::npos)
        << r.notes[1];
    const Bytes bytes = read_bytes(tmp / "out.gguf");
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    EXPECT_EQ(f.get_u32(keys::kTokBos), 2u);
    EXPECT_EQ(f.get_u32(keys::kTokEos), 50118u);
    EXPECT_EQ(f.get_u32(keys::kTokPad), 1u);  // null: vocab.json's '<pad>'

    seaopt_model_params params = seaopt_model_default_params();
    params.device = SEAOPT_DEVICE_CPU;
    params.vocab_only = true;
    seaopt_model *model = nullptr;
    ASSERT_EQ(seaopt_model_load((tmp / "out.gguf").c_str(), &params, &model), SEAOPT_OK) << seaopt_last_error();
    EXPECT_EQ(seaopt_token_eos(model), 50118);
    EXPECT_EQ(seaopt_token_bos(model), 2);
    seaopt_model_free(model);
}

// The checkpoint's tokenizer_config.json decides which tokens are special (parsed out of prompts, dropped by
// detokenize's remove_special), as it does for Hugging Face: OPT's own files give '</s>' and '<pad>'; a fine-tune
// that adds a special token in one of the model's padding rows gets it too.
TEST(EndToEnd, TokenizerConfigSpecialTokensAreKept) {
    TempDir tmp;
    TinyConfig c;
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    {
        std::ofstream(fs::path(tmp / "ck") / "special_tokens_map.json") << R"({"bos_token": "</s>", "eos_token": "</s>",
            "unk_token": "</s>", "pad_token": "<pad>", "additional_special_tokens": ["<|turn|>"]})";
        std::ofstream(fs::path(tmp / "ck") / "tokenizer_config.json") << R"({"add_bos_token": true, "added_tokens_decoder": {
            "1": {"content": "<pad>", "special": true}, "2": {"content": "</s>", "special": true},
            "50265": {"content": "<|turn|>", "special": true}}, "bos_token": "</s>", "unk_token": "</s>"})";
    }
    ConvertOptions o;
    o.input_dir = tmp / "ck";
    o.output_path = tmp / "out.gguf";
    const ConvertResult r = convert_checkpoint(o);
    ASSERT_EQ(r.notes.size(), 1u);
    EXPECT_NE(r.notes[0].find("'<|turn|>' has id 50265"), std::string::npos) << r.notes[0];

    seaopt_model_params params = seaopt_model_default_params();
    params.device = SEAOPT_DEVICE_CPU;
    params.vocab_only = true;
    seaopt_model *model = nullptr;
    ASSERT_EQ(seaopt_model_load((tmp / "out.gguf").c_str(), &params, &model), SEAOPT_OK) << seaopt_last_error();
    const std::string text = "<s>Hi<|turn|></s><mask>";
    std::vector<seaopt_token> ids(32);
    int32_t n = 0;
    ASSERT_EQ(seaopt_tokenize(model, text.data(), text.size(), false, true, ids.data(), 32, &n), SEAOPT_OK);
    ids.resize((size_t)n);
    // '<s>' and '<mask>' are text (Hugging Face: '<', 's', '>' ...), '<|turn|>' and '</s>' are special.
    EXPECT_EQ(ids, std::vector<seaopt_token>({41552, 29, 15698, 30086, 50265, 2, 41552, 43776, 15698})) << n;
    char buf[64];
    size_t len = 0;
    ASSERT_EQ(seaopt_detokenize(model, ids.data(), n, true, buf, sizeof buf, &len), SEAOPT_OK);
    EXPECT_EQ(std::string(buf, len), "<s>Hi<mask>");
    seaopt_model_free(model);
}

// --outtype q8_0: the six matrices of every block as Q8_0 blocks of the source values (model/q8_0.h, itself checked
// against gguf-py's numpy quantizer in test_q8_0), everything else f16; file_type 7; the CPU engine reads the
// matrices back as q * d exactly and runs the model, near the f16 file's logits.
TEST(EndToEnd, Q8_0Outtype) {
    TempDir tmp;
    TinyConfig c;
    c.hidden = c.proj = 32;
    c.ffn = 32800;  // fc1 and fc2 hold 1,049,600 values: more than one of the converter's chunks (2^20)
    for (DType src_type : {DType::F32, DType::F16}) {
        SCOPED_TRACE(outtype_name(src_type));
        const std::vector<HfTensor> src = make_hf_tensors(c, false, 31);
        write_hf_checkpoint(tmp / "ck", c.to_json(), src, src_type, Layout::Safetensors, true);
        ConvertOptions o;
        o.input_dir = tmp / "ck";
        o.output_path = tmp / "q8.gguf";
        o.q8_0 = true;
        convert_checkpoint(o);
        const Bytes bytes = read_bytes(o.output_path);
        const gguf::File f = gguf::parse(bytes.data(), bytes.size());
        EXPECT_EQ(f.get_u32(keys::kFileType), 7u);
        const seaopt::OptHparams hp = parse_hf_config(c.to_json().dump()).hp;
        std::map<std::string, const HfTensor *> by_hf;
        for (const HfTensor &t : src) by_hf[t.name] = &t;
        size_t n_q8 = 0;
        std::map<std::string, std::vector<float>> dequantized;
        for (const seaopt::OptTensorSpec &e : seaopt::opt_tensor_specs(hp, false)) {
            SCOPED_TRACE(e.gguf_name);
            const gguf::TensorInfo *t = f.find_tensor(e.gguf_name);
            ASSERT_NE(t, nullptr);
            const HfTensor &h = *by_hf.at(e.hf_name);
            const std::vector<float> stored = decode(encode(h.values, src_type).data(), h.values.size(), src_type);
            const uint8_t *got = bytes.data() + f.data_offset + t->offset;
            if (e.quantizable) {
                ++n_q8;
                ASSERT_EQ(t->type, gguf::TensorType::Q8_0);
                Bytes want(stored.size() / 32 * 34);
                ASSERT_TRUE(seaopt::quantize_q8_0(stored.data(), want.data(), stored.size()));
                ASSERT_EQ(t->n_bytes, want.size());
                EXPECT_EQ(std::memcmp(got, want.data(), want.size()), 0) << "Q8_0 blocks differ";
                std::vector<float> &d = dequantized[e.gguf_name];
                d.resize(stored.size());
                seaopt::dequantize_q8_0(want.data(), d.data(), d.size());
            } else {
                ASSERT_EQ(t->type, gguf::TensorType::F16);
                const Bytes want = expected_bytes(h.values, src_type, DType::F16);
                ASSERT_EQ(t->n_bytes, want.size());
                EXPECT_EQ(std::memcmp(got, want.data(), want.size()), 0) << "tensor bytes differ";
            }
        }
        EXPECT_EQ(n_q8, 6u * c.layers);

        // The CPU engine holds exactly the blocks' values.
        seaopt_model_params params = seaopt_model_default_params();
        params.device = SEAOPT_DEVICE_CPU;
        params.check_tensors = true;
        const std::unique_ptr<seaopt::OptModel> m = seaopt::load_opt_model(o.output_path, params);
        EXPECT_EQ(m->file_type, "q8_0");
        for (uint32_t l = 0; l < c.layers; ++l) {
            EXPECT_EQ(m->cpu.layers[l].q_w, dequantized.at(seaopt::blk_tensor(l, "attn_q.weight")));
            EXPECT_EQ(m->cpu.layers[l].v_w, dequantized.at(seaopt::blk_tensor(l, "attn_v.weight")));
            EXPECT_EQ(m->cpu.layers[l].o_w, dequantized.at(seaopt::blk_tensor(l, "attn_output.weight")));
            EXPECT_EQ(m->cpu.layers[l].down_w, dequantized.at(seaopt::blk_tensor(l, "ffn_down.weight")));
        }
        fs::remove_all(tmp / "ck");
    }
}

// ---- errors: clear messages, no output left behind ------------------------------------------------

class Errors : public ::testing::Test {
protected:
    TempDir tmp;
    TinyConfig c;
    std::string dir = tmp / "ck";
    std::string out = tmp / "out.gguf";

    void write(const std::vector<HfTensor> &src, const nlohmann::json &config) {
        fs::remove_all(dir);
        write_hf_checkpoint(dir, config, src, DType::F16, Layout::Safetensors, true);
    }
    void expect_fails(std::initializer_list<std::string> needles, seaopt_status code) {
        expect_error([&] { convert_dir(dir, out, DType::F16); }, needles, code);
        expect_no_output(out);
    }
};

TEST_F(Errors, Q8_0NeedsWidthsOfWholeBlocks) {
    write(make_hf_tensors(c, false), c.to_json());  // hidden 16
    ConvertOptions o;
    o.input_dir = dir;
    o.output_path = out;
    o.q8_0 = true;
    expect_error([&] { convert_checkpoint(o); }, {"q8_0 needs hidden_size and ffn_dim to be multiples of 32",
                                                  "this model has 16 and 32"},
                 SEAOPT_ERR_INVALID_ARGUMENT);
    expect_no_output(out);
}

TEST_F(Errors, Q8_0RefusesNonFiniteWeights) {
    c.hidden = c.proj = 32;
    c.ffn = 32800;  // past the first chunk of 2^20 values: the element index counts from the tensor's start
    std::vector<HfTensor> src = make_hf_tensors(c, false);
    for (HfTensor &t : src) {
        if (t.name == "decoder.layers.1.fc1.weight") t.values[77] = std::numeric_limits<float>::infinity();
        if (t.name == "decoder.layers.0.fc2.weight") t.values[(1u << 20) + 77] = std::nanf("");
    }
    write(src, c.to_json());
    ConvertOptions o;
    o.input_dir = dir;
    o.output_path = out;
    o.q8_0 = true;
    expect_error([&] { convert_checkpoint(o); },
                 {"'model.decoder.layers.0.fc2.weight' has a non-finite value at element 1048653; it cannot be quantized"},
                 SEAOPT_ERR_MODEL_FORMAT);
    expect_no_output(out);
}

TEST_F(Errors, MissingTensor) {
    std::vector<HfTensor> src = make_hf_tensors(c, false);
    src.erase(src.begin() + 7);  // layers.0.self_attn.k_proj.bias
    write(src, c.to_json());
    expect_fails({"missing", "'decoder.layers.0.self_attn.k_proj.bias' (blk.0.attn_k.bias)"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST_F(Errors, ExtraTensor) {
    std::vector<HfTensor> src = make_hf_tensors(c, false);
    src.push_back({"decoder.layers.0.self_attn.rotary.weight", {4}, {1, 2, 3, 4}});
    write(src, c.to_json());
    expect_fails({"unexpected", "'model.decoder.layers.0.self_attn.rotary.weight'"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST_F(Errors, MisshapedTensor) {
    std::vector<HfTensor> src = make_hf_tensors(c, false);
    for (HfTensor &t : src) {
        if (t.name == "decoder.layers.1.fc2.weight") t.shape = {32, 16};  // transposed
    }
    write(src, c.to_json());
    expect_fails({"'model.decoder.layers.1.fc2.weight' has shape [32, 16], expected [16, 32] (blk.1.ffn_down.weight)"},
                 SEAOPT_ERR_MODEL_FORMAT);
}

TEST_F(Errors, UnsupportedActivation) {
    TinyConfig g = c;
    g.activation = "gelu";
    write(make_hf_tensors(c, false), g.to_json());
    expect_fails({"config.json: activation_function 'gelu' is not supported (OPT uses 'relu')"}, SEAOPT_ERR_UNSUPPORTED);
}

TEST_F(Errors, HiddenNotMultipleOfHeads) {
    TinyConfig g = c;
    g.heads = 3;
    write(make_hf_tensors(c, false), g.to_json());
    expect_fails({"hidden_size 16 is not a multiple of num_attention_heads 3"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST_F(Errors, MissingConfig) {
    write(make_hf_tensors(c, false), c.to_json());
    fs::remove(dir + "/config.json");
    expect_fails({"has no config.json"}, SEAOPT_ERR_IO);
}

TEST_F(Errors, MissingTokenizer) {
    write(make_hf_tensors(c, false), c.to_json());
    fs::remove(dir + "/merges.txt");
    expect_fails({"has no merges.txt"}, SEAOPT_ERR_IO);
}

TEST_F(Errors, NoWeights) {
    write(make_hf_tensors(c, false), c.to_json());
    fs::remove(dir + "/model.safetensors");
    expect_fails({"has no weights", "model.safetensors"}, SEAOPT_ERR_IO);
}

TEST_F(Errors, BrokenShardIndex) {
    fs::remove_all(dir);
    write_hf_checkpoint(dir, c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::ShardedSafetensors, true);
    nlohmann::json index = nlohmann::json::parse(read_bytes(dir + "/model.safetensors.index.json"));
    index["weight_map"]["model.decoder.embed_tokens.weight"] = "../../etc/passwd";
    write_text(dir + "/model.safetensors.index.json", index.dump());
    expect_fails({"not a plain file name"}, SEAOPT_ERR_MODEL_FORMAT);
    index["weight_map"]["model.decoder.embed_tokens.weight"] = "model-00002-of-00003.safetensors";  // wrong shard
    write_text(dir + "/model.safetensors.index.json", index.dump());
    expect_fails({"model.decoder.embed_tokens.weight"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST_F(Errors, EvilPickleInBin) {
    fs::remove_all(dir);
    write_hf_checkpoint(dir, c.to_json(), {}, DType::F16, Layout::Safetensors, true);
    fs::remove(dir + "/model.safetensors");
    const Bytes evil = read_bytes(std::string(SEAOPT_SOURCE_DIR) + "/tests/convert_data/evil_posix_system.pkl");
    write_bytes(dir + "/pytorch_model.bin", make_zip({{"archive/data.pkl", evil}}));
    expect_fails({"pytorch_model.bin: pickle asks for global 'posix.system', which is not allowed"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST_F(Errors, ExistingOutputKeptOnFailure) {
    write_text(out, "previous");
    std::vector<HfTensor> src = make_hf_tensors(c, false);
    src.pop_back();
    write(src, c.to_json());
    expect_error([&] { convert_dir(dir, out, DType::F16); }, {"missing"});
    EXPECT_FALSE(seaopt_test::temp_file_left(out));
    EXPECT_EQ(read_bytes(out), Bytes({'p', 'r', 'e', 'v', 'i', 'o', 'u', 's'}));
}

// ---- the output must not be a file the converter reads ---------------------------------------------

// Writing there would rename the GGUF onto the checkpoint: its weights, config or tokenizer would be gone.
TEST_F(Errors, OutputOverAnInputFileIsRefused) {
    write(make_hf_tensors(c, false), c.to_json());
    for (const char *file : {"model.safetensors", "config.json", "vocab.json", "merges.txt"}) {
        SCOPED_TRACE(file);
        const Bytes before = read_bytes(dir + "/" + file);
        expect_error([&] { convert_dir(dir, dir + "/" + file, DType::F16); },
                     {"the output " + dir + "/" + file + " is the input file", "write to another path"},
                     SEAOPT_ERR_INVALID_ARGUMENT);
        EXPECT_TRUE(read_bytes(dir + "/" + file) == before) << file << " was changed";
        EXPECT_FALSE(seaopt_test::temp_file_left(dir + "/" + file));
    }
    // Another spelling of the path, and a hard link, name the same file (as seaopt-quantize's check).
    const Bytes weights = read_bytes(dir + "/model.safetensors");
    expect_error([&] { convert_dir(dir, tmp / "ck/./model.safetensors", DType::F16); }, {"is the input file"},
                 SEAOPT_ERR_INVALID_ARGUMENT);
    fs::create_hard_link(dir + "/model.safetensors", tmp / "link.gguf");
    expect_error([&] { convert_dir(dir, tmp / "link.gguf", DType::F16); }, {"is the input file"},
                 SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(read_bytes(dir + "/model.safetensors") == weights);
    // The checkpoint directory itself is not a file to write.
    expect_error([&] { convert_dir(dir, dir, DType::F16); }, {"is a directory"}, SEAOPT_ERR_INVALID_ARGUMENT);
    // A GGUF beside the checkpoint's files is fine.
    convert_dir(dir, dir + "/model.gguf", DType::F16);
    EXPECT_TRUE(fs::exists(dir + "/model.gguf"));
}

TEST_F(Errors, OutputOverAShardOrItsIndexIsRefused) {
    for (Layout layout : {Layout::ShardedSafetensors, Layout::ShardedBin, Layout::Bin}) {
        fs::remove_all(dir);
        write_hf_checkpoint(dir, c.to_json(), make_hf_tensors(c, false), DType::F16, layout, true);
        const bool bin = layout != Layout::ShardedSafetensors;
        std::vector<std::string> files;
        if (layout == Layout::Bin) {
            files = {"pytorch_model.bin"};
        } else if (bin) {
            files = {"pytorch_model-00002-of-00003.bin", "pytorch_model.bin.index.json"};
        } else {
            files = {"model-00003-of-00003.safetensors", "model.safetensors.index.json"};
        }
        for (const std::string &file : files) {
            SCOPED_TRACE(file);
            const Bytes before = read_bytes(dir + "/" + file);
            expect_error([&] { convert_dir(dir, dir + "/" + file, DType::F16); }, {"is the input file"},
                         SEAOPT_ERR_INVALID_ARGUMENT);
            EXPECT_TRUE(read_bytes(dir + "/" + file) == before);
        }
    }
}

// ---- merges.txt: what Hugging Face's tokenizer refuses -----------------------------------------------

class Merges : public Errors {
protected:
    std::vector<std::string> real_lines;  // the OPT merges.txt, header first
    void SetUp() override {
        write(make_hf_tensors(c, false), c.to_json());
        const Bytes b = read_bytes(dir + "/merges.txt");
        std::stringstream ss(std::string(b.begin(), b.end()));
        for (std::string line; std::getline(ss, line);) real_lines.push_back(line);
        ASSERT_EQ(real_lines.size(), 50001u);
    }
    void write_merges(const std::vector<std::string> &lines) {
        std::string text;
        for (const std::string &l : lines) text += l + "\n";
        write_text(dir + "/merges.txt", text);
    }
    // The real merges with `extra` inserted before real line `at` (1-based; the header is line 1).
    std::vector<std::string> with_line(size_t at, const std::string &extra) const {
        std::vector<std::string> l = real_lines;
        l.insert(l.begin() + (std::ptrdiff_t)(at - 1), extra);
        return l;
    }
};

// No merges: every word would be split into bytes (wrong tokens, silently wrong perplexities).
TEST_F(Merges, NoMergesIsRefused) {
    write_merges({"#version: 0.2"});
    expect_fails({"merges.txt has no merges"}, SEAOPT_ERR_MODEL_FORMAT);
    write_text(dir + "/merges.txt", "");
    expect_fails({"merges.txt has no merges"}, SEAOPT_ERR_MODEL_FORMAT);
    write_merges({"#version: 0.2", "", "  "});
    expect_fails({"merges.txt has no merges"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST_F(Merges, APartNotInTheVocabularyIsRefused) {
    write_merges(with_line(4, "zq t"));
    expect_fails({"merges.txt line 4 ('zq t'): 'zq' is not in vocab.json"}, SEAOPT_ERR_MODEL_FORMAT);
    write_merges(with_line(50002, "t zq"));  // after the last one
    expect_fails({"merges.txt line 50002 ('t zq'): 'zq' is not in vocab.json"}, SEAOPT_ERR_MODEL_FORMAT);
}

// "Ġ" and "Ġ" are tokens, "ĠĠ" is not in OPT's vocabulary.
TEST_F(Merges, AMergedTokenNotInTheVocabularyIsRefused) {
    std::vector<std::string> lines = with_line(3, "\xC4\xA0 \xC4\xA0");
    lines.insert(lines.begin() + 1, "");  // a blank line counts in the line numbers but is no merge
    write_merges(lines);
    expect_fails({"merges.txt line 4 ('\xC4\xA0 \xC4\xA0'): '\xC4\xA0\xC4\xA0' is not in vocab.json"},
                 SEAOPT_ERR_MODEL_FORMAT);
}

// The real OPT merges convert, in any order of their lines: every part and result is a token.
TEST_F(Merges, TheRealMergesConvert) {
    std::vector<std::string> lines = real_lines;
    std::reverse(lines.begin() + 1, lines.end());
    write_merges(lines);
    convert_dir(dir, out, DType::F16);
    const Bytes b = read_bytes(out);
    const gguf::File f = gguf::parse(b.data(), b.size());
    const std::vector<std::string> &merges = f.get_str_array(keys::kTokMerges);
    ASSERT_EQ(merges.size(), 50000u);
    EXPECT_EQ(merges.back(), "\xC4\xA0 t");
}

// ---- general.name must be UTF-8 (a GGUF string) -------------------------------------------------------

TEST_F(Errors, ModelNameMustBeUtf8) {
    write(make_hf_tensors(c, false), c.to_json());
    // A stray byte, an overlong "/", a surrogate, a sequence cut short.
    for (const std::string &bad : {std::string("\xFF\xFE"), std::string("a\xC0\xAF"), std::string("ab\xED\xA0\x80"),
                                   std::string("abc\xE2\x82")}) {
        SCOPED_TRACE(bad);
        const size_t at = bad.find_first_of("\xFF\xC0\xED\xE2");
        expect_error([&] { convert_dir(dir, out, DType::F16, bad); },
                     {"the model name is not valid UTF-8 (byte " + std::to_string(at) + " is 0x"},
                     SEAOPT_ERR_INVALID_UTF8);
        expect_no_output(out);
    }
    const std::string good = "OPT \xC3\xBC \xE6\xA8\xA1\xE5\x9E\x8B \xF0\x9F\x90\xB3";  // "OPT ü 模型 🐳"
    convert_dir(dir, out, DType::F16, good);
    const Bytes b = read_bytes(out);
    EXPECT_EQ(gguf::parse(b.data(), b.size()).get_str(keys::kName), good);
}

// The default name is the directory's: a directory whose name is not UTF-8 needs --name.
TEST_F(Errors, DefaultModelNameMustBeUtf8) {
    const std::string odd = tmp / "ck-\xFF";
    write_hf_checkpoint(odd, c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    expect_error([&] { convert_dir(odd, out, DType::F16); },
                 {"the checkpoint directory's name, the default model name, is not valid UTF-8 (byte 3 is 0xFF)",
                  "give one with --name"},
                 SEAOPT_ERR_INVALID_UTF8);
    expect_no_output(out);
    convert_dir(odd, out, DType::F16, "named");
    EXPECT_TRUE(fs::exists(out));
}

}  // namespace
