// Bad input through the public API: each case expects a clear error code and message, never a
// crash. Model files are made by converting a fixture, then corrupted or rewritten.
#include <gtest/gtest.h>

#include "test_util.h"
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/omp_error.h"
#include "fuzz/model_load_target.h"
#include "model/gguf.h"
#include "model/opt_format.h"
#include "model/q8_0.h"
#include "seaopt.h"

namespace fs = std::filesystem;
using namespace seaopt;

namespace {

using seaopt_test::temp_dir;

// A valid model file: the opt-tiny-pre fixture converted to f32.
const std::string &good_model() {
    static std::string path = [] {
        const std::string out = temp_dir() + "/good.gguf";
        pid_t pid = fork();
        if (pid == 0) {
            const std::string exe = std::string(SEAOPT_BINARY_DIR) + "/bin/seaopt-convert";
            const std::string in = std::string(SEAOPT_TEST_DATA_DIR) + "/opt-tiny-pre/safetensors";
            execl(exe.c_str(), exe.c_str(), in.c_str(), "-o", out.c_str(), "--outtype", "f32", "--no-progress",
                  (char *)nullptr);
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("seaopt-convert failed");
        return out;
    }();
    return path;
}

std::vector<uint8_t> read_all(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_all(const std::string &path, const std::vector<uint8_t> &bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write((const char *)bytes.data(), (std::streamsize)bytes.size());
}

// Rewrites the good model through gguf::Writer, letting `edit_kv` change metadata and
// `keep_tensor` drop tensors; `reshape` may change a tensor's declared shape (its data is then
// zero-filled to the new size).
std::string rewrite(const std::string &name, const std::function<void(gguf::Writer &)> &edit_kv,
                    const std::function<bool(const std::string &)> &keep_tensor = nullptr,
                    const std::function<void(const std::string &, std::vector<int64_t> &)> &reshape = nullptr) {
    gguf::MappedFile mf(good_model());
    const gguf::File f = gguf::parse(mf.data(), mf.size());
    gguf::Writer w;
    for (const auto &[k, v] : f.kv) w.set(k, v);
    edit_kv(w);
    std::vector<const gguf::TensorInfo *> src;
    for (const gguf::TensorInfo &t : f.tensors) {
        if (keep_tensor && !keep_tensor(t.name)) continue;
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        if (reshape) reshape(t.name, ne);
        w.add_tensor(t.name, t.type, ne);
        src.push_back(&t);
    }
    const std::string out = temp_dir() + "/" + name + ".gguf";
    w.write(out, [&](size_t i, const gguf::Writer::Sink &sink) {
        const gguf::TensorInfo &t = *src[i];
        const uint64_t want = w.tensors()[i].n_bytes;
        const uint64_t have = std::min<uint64_t>(want, t.n_bytes);
        sink(mf.data() + f.data_offset + t.offset, have);
        if (want > have) {
            std::vector<uint8_t> zeros(want - have, 0);
            sink(zeros.data(), zeros.size());
        }
    });
    return out;
}

void expect_load_error(const std::string &path, seaopt_status code, const std::string &needle) {
    seaopt_model_params p = seaopt_model_default_params();
    p.device = SEAOPT_DEVICE_CPU;
    seaopt_model *m = reinterpret_cast<seaopt_model *>(0x1);
    EXPECT_EQ(seaopt_model_load(path.c_str(), &p, &m), code) << seaopt_last_error();
    EXPECT_EQ(m, nullptr);
    const std::string msg = seaopt_last_error();
    EXPECT_NE(msg.find(needle), std::string::npos) << "message was: " << msg;
}

TEST(ModelFileErrors, GoodModelLoads) {
    seaopt_model *m = nullptr;
    seaopt_model_params p = seaopt_model_default_params();
    p.device = SEAOPT_DEVICE_CPU;
    p.check_tensors = true;
    ASSERT_EQ(seaopt_model_load(good_model().c_str(), &p, &m), SEAOPT_OK) << seaopt_last_error();
    EXPECT_EQ(seaopt_model_n_layer(m), 2);
    EXPECT_EQ(seaopt_model_n_embd(m), 32);
    EXPECT_EQ(seaopt_model_n_ctx_train(m), 64);
    char desc[64];
    seaopt_model_desc(m, desc, sizeof desc);
    EXPECT_NE(std::string(desc).find("f32"), std::string::npos) << desc;
    // The device: "CPU", with the processor's name where Linux gives it; truncated like seaopt_model_desc.
    char device[256];
    const int32_t n = seaopt_model_device_desc(m, device, sizeof device);
    EXPECT_EQ(std::string(device).rfind("CPU", 0), 0u) << device;
    EXPECT_EQ((size_t)n, std::string(device).size());
    char small[3];
    EXPECT_EQ(seaopt_model_device_desc(m, small, sizeof small), n);
    EXPECT_STREQ(small, "CP");
    EXPECT_EQ(seaopt_model_device_desc(nullptr, device, sizeof device), (int32_t)std::strlen("invalid model"));
    seaopt_model_free(m);
    p.vocab_only = true;
    ASSERT_EQ(seaopt_model_load(good_model().c_str(), &p, &m), SEAOPT_OK) << seaopt_last_error();
    seaopt_model_device_desc(m, device, sizeof device);
    EXPECT_STREQ(device, "none (vocabulary only)");
    seaopt_model_free(m);
}

TEST(ModelFileErrors, MissingFile) {
    expect_load_error(temp_dir() + "/does-not-exist.gguf", SEAOPT_ERR_IO, "does-not-exist.gguf");
}

TEST(ModelFileErrors, TruncatedFile) {
    std::vector<uint8_t> bytes = read_all(good_model());
    for (size_t keep : {size_t(0), size_t(3), size_t(20), bytes.size() / 2, bytes.size() - 1}) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + (long)keep);
        const std::string path = temp_dir() + "/truncated.gguf";
        write_all(path, cut);
        seaopt_model *m = nullptr;
        EXPECT_EQ(seaopt_model_load(path.c_str(), nullptr, &m), SEAOPT_ERR_MODEL_FORMAT) << "kept " << keep << " bytes";
        EXPECT_NE(std::string(seaopt_last_error()), "");
    }
}

TEST(ModelFileErrors, WrongMagicAndVersion) {
    std::vector<uint8_t> bytes = read_all(good_model());
    std::vector<uint8_t> bad = bytes;
    bad[0] = 'X';
    write_all(temp_dir() + "/magic.gguf", bad);
    expect_load_error(temp_dir() + "/magic.gguf", SEAOPT_ERR_MODEL_FORMAT, "magic");
    bad = bytes;
    bad[4] = 2;  // version 2
    write_all(temp_dir() + "/v2.gguf", bad);
    expect_load_error(temp_dir() + "/v2.gguf", SEAOPT_ERR_MODEL_FORMAT, "version");
}

TEST(ModelFileErrors, TensorDataOutOfBounds) {
    // Cut inside the last tensor's data: the header is intact, the data is not.
    std::vector<uint8_t> bytes = read_all(good_model());
    bytes.resize(bytes.size() - 16);
    write_all(temp_dir() + "/short-data.gguf", bytes);
    seaopt_model *m = nullptr;
    EXPECT_EQ(seaopt_model_load((temp_dir() + "/short-data.gguf").c_str(), nullptr, &m), SEAOPT_ERR_MODEL_FORMAT);
    const std::string msg = seaopt_last_error();
    EXPECT_TRUE(msg.find("end of") != std::string::npos || msg.find("truncated") != std::string::npos) << msg;
}

TEST(ModelFileErrors, MissingTensor) {
    const std::string path = rewrite("missing", [](gguf::Writer &) {},
                                     [](const std::string &n) { return n != "blk.1.ffn_up.bias"; });
    expect_load_error(path, SEAOPT_ERR_MODEL_FORMAT, "'blk.1.ffn_up.bias' is missing");
}

TEST(ModelFileErrors, ShapeMismatch) {
    // The metadata says ffn 128 while the tensors are ffn 64.
    const std::string path = rewrite("ffn", [](gguf::Writer &w) { w.set(keys::kFeedForwardLength, gguf::Value::make_u32(128)); });
    expect_load_error(path, SEAOPT_ERR_MODEL_FORMAT, "shape");
    // A tensor whose own shape is wrong.
    const std::string path2 = rewrite("reshaped", [](gguf::Writer &) {}, nullptr,
                                      [](const std::string &n, std::vector<int64_t> &ne) {
                                          if (n == "blk.0.attn_k.weight") ne = {32, 16};
                                      });
    expect_load_error(path2, SEAOPT_ERR_MODEL_FORMAT, "'blk.0.attn_k.weight' has shape {32, 16}, expected {32, 32}");
}

TEST(ModelFileErrors, UnexpectedTensor) {
    // proj_in exists only when word_embed_proj_dim != hidden: this 32/32 model must not have it.
    gguf::MappedFile mf(good_model());
    const gguf::File f = gguf::parse(mf.data(), mf.size());
    gguf::Writer w;
    for (const auto &[k, v] : f.kv) w.set(k, v);
    for (const gguf::TensorInfo &t : f.tensors) w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims));
    w.add_tensor("proj_in.weight", gguf::TensorType::F32, {32, 32});
    const std::string out = temp_dir() + "/extra2.gguf";
    w.write(out, [&](size_t i, const gguf::Writer::Sink &sink) {
        if (i < f.tensors.size()) {
            sink(mf.data() + f.data_offset + f.tensors[i].offset, f.tensors[i].n_bytes);
        } else {
            std::vector<uint8_t> zeros(32 * 32 * 4, 0);
            sink(zeros.data(), zeros.size());
        }
    });
    expect_load_error(out, SEAOPT_ERR_MODEL_FORMAT, "unexpected tensor 'proj_in.weight'");
}

