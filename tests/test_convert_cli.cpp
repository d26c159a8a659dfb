// The seaopt-convert and seaopt-make-tiny-checkpoint binaries: exit codes, messages, progress
// lines, and the reproducible demo checkpoint.
#include <gtest/gtest.h>

#include "test_util.h"

#include <algorithm>
#include <cmath>

#include "model/gguf.h"
#include "test_convert_util.h"
#include "weights-convert/checkpoint.h"
#include "weights-convert/safetensors.h"

using namespace convert_test;
using namespace seaopt::convert;

namespace {

const std::string kTokenizerDir = std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer";

TEST(Cli, ConvertsAndReports) {
    TempDir tmp;
    TinyConfig c;
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, true), DType::F16, Layout::Safetensors, true);
    // stderr is a file, not a terminal: one progress line per ~10 %.
    const RunResult r = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "out.gguf", "--outtype", "bf16",
                                     "--name", "cli-test"},
                                    tmp.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("wrote " + tmp / "out.gguf" + ": 36 tensors"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("bf16"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("tied lm_head.weight skipped"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("100%"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\r'), std::string::npos) << "no bar redraws when stderr is not a terminal";
    const size_t lines = (size_t)std::count(r.err.begin(), r.err.end(), '\n');
    EXPECT_GE(lines, 2u);
    EXPECT_LE(lines, 12u) << r.err;
    const Bytes b = read_bytes(tmp / "out.gguf");
    const seaopt::gguf::File f = seaopt::gguf::parse(b.data(), b.size());
    EXPECT_EQ(f.get_str("general.name"), "cli-test");
    EXPECT_EQ(f.get_u32("general.file_type"), 32u);

    const RunResult quiet = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "q.gguf", "--no-progress"}, tmp.path());
    EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
    EXPECT_EQ(quiet.err, "");
}

TEST(Cli, ErrorsExitOneWithAMessage) {
    TempDir tmp;
    TinyConfig c;
    c.activation = "gelu";
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    const RunResult r = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "out.gguf"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("seaopt-convert: error: config.json: activation_function 'gelu' is not supported"),
              std::string::npos)
        << r.err;
    EXPECT_FALSE(fs::exists(tmp / "out.gguf"));
    EXPECT_FALSE(seaopt_test::temp_file_left(tmp / "out.gguf"));

    const RunResult missing = run_process({binary("seaopt-convert"), tmp / "nope", "-o", tmp / "out.gguf"}, tmp.path());
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("seaopt-convert: error: "), std::string::npos) << missing.err;

    const RunResult usage = run_process({binary("seaopt-convert"), tmp / "ck"}, tmp.path());  // no -o
    EXPECT_NE(usage.exit_code, 0);
    const RunResult bad_type = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "x.gguf", "--outtype", "q4"},
                                           tmp.path());
    EXPECT_NE(bad_type.exit_code, 0);
    EXPECT_FALSE(fs::exists(tmp / "x.gguf"));
}

double mean_of(const std::vector<float> &v) {
    double s = 0;
    for (float x : v) s += x;
    return s / (double)v.size();
}
double std_of(const std::vector<float> &v) {
    const double m = mean_of(v);
    double s = 0;
    for (float x : v) s += (x - m) * (x - m);
    return std::sqrt(s / (double)v.size());
}