TEST(ModelFileErrors, BadMetadata) {
    expect_load_error(rewrite("arch", [](gguf::Writer &w) { w.set(keys::kArchitecture, gguf::Value::make_str("llama")); }),
                      SEAOPT_ERR_UNSUPPORTED, "architecture 'llama'");
    expect_load_error(rewrite("heads", [](gguf::Writer &w) { w.set(keys::kHeadCount, gguf::Value::make_u32(5)); }),
                      SEAOPT_ERR_MODEL_FORMAT, "head count");
    expect_load_error(rewrite("layers", [](gguf::Writer &w) { w.set(keys::kBlockCount, gguf::Value::make_u32(100000)); }),
                      SEAOPT_ERR_MODEL_FORMAT, "opt.block_count");
    expect_load_error(rewrite("type", [](gguf::Writer &w) { w.set(keys::kBlockCount, gguf::Value::make_str("2")); }),
                      SEAOPT_ERR_MODEL_FORMAT, "opt.block_count");
    expect_load_error(rewrite("tokens", [](gguf::Writer &w) {
                          w.set(keys::kTokTokens, gguf::Value::make_str_array({"a", "b", "c"}));
                      }),
                      SEAOPT_ERR_MODEL_FORMAT, "tokens");
    expect_load_error(rewrite("bos", [](gguf::Writer &w) { w.set(keys::kTokBos, gguf::Value::make_u32(999999)); }),
                      SEAOPT_ERR_MODEL_FORMAT, "bos_token_id");
    expect_load_error(rewrite("eps", [](gguf::Writer &w) { w.set(keys::kLayerNormEps, gguf::Value::make_f32(-1.0f)); }),
                      SEAOPT_ERR_MODEL_FORMAT, "epsilon");
    // Optional keys of another type are refused (they were ignored), and these errors name the file as the
    // parser's do.
    const std::string named = rewrite("name-type", [](gguf::Writer &w) { w.set(keys::kName, gguf::Value::make_u32(7)); });
    expect_load_error(named, SEAOPT_ERR_MODEL_FORMAT, named + ": key general.name must be STRING, found UINT32");
    expect_load_error(
        rewrite("file-type", [](gguf::Writer &w) { w.set(keys::kFileType, gguf::Value::make_str("f16")); }),
        SEAOPT_ERR_MODEL_FORMAT, "general.file_type must be UINT32");
    expect_load_error(
        rewrite("add-bos", [](gguf::Writer &w) { w.set(keys::kTokAddBos, gguf::Value::make_u32(1)); }),
        SEAOPT_ERR_MODEL_FORMAT, "tokenizer.ggml.add_bos_token must be BOOL");
    const std::string heads = rewrite("heads-path", [](gguf::Writer &w) { w.set(keys::kHeadCount, gguf::Value::make_u32(5)); });
    expect_load_error(heads, SEAOPT_ERR_MODEL_FORMAT, heads + ": ");
}

TEST(ModelFileErrors, NonFiniteWeightsWithCheckTensors) {
    const std::string path = rewrite("nan", [](gguf::Writer &) {});
    std::vector<uint8_t> bytes = read_all(path);
    gguf::File f = gguf::parse(bytes.data(), bytes.size());
    const gguf::TensorInfo *t = f.find_tensor("blk.0.attn_q.bias");
    const float nan = NAN;
    std::memcpy(bytes.data() + f.data_offset + t->offset + 8, &nan, 4);
    write_all(path, bytes);
    seaopt_model_params p = seaopt_model_default_params();
    p.device = SEAOPT_DEVICE_CPU;
    p.check_tensors = true;
    seaopt_model *m = nullptr;
    EXPECT_EQ(seaopt_model_load(path.c_str(), &p, &m), SEAOPT_ERR_MODEL_FORMAT);
    EXPECT_NE(std::string(seaopt_last_error()).find("'blk.0.attn_q.bias' has a non-finite value at element 2"), std::string::npos)
        << seaopt_last_error();
}

// The good model rewritten with the tensors `q8` picks stored as Q8_0 (quantized from their f32 values).
std::string rewrite_q8(const std::string &name, const std::function<bool(const std::string &)> &q8) {
    gguf::MappedFile mf(good_model());
    const gguf::File f = gguf::parse(mf.data(), mf.size());
    gguf::Writer w;
    for (const auto &[k, v] : f.kv) w.set(k, v);
    for (const gguf::TensorInfo &t : f.tensors) {
        w.add_tensor(t.name, q8(t.name) ? gguf::TensorType::Q8_0 : t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims));
    }
    const std::string out = temp_dir() + "/" + name + ".gguf";
    w.write(out, [&](size_t i, const gguf::Writer::Sink &sink) {
        const gguf::TensorInfo &t = f.tensors[i];
        const uint8_t *data = mf.data() + f.data_offset + t.offset;
        if (w.tensors()[i].type != gguf::TensorType::Q8_0) {
            sink(data, t.n_bytes);
            return;
        }
        std::vector<float> values(t.n_elements);
        std::memcpy(values.data(), data, t.n_bytes);  // the good model is f32
        std::vector<uint8_t> blocks(t.n_elements / 32 * 34);
        if (!quantize_q8_0(values.data(), blocks.data(), values.size())) throw std::runtime_error("quantize");
        sink(blocks.data(), blocks.size());
    });
    return out;
}

bool is_block_matrix(const std::string &n) {
    for (const char *m : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_up.weight",
                          "ffn_down.weight"}) {
        if (n.size() > std::strlen(m) && n.compare(n.size() - std::strlen(m), std::string::npos, m) == 0) return true;
    }
    return false;
}