TEST(Cli, TinyCheckpointIsReproducibleAndConverts) {
    TempDir tmp;
    auto make = [&](const std::string &dir, const char *seed) {
        const RunResult r = run_process({binary("seaopt-make-tiny-checkpoint"), "--out", dir, "--tokenizer-dir",
                                         kTokenizerDir, "--seed", seed},
                                        tmp.path());
        ASSERT_EQ(r.exit_code, 0) << r.err;
    };
    make(tmp / "a", "1");
    make(tmp / "b", "1");
    make(tmp / "c", "2");
    EXPECT_TRUE(read_bytes(tmp / "a/model.safetensors") == read_bytes(tmp / "b/model.safetensors"));
    EXPECT_FALSE(read_bytes(tmp / "a/model.safetensors") == read_bytes(tmp / "c/model.safetensors"));
    EXPECT_TRUE(read_bytes(tmp / "a/vocab.json") == read_bytes(kTokenizerDir + "/vocab.json"));
    EXPECT_TRUE(read_bytes(tmp / "a/merges.txt") == read_bytes(kTokenizerDir + "/merges.txt"));
    for (const auto &e : fs::directory_iterator(tmp / "a")) EXPECT_NE(e.path().extension(), ".tmp") << e.path();

    const nlohmann::json cfg = nlohmann::json::parse(read_bytes(tmp / "a/config.json"));
    EXPECT_EQ(cfg["vocab_size"], 50272);
    EXPECT_EQ(cfg["hidden_size"], 64);
    EXPECT_EQ(cfg["num_attention_heads"], 4);
    EXPECT_EQ(cfg["num_hidden_layers"], 2);
    EXPECT_EQ(cfg["ffn_dim"], 256);
    EXPECT_EQ(cfg["max_position_embeddings"], 2048);
    EXPECT_EQ(cfg["word_embed_proj_dim"], 64);
    EXPECT_EQ(cfg["do_layer_norm_before"], true);
    EXPECT_EQ(cfg["model_type"], "opt");
    EXPECT_EQ(cfg["activation_function"], "relu");
    EXPECT_EQ(cfg["torch_dtype"], "float16");

    // F16, "model.decoder." names, no lm_head, and the promised distributions.
    seaopt::convert::FileSource st(tmp / "a/model.safetensors", "model.safetensors");
    const std::vector<SourceTensor> tensors = list_safetensors_file(st, 0);
    EXPECT_EQ(tensors.size(), 4u + 2 * 16);
    const Bytes file = read_bytes(tmp / "a/model.safetensors");
    for (const SourceTensor &t : tensors) {
        SCOPED_TRACE(t.name);
        EXPECT_EQ(t.dtype, DType::F16);
        EXPECT_EQ(t.name.rfind("model.decoder.", 0), 0u);
        const std::vector<float> v = decode(file.data() + t.offset, t.n_bytes / 2, DType::F16);
        const double m = mean_of(v), s = std_of(v);
        if (t.name.find("embed_") != std::string::npos) {
            EXPECT_NEAR(m, 0.0, 0.05);
            EXPECT_NEAR(s, 1.0, 0.05);
        } else if (t.name.find("layer_norm.weight") != std::string::npos) {
            EXPECT_NEAR(m, 1.0, 0.06);
            EXPECT_NEAR(s, 0.1, 0.04);
        } else if (t.name.find(".bias") != std::string::npos) {
            EXPECT_NEAR(m, 0.0, 0.06);
            EXPECT_NEAR(s, 0.1, 0.04);
        } else {
            EXPECT_NEAR(s, 1.0 / std::sqrt((double)t.shape[1]), 0.02);
        }
    }

    const RunResult r = run_process({binary("seaopt-convert"), tmp / "a", "-o", tmp / "tiny.gguf", "--outtype", "f16",
                                     "--no-progress"},
                                    tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Bytes g = read_bytes(tmp / "tiny.gguf");
    const seaopt::gguf::File f = seaopt::gguf::parse(g.data(), g.size());
    EXPECT_EQ(f.tensors.size(), 36u);
    EXPECT_EQ(f.get_u32("opt.context_length"), 2048u);
}

// --token-embedding-std scales the token embedding alone (the GPU tests' models whose greedy continuations wander);
// out-of-range values are refused.
TEST(Cli, TinyCheckpointTokenEmbeddingStd) {
    TempDir tmp;
    const RunResult r = run_process({binary("seaopt-make-tiny-checkpoint"), "--out", tmp / "s", "--tokenizer-dir",
                                     kTokenizerDir, "--seed", "1", "--token-embedding-std", "0.05"},
                                    tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    seaopt::convert::FileSource st(tmp / "s/model.safetensors", "model.safetensors");
    const Bytes file = read_bytes(tmp / "s/model.safetensors");
    int seen = 0;
    for (const SourceTensor &t : list_safetensors_file(st, 0)) {
        if (t.name.find("embed_") == std::string::npos) continue;
        SCOPED_TRACE(t.name);
        const double s = std_of(decode(file.data() + t.offset, t.n_bytes / 2, DType::F16));
        if (t.name.find("embed_tokens") != std::string::npos) {
            EXPECT_NEAR(s, 0.05, 0.002);
        } else {
            EXPECT_NEAR(s, 1.0, 0.02);  // the positional embedding keeps N(0,1)
        }
        ++seen;
    }
    EXPECT_EQ(seen, 2);
    for (const char *bad : {"0", "-1", "abc"}) {
        const RunResult b = run_process({binary("seaopt-make-tiny-checkpoint"), "--out", tmp / "b", "--tokenizer-dir",
                                         kTokenizerDir, "--token-embedding-std", bad},
                                        tmp.path());
        EXPECT_NE(b.exit_code, 0) << bad;
        EXPECT_FALSE(fs::exists(tmp / "b/model.safetensors")) << bad;
    }
}

}  // namespace