TEST(ModelFileErrors, Q8_0OnlyForAllTheBlockMatrices) {
    seaopt_model_params p = seaopt_model_default_params();
    p.device = SEAOPT_DEVICE_CPU;
    seaopt_model *m = nullptr;
    const std::string good = rewrite_q8("q8", is_block_matrix);
    ASSERT_EQ(seaopt_model_load(good.c_str(), &p, &m), SEAOPT_OK) << seaopt_last_error();
    char desc[128];
    seaopt_model_desc(m, desc, sizeof desc);
    EXPECT_NE(std::string(desc).find("q8_0"), std::string::npos) << desc;
    seaopt_model_free(m);
    expect_load_error(rewrite_q8("q8embd", [](const std::string &n) { return is_block_matrix(n) || n == "token_embd.weight"; }),
                      SEAOPT_ERR_MODEL_FORMAT,
                      "tensor 'token_embd.weight' is Q8_0, but seaopt reads Q8_0 only for the blocks' weight matrices");
    expect_load_error(rewrite_q8("q8one", [](const std::string &n) { return n == "blk.1.ffn_up.weight"; }),
                      SEAOPT_ERR_MODEL_FORMAT,
                      "tensor 'blk.1.ffn_up.weight' is Q8_0 but 'blk.0.attn_q.weight' is not; a file stores either all "
                      "of the blocks' weight matrices as Q8_0 or none");
    // A scale that is not finite: found with check_tensors.
    std::vector<uint8_t> bytes = read_all(good);
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    const gguf::TensorInfo *t = f.find_tensor("blk.1.attn_v.weight");
    const uint16_t inf16 = 0x7C00;
    std::memcpy(bytes.data() + f.data_offset + t->offset + 3 * 34, &inf16, 2);  // block 3: elements 96..127
    write_all(good, bytes);
    p.check_tensors = true;
    EXPECT_EQ(seaopt_model_load(good.c_str(), &p, &m), SEAOPT_ERR_MODEL_FORMAT);
    EXPECT_NE(std::string(seaopt_last_error()).find("'blk.1.attn_v.weight' has a non-finite value at element 96"),
              std::string::npos)
        << seaopt_last_error();
}

TEST(ModelFileErrors, ProgressCallbackCancels) {
    seaopt_model_params p = seaopt_model_default_params();
    p.device = SEAOPT_DEVICE_CPU;
    int calls = 0;
    p.progress_callback = [](float progress, void *ud) {
        EXPECT_GE(progress, 0.0f);
        EXPECT_LE(progress, 1.0f);
        return ++*static_cast<int *>(ud) < 3;  // cancel at the third report
    };
    p.progress_callback_user_data = &calls;
    seaopt_model *m = nullptr;
    EXPECT_EQ(seaopt_model_load(good_model().c_str(), &p, &m), SEAOPT_ERR_CANCELLED);
    EXPECT_EQ(m, nullptr);
    EXPECT_EQ(calls, 3);
}

// Whatever stops the CUDA engine here (no CUDA in the build, no GPU, an unsupported GPU, or the
// tiny model's head_dim 16), asking for it is an error that says why and points to the CPU.
TEST(ModelFileErrors, CudaUnavailableSuggestsTheCpu) {
    seaopt_model_params p = seaopt_model_default_params();
    p.device = SEAOPT_DEVICE_CUDA;
    seaopt_model *m = nullptr;
    const seaopt_status st = seaopt_model_load(good_model().c_str(), &p, &m);
    EXPECT_TRUE(st == SEAOPT_ERR_DEVICE || st == SEAOPT_ERR_UNSUPPORTED) << st;
    EXPECT_EQ(m, nullptr);
    const std::string msg = seaopt_last_error();
    EXPECT_NE(msg.find("device cuda: "), std::string::npos) << msg;
    EXPECT_NE(msg.find("--device cpu"), std::string::npos) << msg;
}

struct Ctx {
    seaopt_model *model = nullptr;
    seaopt_context *ctx = nullptr;
    explicit Ctx(uint32_t n_ctx, uint32_t n_seq = 1, uint32_t n_batch = 0) {
        seaopt_model_params mp = seaopt_model_default_params();
        mp.device = SEAOPT_DEVICE_CPU;
        EXPECT_EQ(seaopt_model_load(good_model().c_str(), &mp, &model), SEAOPT_OK) << seaopt_last_error();
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = n_ctx;
        cp.n_seq_max = n_seq;
        cp.n_batch = n_batch;
        EXPECT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
    }
    ~Ctx() {
        seaopt_context_free(ctx);
        seaopt_model_free(model);
    }
};

TEST(ContextErrors, PromptLongerThanContext) {
    Ctx c(8);
    std::vector<int32_t> ids(9, 100);
    seaopt_batch b = seaopt_batch_get_one(ids.data(), 9);
    EXPECT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_ERR_CONTEXT_FULL);
    EXPECT_NE(std::string(seaopt_last_error()).find("n_ctx = 8"), std::string::npos) << seaopt_last_error();
    EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 0), 0);  // nothing was kept
    b.n_tokens = 8;
    EXPECT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_OK) << seaopt_last_error();
    b.n_tokens = 1;
    EXPECT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_ERR_CONTEXT_FULL);
    EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 0), 8);
}

// The good model on the CPU engine (null on failure).
seaopt_model *load_cpu_model() {
    seaopt_model *m = nullptr;
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CPU;
    return seaopt_model_load(good_model().c_str(), &mp, &m) == SEAOPT_OK ? m : nullptr;
}

TEST(ContextErrors, ImpossibleContextParams) {
    seaopt_model *m = nullptr;
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CPU;
    ASSERT_EQ(seaopt_model_load(good_model().c_str(), &mp, &m), SEAOPT_OK);
    seaopt_context_params cp = seaopt_context_default_params();
    seaopt_context *ctx = nullptr;
    cp.n_ctx = 65;  // the model has 64 learned positions
    EXPECT_EQ(seaopt_context_new(m, &cp, &ctx), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(seaopt_last_error()).find("64 learned positions"), std::string::npos) << seaopt_last_error();
    cp = seaopt_context_default_params();
    cp.n_seq_max = 0;
    EXPECT_EQ(seaopt_context_new(m, &cp, &ctx), SEAOPT_ERR_INVALID_ARGUMENT);
    cp = seaopt_context_default_params();
    cp.n_head_batch = 1u << 21;
    EXPECT_EQ(seaopt_context_new(m, &cp, &ctx), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(seaopt_last_error()).find("n_head_batch"), std::string::npos) << seaopt_last_error();
    cp = seaopt_context_default_params();
    cp.attention = SEAOPT_ATTENTION_SEA;
    EXPECT_EQ(seaopt_context_new(m, &cp, &ctx), SEAOPT_ERR_UNSUPPORTED);
    EXPECT_EQ(ctx, nullptr);
    seaopt_model_free(m);

    mp.vocab_only = true;
    ASSERT_EQ(seaopt_model_load(good_model().c_str(), &mp, &m), SEAOPT_OK);
    cp = seaopt_context_default_params();
    EXPECT_EQ(seaopt_context_new(m, &cp, &ctx), SEAOPT_ERR_INVALID_ARGUMENT);
    seaopt_model_free(m);

    // A vocab-only load calls the progress callback too (it never did: returning false could not cancel it).
    int calls = 0;
    mp.progress_callback = [](float progress, void *user) {
        ++*static_cast<int *>(user);
        return progress < 1.0f;  // cancel at the end
    };
    mp.progress_callback_user_data = &calls;
    m = nullptr;
    EXPECT_EQ(seaopt_model_load(good_model().c_str(), &mp, &m), SEAOPT_ERR_CANCELLED);
    EXPECT_EQ(m, nullptr);
    EXPECT_EQ(calls, 1);
}

TEST(ContextErrors, BadBatches) {
    Ctx c(16, 2, 4);
    std::vector<int32_t> ids = {2, 100, 200, 300, 400};
    seaopt_batch b = seaopt_batch_get_one(ids.data(), 5);
    EXPECT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_ERR_CONTEXT_FULL);  // n_batch = 4
    b.n_tokens = 0;
    EXPECT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_ERR_INVALID_ARGUMENT);
    std::vector<int32_t> bad = {2, 50272};
    b = seaopt_batch_get_one(bad.data(), 2);
    EXPECT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(seaopt_last_error()).find("50272"), std::string::npos);
    bad = {2, -1};
    EXPECT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_ERR_INVALID_ARGUMENT);
    const int32_t pos[2] = {0, 2};  // a gap
    b = seaopt_batch_get_one(ids.data(), 2);
    b.pos = pos;
    EXPECT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_ERR_INVALID_ARGUMENT);
    const int32_t seq[2] = {0, 2};  // n_seq_max = 2
    b.pos = nullptr;
    b.seq_id = seq;
    EXPECT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 0), 0);
    EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 1), 0);
    EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 2), -1);
    EXPECT_EQ(seaopt_decode(nullptr, &b), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_decode(c.ctx, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_kv_truncate(c.ctx, 5, 0), SEAOPT_ERR_INVALID_ARGUMENT);

    // Logits of a token that did not ask for them.
    b = seaopt_batch_get_one(ids.data(), 3);
    ASSERT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_OK) << seaopt_last_error();
    EXPECT_NE(seaopt_get_logits_ith(c.ctx, 2), nullptr);
    EXPECT_EQ(seaopt_get_logits_ith(c.ctx, 0), nullptr);
    EXPECT_NE(std::string(seaopt_last_error()).find("did not ask for logits"), std::string::npos);
    EXPECT_EQ(seaopt_get_logits_ith(c.ctx, 7), nullptr);

    // The last token's logits (-1) when no token of the batch asked for any: said so, not "batch index -1".
    std::vector<int8_t> none(2, 0);
    b = seaopt_batch_get_one(ids.data() + 3, 2);
    b.logits = none.data();
    ASSERT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_OK) << seaopt_last_error();
    EXPECT_EQ(seaopt_get_logits_ith(c.ctx, -1), nullptr);
    EXPECT_NE(std::string(seaopt_last_error()).find("no token of the last batch (2 tokens) asked for them"),
              std::string::npos)
        << seaopt_last_error();
}

// From an audit of the C API: limits that were missing or wrong.
TEST(ContextErrors, ThreadsBatchDefaultAndHugeBatches) {
    seaopt_model *m = load_cpu_model();
    ASSERT_NE(m, nullptr) << seaopt_last_error();
    seaopt_context_params cp = seaopt_context_default_params();
    seaopt_context *ctx = nullptr;
    cp.n_threads = 100000;  // crashed inside libgomp's thread start-up at the first decode
    EXPECT_EQ(seaopt_context_new(m, &cp, &ctx), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(seaopt_last_error()).find("n_threads"), std::string::npos) << seaopt_last_error();
    cp.n_threads = -1;
    EXPECT_EQ(seaopt_context_new(m, &cp, &ctx), SEAOPT_ERR_INVALID_ARGUMENT);
    // n_batch = 0: n_ctx * n_seq_max, capped at the limit instead of refusing a field never set (n_seq_max 1024 at
    // n_ctx 2048 was refused: "n_batch = 2097152 is too large").
    cp = seaopt_context_default_params();
    cp.n_ctx = 16;
    cp.n_seq_max = 4;
    ASSERT_EQ(seaopt_context_new(m, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
    EXPECT_EQ(seaopt_n_batch(ctx), 64u);
    // A batch far beyond n_batch is refused without storing it (it tried to allocate 24 GiB for INT_MAX tokens);
    // the tokens read before the refusal stay within the context's positions.
    std::vector<int32_t> ids(64, 100);
    seaopt_batch b = seaopt_batch_get_one(ids.data(), INT32_MAX);
    EXPECT_EQ(seaopt_decode(ctx, &b), SEAOPT_ERR_CONTEXT_FULL);
    EXPECT_NE(std::string(seaopt_last_error()).find("beyond the context"), std::string::npos) << seaopt_last_error();
    seaopt_context_free(ctx);
    cp.n_batch = 16;
    ASSERT_EQ(seaopt_context_new(m, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
    b.n_tokens = 17;  // within n_ctx for every sequence: more than n_batch
    std::vector<int32_t> seq(17);
    std::vector<int8_t> logits(17, 1);
    for (int i = 0; i < 17; ++i) seq[(size_t)i] = i % 4;
    b.seq_id = seq.data();
    b.logits = logits.data();
    EXPECT_EQ(seaopt_decode(ctx, &b), SEAOPT_ERR_CONTEXT_FULL);
    EXPECT_NE(std::string(seaopt_last_error()).find("n_batch = 16"), std::string::npos) << seaopt_last_error();
    for (int s = 0; s < 4; ++s) EXPECT_EQ(seaopt_kv_seq_len(ctx, s), 0);
    seaopt_context_free(ctx);
    cp.n_ctx = 0;
    cp.n_batch = 0;
    cp.n_seq_max = 1024;
    seaopt_memory_report est{};
    EXPECT_EQ(seaopt_context_memory_estimate(m, &cp, &est), SEAOPT_OK) << seaopt_last_error();
    seaopt_model_free(m);
}

// A log callback that calls the library (here: seaopt_log_set and a context) deadlocked on the log's lock.
int g_nested_logs = 0;
void reentrant_log(seaopt_log_level, const char *, void *) {
    ++g_nested_logs;
    seaopt_log_set(reentrant_log, nullptr);  // the same lock, the same thread
}
TEST(ContextErrors, LogCallbackMayCallTheLibrary) {
    seaopt_log_set(reentrant_log, nullptr);
    {
        Ctx c(8);  // logs at info level
        ASSERT_NE(c.ctx, nullptr);
    }
    seaopt_log_set(nullptr, nullptr);
    EXPECT_GT(g_nested_logs, 0);
}

// A file from seaopt-convert before 2026-11-29 ('<s>', '<unk>', '<mask>' typed CONTROL) loads as it is and says how
// to get Hugging Face's special tokens; a file from today's converter says nothing.
std::vector<std::string> g_warnings;
void keep_warnings(seaopt_log_level level, const char *text, void *) {
    if (level == SEAOPT_LOG_WARN) g_warnings.push_back(text);
}
TEST(ModelFileErrors, OldSpecialTokenTypesLoadWithAWarning) {
    const std::string old = rewrite("old-types", [](gguf::Writer &w) {
        gguf::MappedFile mf(good_model());
        const gguf::File f = gguf::parse(mf.data(), mf.size());
        std::vector<int32_t> types(f.find(keys::kTokTokenType)->int_array.begin(),
                                   f.find(keys::kTokTokenType)->int_array.end());
        for (int32_t id : {0, 3, 50264}) types[(size_t)id] = 3;  // CONTROL
        w.set(keys::kTokTokenType, gguf::Value::make_i32_array(types));
        w.set(keys::kTokUnk, gguf::Value::make_u32(3));  // '<unk>', as the old converter wrote
    });
    seaopt_log_set(keep_warnings, nullptr);
    for (const std::string &path : {old, good_model()}) {
        g_warnings.clear();
        seaopt_model_params p = seaopt_model_default_params();
        p.device = SEAOPT_DEVICE_CPU;
        p.vocab_only = true;
        seaopt_model *m = nullptr;
        ASSERT_EQ(seaopt_model_load(path.c_str(), &p, &m), SEAOPT_OK) << seaopt_last_error();
        std::string all;
        for (const std::string &w : g_warnings) all += w;
        if (path == old) {
            EXPECT_NE(all.find("marks '<s>', '<unk>' and '<mask>' as special tokens"), std::string::npos) << all;
            EXPECT_NE(all.find("Re-convert the checkpoint"), std::string::npos) << all;
            seaopt_token ids[4];
            int32_t n = 0;
            ASSERT_EQ(seaopt_tokenize(m, "<s>", 3, false, true, ids, 4, &n), SEAOPT_OK);
            EXPECT_EQ(n, 1);  // as the file says
        } else {
            EXPECT_EQ(all.find("special tokens"), std::string::npos) << all;
        }
        seaopt_model_free(m);
    }
    seaopt_log_set(nullptr, nullptr);
}

// tokenizer.seaopt.added_token_ids / _flags (the AddedToken options of added tokens): damaged or inconsistent
// values are refused, naming the key; good ones load and act (a USER_DEFINED token with lstrip takes the space).
TEST(ModelFileErrors, AddedTokenFlags) {
    using gguf::Value;
    auto with = [](const std::string &name, std::vector<int32_t> ids, std::vector<int32_t> flags, int32_t type_of_50265) {
        return rewrite(name, [=](gguf::Writer &w) {
            gguf::MappedFile mf(good_model());
            const gguf::File f = gguf::parse(mf.data(), mf.size());
            std::vector<int32_t> types(f.find(keys::kTokTokenType)->int_array.begin(),
                                       f.find(keys::kTokTokenType)->int_array.end());
            std::vector<std::string> tokens = f.get_str_array(keys::kTokTokens);
            types[50265] = type_of_50265;
            tokens[50265] = "<|x|>";
            w.set(keys::kTokTokenType, Value::make_i32_array(types));
            w.set(keys::kTokTokens, Value::make_str_array(tokens));
            if (!ids.empty() || !flags.empty()) {
                w.set(keys::kTokAddedIds, Value::make_i32_array(ids));
                w.set(keys::kTokAddedFlags, Value::make_i32_array(flags));
            }
        });
    };
    const std::string good = with("added-good", {50265}, {(int32_t)seaopt::kAddedLstrip}, 4);
    seaopt_model_params p = seaopt_model_default_params();
    p.device = SEAOPT_DEVICE_CPU;
    p.vocab_only = true;
    seaopt_model *m = nullptr;
    ASSERT_EQ(seaopt_model_load(good.c_str(), &p, &m), SEAOPT_OK) << seaopt_last_error();
    seaopt_token ids[8];
    int32_t n = 0;
    ASSERT_EQ(seaopt_tokenize(m, "a  <|x|>b", 9, false, false, ids, 8, &n), SEAOPT_OK);  // USER_DEFINED: always split
    EXPECT_EQ(std::vector<seaopt_token>(ids, ids + n), std::vector<seaopt_token>({102, 50265, 428}));
    seaopt_model_free(m);

    expect_load_error(with("added-range", {50272}, {0}, 4), SEAOPT_ERR_MODEL_FORMAT,
                      "key tokenizer.seaopt.added_token_ids: entry 0 (50272) is not a token id");
    expect_load_error(with("added-bits", {50265}, {16}, 4), SEAOPT_ERR_MODEL_FORMAT,
                      "key tokenizer.seaopt.added_token_flags: entry 0 (16) has unknown bits");
    expect_load_error(with("added-len", {50265, 2}, {0}, 4), SEAOPT_ERR_MODEL_FORMAT,
                      "has 2 entries but tokenizer.seaopt.added_token_flags has 1");
    expect_load_error(with("added-normal", {5}, {1}, 4), SEAOPT_ERR_MODEL_FORMAT,
                      "flags of id 5: that token is not an added token");
    expect_load_error(with("added-twice", {50265, 50265}, {1, 2}, 4), SEAOPT_ERR_MODEL_FORMAT,
                      "flags of id 50265: given twice");
    expect_load_error(rewrite("added-alone", [](gguf::Writer &w) { w.set(keys::kTokAddedIds, Value::make_i32_array({2})); }),
                      SEAOPT_ERR_MODEL_FORMAT, "key tokenizer.seaopt.added_token_flags is missing");
    expect_load_error(rewrite("added-type", [](gguf::Writer &w) {
                          w.set(keys::kTokAddedIds, Value::make_str_array({"2"}));
                          w.set(keys::kTokAddedFlags, Value::make_i32_array({0}));
                      }),
                      SEAOPT_ERR_MODEL_FORMAT, "key tokenizer.seaopt.added_token_ids must be an array of integers");
}

// A FIFO as a model or state path blocked open() until a writer came.
TEST(ModelFileErrors, FifoIsNotARegularFile) {
    const std::string fifo = temp_dir() + "/a.fifo";
    fs::remove(fifo);
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    seaopt_model *m = nullptr;
    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CPU;
    EXPECT_EQ(seaopt_model_load(fifo.c_str(), &mp, &m), SEAOPT_ERR_IO);
    EXPECT_NE(std::string(seaopt_last_error()).find("not a regular file"), std::string::npos) << seaopt_last_error();
    Ctx c(8);
    EXPECT_EQ(seaopt_state_seq_load_file(c.ctx, 0, fifo.c_str()), SEAOPT_ERR_IO);
    fs::remove(fifo);
}

TEST(TokenizeErrors, InvalidUtf8AndSmallBuffers) {
    seaopt_model *m = nullptr;
    seaopt_model_params mp = seaopt_model_default_params();
    mp.vocab_only = true;
    ASSERT_EQ(seaopt_model_load(good_model().c_str(), &mp, &m), SEAOPT_OK) << seaopt_last_error();
    int32_t toks[8];
    int32_t n = 0;
    const char bad[] = "ab\xC3\x28";
    EXPECT_EQ(seaopt_tokenize(m, bad, 4, true, false, toks, 8, &n), SEAOPT_ERR_INVALID_UTF8);
    EXPECT_NE(std::string(seaopt_last_error()).find("2"), std::string::npos) << seaopt_last_error();
    const char *hello = "Hello world! cécé herlolip";
    EXPECT_EQ(seaopt_tokenize(m, hello, std::strlen(hello), true, false, toks, 3, &n), SEAOPT_ERR_BUFFER_TOO_SMALL);
    EXPECT_EQ(n, 10);
    std::vector<int32_t> all(10);
    ASSERT_EQ(seaopt_tokenize(m, hello, std::strlen(hello), true, false, all.data(), 10, &n), SEAOPT_OK);
    EXPECT_EQ(all, (std::vector<int32_t>{2, 31414, 232, 328, 740, 1140, 12695, 69, 46078, 1588}));
    char buf[64];
    size_t len = 0;
    EXPECT_EQ(seaopt_detokenize(m, all.data(), 10, true, buf, 4, &len), SEAOPT_ERR_BUFFER_TOO_SMALL);
    EXPECT_EQ(len, std::strlen(hello));
    ASSERT_EQ(seaopt_detokenize(m, all.data(), 10, true, buf, sizeof buf, &len), SEAOPT_OK);
    EXPECT_EQ(std::string(buf, len), hello);
    EXPECT_EQ(seaopt_token_to_piece(m, 50272, buf, sizeof buf, &len), SEAOPT_ERR_INVALID_ARGUMENT);
    seaopt_model_free(m);
}

}  // namespace

// The fuzz target's check (tests/fuzz/model_load_target.h) over random mutations of a valid file: 1-4 bytes set at
// random in the metadata, the tensor table or anywhere before the data, or the file cut short. Every mutant must load
// or be refused with a seaopt::Error (CI also runs this under AddressSanitizer and UBSan).
// Random byte changes in the header (and truncations) of a model file: each loads or is refused with a format error.
void mutate_and_load(const std::string &path) {
    const std::vector<uint8_t> good = read_all(path);
    ASSERT_TRUE(seaopt_fuzz::load_model_bytes(good.data(), good.size()));
    const gguf::File f = gguf::parse(good.data(), good.size());
    const size_t header = f.data_offset;
    size_t tensor_table = header;  // the tensor infos end the header: the last ~48 bytes per tensor before the data
    tensor_table -= std::min(header, f.tensors.size() * 48);
    std::mt19937_64 rng(2026);
    int loaded = 0, refused = 0;
    for (int iter = 0; iter < 400; ++iter) {
        std::vector<uint8_t> m = good;
        const int n_changes = 1 + (int)(rng() % 4);
        for (int c = 0; c < n_changes; ++c) {
            const int where = (int)(rng() % 4);
            const size_t pos = where == 0   ? rng() % std::min<size_t>(header, 4096)  // magic, counts, first keys
                               : where == 1 ? tensor_table + rng() % (header - tensor_table)
                                            : rng() % header;
            m[pos] = (uint8_t)rng();
        }
        if (rng() % 8 == 0) m.resize(rng() % m.size());
        seaopt_status code = SEAOPT_OK;
        if (seaopt_fuzz::load_model_bytes(m.data(), m.size(), &code)) {
            ++loaded;
        } else {
            ++refused;
            EXPECT_TRUE(code == SEAOPT_ERR_MODEL_FORMAT || code == SEAOPT_ERR_UNSUPPORTED ||
                        code == SEAOPT_ERR_OUT_OF_MEMORY)
                << "iteration " << iter << ": code " << code;
        }
        if (::testing::Test::HasFailure()) break;
    }
    std::printf("random mutations of %s: %d loaded, %d refused\n", path.c_str(), loaded, refused);
    EXPECT_GT(refused, 0);
}

TEST(ModelFileErrors, RandomMutationsLoadOrFailCleanly) { mutate_and_load(good_model()); }

// The same over a file whose matrices are Q8_0 (its tensor types and sizes take the block paths of the reader).
TEST(ModelFileErrors, RandomMutationsOfAQ8_0FileLoadOrFailCleanly) {
    mutate_and_load(rewrite_q8("q8mut", is_block_matrix));
}

// engine/omp_error.h: an exception thrown inside an OpenMP region (a bad_alloc of per-thread scratch in the CPU
// engine) comes back after the region as that exception, instead of ending the process in std::terminate.
TEST(OmpFirstError, ExceptionsInARegionAreRethrownAfterIt) {
    seaopt::OmpFirstError error;
    int done = 0;
#pragma omp parallel for num_threads(4) reduction(+ : done)
    for (int i = 0; i < 64; ++i) {
        error.run([&] {
            if (i == 37) throw std::bad_alloc();
            ++done;
        });
    }
    EXPECT_EQ(done, 63);  // the other bodies ran
    EXPECT_THROW(error.rethrow(), std::bad_alloc);
    seaopt::OmpFirstError none;
    none.run([] {});
    EXPECT_NO_THROW(none.rethrow());
}
