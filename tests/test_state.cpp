// Saved and copied sequences (seaopt_state_seq_*, engine/state.h; seaopt_kv_seq_cp) on the CPU engine, with the
// build's demo models (dense: models/opt-tiny-untrained.gguf; SEA: models/opt-tiny-sea-untrained.gguf). The oracle
// is the context that saved the state: a restored (or copied) sequence must continue with exactly the logits the
// original continues with. Then every way a state can be wrong: another model, other attention settings, too many
// tokens, damaged bytes -- each refused, leaving the sequence as it was. The GPU engine's side (fp16 caches, states across engines): test_gpu_engine.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/fp16.h"
#include "seaopt.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

const std::string kDenseModel = SEAOPT_BINARY_DIR "/models/opt-tiny-untrained.gguf";
const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";

std::vector<int32_t> test_ids(size_t n, uint32_t seed = 777) { return seaopt_test::lcg_token_ids(n, seed); }

using ModelHandle = seaopt_test::CpuModel;

struct Ctx {
    seaopt_context *ctx = nullptr;
    int32_t n_vocab = 0;
    Ctx(seaopt_model *model, uint32_t n_ctx, uint32_t n_seq = 1, seaopt_attention attention = SEAOPT_ATTENTION_DENSE,
        const char *sea_layers = nullptr, int32_t sea_k = 0) {
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = n_ctx;
        cp.n_seq_max = n_seq;
        cp.n_threads = 2;
        cp.attention = attention;
        cp.sea_layers = sea_layers;
        cp.sea_k = sea_k;
        EXPECT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
        n_vocab = seaopt_model_n_vocab(model);
    }
    ~Ctx() { seaopt_context_free(ctx); }

    // Tokens [from, to) of ids into sequence seq as one batch; the logits of the last.
    std::vector<float> run(const std::vector<int32_t> &ids, size_t from, size_t to, int32_t seq = 0) {
        std::vector<int32_t> seqs(to - from, seq);
        seaopt_batch b = seaopt_batch_get_one(ids.data() + from, (int32_t)(to - from));
        b.seq_id = seqs.data();
        EXPECT_EQ(seaopt_decode(ctx, &b), SEAOPT_OK) << seaopt_last_error();
        const float *lg = seaopt_get_logits_ith(ctx, -1);
        return lg ? std::vector<float>(lg, lg + n_vocab) : std::vector<float>();
    }
    // Tokens [from, to) one at a time: each step's logits.
    std::vector<std::vector<float>> steps(const std::vector<int32_t> &ids, size_t from, size_t to, int32_t seq = 0) {
        std::vector<std::vector<float>> rows;
        for (size_t t = from; t < to; ++t) rows.push_back(run(ids, t, t + 1, seq));
        return rows;
    }
    std::vector<uint8_t> save(int32_t seq = 0) {
        size_t size = 0, written = 0;
        EXPECT_EQ(seaopt_state_seq_get_size(ctx, seq, &size), SEAOPT_OK) << seaopt_last_error();
        std::vector<uint8_t> blob(size);
        EXPECT_EQ(seaopt_state_seq_get_data(ctx, seq, blob.data(), blob.size(), &written), SEAOPT_OK)
            << seaopt_last_error();
        EXPECT_EQ(written, size);
        return blob;
    }
    seaopt_status load(const std::vector<uint8_t> &blob, int32_t seq = 0) {
        return seaopt_state_seq_set_data(ctx, seq, blob.data(), blob.size());
    }
    std::vector<int32_t> tokens(int32_t seq = 0) {
        const int32_t n = seaopt_kv_seq_tokens(ctx, seq, nullptr, 0);
        std::vector<int32_t> out((size_t)std::max(n, 0));
        EXPECT_EQ(seaopt_kv_seq_tokens(ctx, seq, out.data(), (int32_t)out.size()), n);
        return out;
    }
};

std::string last_error() { return seaopt_last_error(); }

// The documented checksum (engine/state.h), written out again here.
uint64_t state_checksum(const uint8_t *p, size_t n) {
    const uint64_t basis = 0xcbf29ce484222325ull, prime = 0x100000001b3ull;
    auto word = [p](size_t at) {
        uint64_t w;
        std::memcpy(&w, p + at, 8);
        return w;
    };
    uint64_t lanes[4] = {basis, basis, basis, basis};
    const size_t blocks = n / 32;
    for (size_t b = 0; b < blocks; ++b)
        for (size_t j = 0; j < 4; ++j) lanes[j] = (lanes[j] ^ word(b * 32 + j * 8)) * prime;
    uint64_t h = basis;
    for (uint64_t l : lanes) h = (h ^ l) * prime;
    size_t i = blocks * 32;
    for (; i + 8 <= n; i += 8) h = (h ^ word(i)) * prime;
    for (; i < n; ++i) h = (h ^ p[i]) * prime;
    return h;
}
void reseal(std::vector<uint8_t> &blob) {
    const uint64_t sum = state_checksum(blob.data(), blob.size() - 8);
    std::memcpy(blob.data() + blob.size() - 8, &sum, 8);
}
uint32_t u32_at(const std::vector<uint8_t> &blob, size_t at) {
    uint32_t v;
    std::memcpy(&v, blob.data() + at, 4);
    return v;
}

// Save after a prompt (and some single steps), continue the original; restore into another context (and another
// sequence id) and continue it with the same tokens: the same logits, bit for bit (same engine, same threads).
void expect_round_trip(const std::string &path, seaopt_attention attention) {
    ModelHandle m(path);
    const std::vector<int32_t> ids = test_ids(48);
    Ctx original(m.m, 64, 1, attention);
    original.run(ids, 0, 30);
    original.steps(ids, 30, 33);  // the SEA history rings at a position that is not a multiple of 4
    const std::vector<uint8_t> blob = original.save();
    const std::vector<std::vector<float>> want = original.steps(ids, 33, 45);

    Ctx restored(m.m, 64, 2, attention);
    restored.run(ids, 0, 5, 1);  // something to be replaced
    ASSERT_EQ(restored.load(blob, 1), SEAOPT_OK) << last_error();
    EXPECT_EQ(seaopt_kv_seq_len(restored.ctx, 1), 33);
    EXPECT_EQ(restored.tokens(1), std::vector<int32_t>(ids.begin(), ids.begin() + 33));
    const std::vector<std::vector<float>> got = restored.steps(ids, 33, 45, 1);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(got[i] == want[i]) << "step " << i << " differs";
    // A second save of the restored sequence, at the same point, is the same blob.
    Ctx again(m.m, 64, 1, attention);
    ASSERT_EQ(again.load(blob), SEAOPT_OK) << last_error();
    EXPECT_TRUE(again.save() == blob);
}

}  // namespace

TEST(State, DenseSequenceContinuesExactlyAfterRestore) { expect_round_trip(kDenseModel, SEAOPT_ATTENTION_DENSE); }

TEST(State, SeaSequenceContinuesExactlyAfterRestore) { expect_round_trip(kSeaModel, SEAOPT_ATTENTION_SEA); }

// The SEA decode states are part of the state: restoring the keys and values alone (the states of another
// sequence's) does not continue the same way. Guards against a test that would pass with states ignored.
TEST(State, SeaStatesMatter) {
    ModelHandle m(kSeaModel);
    const std::vector<int32_t> ids = test_ids(48), other = test_ids(48, 99);
    Ctx a(m.m, 64, 1, SEAOPT_ATTENTION_SEA), b(m.m, 64, 1, SEAOPT_ATTENTION_SEA);
    a.run(ids, 0, 33);
    b.run(other, 0, 33);
    std::vector<uint8_t> mixed = a.save();
    const std::vector<uint8_t> from_b = b.save();
    // The two layers' SEA states sit between the keys and values and the checksum (engine/state.h).
    const size_t H = u32_at(mixed, 24), K = u32_at(mixed, 48), m_feat = u32_at(mixed, 52);
    const size_t state_bytes = 4 * (H * m_feat + H * m_feat * 128 + H * 64 + 2 * 4 * 2 * H * (K / 4));
    const size_t sea_at = mixed.size() - 8 - 2 * state_bytes;
    std::memcpy(mixed.data() + sea_at, from_b.data() + sea_at, 2 * state_bytes);
    reseal(mixed);
    const std::vector<std::vector<float>> want = a.steps(ids, 33, 40);
    Ctx c(m.m, 64, 1, SEAOPT_ATTENTION_SEA);
    ASSERT_EQ(c.load(mixed), SEAOPT_OK) << last_error();
    const std::vector<std::vector<float>> got = c.steps(ids, 33, 40);
    size_t differ = 0;
    for (size_t i = 0; i < want.size(); ++i) differ += got[i] != want[i];
    EXPECT_EQ(differ, want.size()) << "another sequence's SEA states gave the same logits";
}

// The documented layout, read back here independently: the keys and values of the CPU engine (f32) rewritten as
// f16 (what the GPU engine saves) load on the CPU and continue within fp16 rounding of the original.
TEST(State, KeysAndValuesInF16AreRead) {
    ModelHandle m(kDenseModel);
    const std::vector<int32_t> ids = test_ids(40);
    Ctx a(m.m, 64);
    a.run(ids, 0, 30);
    const std::vector<uint8_t> blob = a.save();
    const std::vector<std::vector<float>> want = a.steps(ids, 30, 36);
    ASSERT_EQ(u32_at(blob, 56), 0u);  // kv type f32
    const uint32_t n_layer = u32_at(blob, 20), n_embd = u32_at(blob, 16), n = u32_at(blob, 60);
    const size_t kv_at = 64 + (n_layer + 3) / 4 * 4 + (size_t)n * 4, count = 2ull * n_layer * n * n_embd;
    std::vector<uint8_t> f16(blob.begin(), blob.begin() + (ptrdiff_t)kv_at);
    const uint32_t kv_f16 = 1;
    std::memcpy(f16.data() + 56, &kv_f16, 4);
    for (size_t i = 0; i < count; ++i) {
        float x;
        std::memcpy(&x, blob.data() + kv_at + i * 4, 4);
        const uint16_t h = seaopt::f32_to_f16(x);
        f16.insert(f16.end(), (const uint8_t *)&h, (const uint8_t *)&h + 2);
    }
    f16.insert(f16.end(), blob.end() - 8, blob.end());
    reseal(f16);
    Ctx b(m.m, 64);
    ASSERT_EQ(b.load(f16), SEAOPT_OK) << last_error();
    const std::vector<std::vector<float>> got = b.steps(ids, 30, 36);
    double worst = 0, spread = 0;
    bool identical = true;
    for (size_t i = 0; i < want.size(); ++i) {
        for (size_t v = 0; v < want[i].size(); ++v) {
            worst = std::max(worst, (double)std::fabs(got[i][v] - want[i][v]));
            spread = std::max(spread, (double)std::fabs(want[i][v]));
            identical &= got[i][v] == want[i][v];
        }
    }
    EXPECT_FALSE(identical) << "the f16 keys and values were not used";
    EXPECT_LE(worst, 0.01 * spread) << "the f16 keys and values were misread";
}

TEST(State, FilesAreWrittenAtomically) {
    ModelHandle m(kSeaModel);
    const std::vector<int32_t> ids = test_ids(40);
    Ctx a(m.m, 64, 1, SEAOPT_ATTENTION_SEA);
    a.run(ids, 0, 25);
    const std::string path = seaopt_test::temp_dir() + "/state-sea.bin";
    fs::remove(path);
    ASSERT_EQ(seaopt_state_seq_save_file(a.ctx, 0, path.c_str()), SEAOPT_OK) << last_error();
    for (const auto &entry : fs::directory_iterator(seaopt_test::temp_dir())) {
        EXPECT_EQ(entry.path().filename().string().find("state-sea.bin.tmp"), std::string::npos) << entry.path();
    }
    EXPECT_EQ(fs::file_size(path), a.save().size());
    // The file's permissions follow the umask as open(0666) would (not mkstemp's 0600, not a fixed 0644): a prompt
    // cache holds the prompt's tokens.
    for (const mode_t mask : {(mode_t)077, (mode_t)022}) {
        const mode_t old = ::umask(mask);
        ASSERT_EQ(seaopt_state_seq_save_file(a.ctx, 0, path.c_str()), SEAOPT_OK) << last_error();
        ::umask(old);
        struct stat st {};
        ASSERT_EQ(::stat(path.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0666 & ~mask) << "umask " << std::oct << mask;
    }
    const std::vector<std::vector<float>> want = a.steps(ids, 25, 30);
    Ctx b(m.m, 64, 1, SEAOPT_ATTENTION_SEA);
    ASSERT_EQ(seaopt_state_seq_load_file(b.ctx, 0, path.c_str()), SEAOPT_OK) << last_error();
    EXPECT_TRUE(b.steps(ids, 25, 30) == want);

    // Onto something that is not a regular file: refused, left alone.
    EXPECT_EQ(seaopt_state_seq_save_file(a.ctx, 0, seaopt_test::temp_dir().c_str()), SEAOPT_ERR_IO);
    EXPECT_NE(last_error().find("not a regular file"), std::string::npos) << last_error();
    EXPECT_TRUE(fs::is_directory(seaopt_test::temp_dir()));
    // A directory that does not exist: an I/O error naming the file, and nothing written.
    const std::string bad = seaopt_test::temp_dir() + "/no-such-dir/state.bin";
    EXPECT_EQ(seaopt_state_seq_save_file(a.ctx, 0, bad.c_str()), SEAOPT_ERR_IO);
    EXPECT_NE(last_error().find("no-such-dir"), std::string::npos) << last_error();
    EXPECT_EQ(seaopt_state_seq_load_file(b.ctx, 0, bad.c_str()), SEAOPT_ERR_IO);
    EXPECT_EQ(seaopt_state_seq_load_file(b.ctx, 0, seaopt_test::temp_dir().c_str()), SEAOPT_ERR_IO);  // a directory
    // An empty file and a model file are not states.
    const std::string empty = seaopt_test::temp_dir() + "/empty-state.bin";
    { std::FILE *f = std::fopen(empty.c_str(), "wb"); std::fclose(f); }
    EXPECT_EQ(seaopt_state_seq_load_file(b.ctx, 0, empty.c_str()), SEAOPT_ERR_MODEL_FORMAT);
    EXPECT_EQ(seaopt_state_seq_load_file(b.ctx, 0, kSeaModel.c_str()), SEAOPT_ERR_MODEL_FORMAT);
    EXPECT_NE(last_error().find("not a seaopt sequence state"), std::string::npos) << last_error();
    EXPECT_EQ(seaopt_kv_seq_len(b.ctx, 0), 30);
}

TEST(State, AnEmptySequenceStateEmptiesTheSequence) {
    const std::vector<std::pair<std::string, seaopt_attention>> models = {{kDenseModel, SEAOPT_ATTENTION_DENSE},
                                                                          {kSeaModel, SEAOPT_ATTENTION_SEA}};
    for (const auto &[path, attention] : models) {
        ModelHandle m(path);
        const std::vector<int32_t> ids = test_ids(20);
        Ctx a(m.m, 32, 1, attention), b(m.m, 32, 1, attention);
        const std::vector<uint8_t> empty = a.save();
        b.run(ids, 0, 10);
        ASSERT_EQ(b.load(empty), SEAOPT_OK) << last_error();
        EXPECT_EQ(seaopt_kv_seq_len(b.ctx, 0), 0);
        EXPECT_TRUE(b.tokens().empty());
        // It starts again from position 0, as a fresh context does.
        EXPECT_TRUE(b.run(ids, 0, 12) == a.run(ids, 0, 12));
    }
}

TEST(State, StatesFromAnotherModelOrAttentionAreRefused) {
    ModelHandle dense(kDenseModel), sea(kSeaModel);
    const std::vector<int32_t> ids = test_ids(40);
    Ctx dense_ctx(dense.m, 64), sea_ctx(sea.m, 64, 1, SEAOPT_ATTENTION_SEA);
    dense_ctx.run(ids, 0, 30);
    sea_ctx.run(ids, 0, 30);
    const std::vector<uint8_t> dense_state = dense_ctx.save(), sea_state = sea_ctx.save();

    // The same checkpoint converted to f32: the same shape, other weight bytes.
    const std::string f32_path = seaopt_test::temp_dir() + "/opt-tiny-untrained-f32.gguf";
    const seaopt_test::Result conv = seaopt_test::run({SEAOPT_BINARY_DIR "/bin/seaopt-convert",
                                                       SEAOPT_BINARY_DIR "/models/opt-tiny-untrained-hf", "-o", f32_path,
                                                       "--outtype", "f32", "--no-progress"});
    ASSERT_TRUE(conv.exited && conv.status == 0) << seaopt_test::describe(conv);
    ModelHandle dense_f32(f32_path);

    struct Case {
        const char *what;
        seaopt_model *model;
        seaopt_attention attention;
        const char *layers;
        int32_t sea_k;
        uint32_t n_ctx;
        const std::vector<uint8_t> *blob;
        seaopt_status status;
        const char *message;
    };
    const Case cases[] = {
        {"dense state, SEA context", sea.m, SEAOPT_ATTENTION_SEA, nullptr, 0, 64, &dense_state,
         SEAOPT_ERR_INVALID_ARGUMENT, "another shape"},
        {"SEA state, dense context of the SEA model", sea.m, SEAOPT_ATTENTION_DENSE, nullptr, 0, 64, &sea_state,
         SEAOPT_ERR_INVALID_ARGUMENT, "this context runs dense attention"},
        {"SEA state, SEA in layer 1 only", sea.m, SEAOPT_ATTENTION_SEA, "1", 0, 64, &sea_state,
         SEAOPT_ERR_INVALID_ARGUMENT, "layers 0-1"},
        {"SEA state, another k", sea.m, SEAOPT_ATTENTION_SEA, nullptr, 2, 64, &sea_state,
         SEAOPT_ERR_INVALID_ARGUMENT, "k 4"},
        {"same shape, other weights", dense_f32.m, SEAOPT_ATTENTION_DENSE, nullptr, 0, 64, &dense_state,
         SEAOPT_ERR_INVALID_ARGUMENT, "another model"},
        {"more tokens than n_ctx", dense.m, SEAOPT_ATTENTION_DENSE, nullptr, 0, 16, &dense_state,
         SEAOPT_ERR_CONTEXT_FULL, "n_ctx = 16"},
    };
    for (const Case &c : cases) {
        SCOPED_TRACE(c.what);
        Ctx target(c.model, c.n_ctx, 1, c.attention, c.layers, c.sea_k);
        target.run(ids, 0, 7);
        const std::vector<float> before = target.run(ids, 7, 8);
        EXPECT_EQ(target.load(*c.blob), c.status);
        EXPECT_NE(last_error().find(c.message), std::string::npos) << last_error();
        // Untouched: the same length and tokens, and it continues as a twin that never saw the state.
        EXPECT_EQ(seaopt_kv_seq_len(target.ctx, 0), 8);
        EXPECT_EQ(target.tokens(), std::vector<int32_t>(ids.begin(), ids.begin() + 8));
        Ctx twin(c.model, c.n_ctx, 1, c.attention, c.layers, c.sea_k);
        twin.run(ids, 0, 7);
        twin.run(ids, 7, 8);
        EXPECT_TRUE(target.run(ids, 8, 9) == twin.run(ids, 8, 9));
    }
}

TEST(State, DamagedStatesAreRefused) {
    ModelHandle m(kSeaModel);
    const std::vector<int32_t> ids = test_ids(24);
    Ctx a(m.m, 32, 1, SEAOPT_ATTENTION_SEA);
    a.run(ids, 0, 9);
    const std::vector<uint8_t> good = a.save();
    Ctx target(m.m, 32, 1, SEAOPT_ATTENTION_SEA);
    target.run(ids, 0, 5);
    auto expect_refused = [&](std::vector<uint8_t> blob, const char *message) {
        const seaopt_status st = target.load(blob);
        EXPECT_TRUE(st == SEAOPT_ERR_MODEL_FORMAT || st == SEAOPT_ERR_INVALID_ARGUMENT || st == SEAOPT_ERR_UNSUPPORTED ||
                    st == SEAOPT_ERR_CONTEXT_FULL)
            << seaopt_status_name(st) << " " << message;
        if (*message) {
            EXPECT_NE(last_error().find(message), std::string::npos) << last_error();
        }
        EXPECT_EQ(seaopt_kv_seq_len(target.ctx, 0), 5);
    };
    expect_refused({}, "not a seaopt sequence state");
    expect_refused(std::vector<uint8_t>(good.begin(), good.begin() + 40), "not a seaopt sequence state");
    expect_refused(std::vector<uint8_t>(good.begin(), good.end() - 1), "truncated");
    std::vector<uint8_t> longer = good;
    longer.push_back(0);
    expect_refused(longer, "trailing bytes");
    std::vector<uint8_t> magic = good;
    magic[0] = 'X';
    expect_refused(magic, "not a seaopt sequence state");
    std::vector<uint8_t> version = good;
    version[8] = 2;
    expect_refused(version, "version 2");
    std::vector<uint8_t> token = good;
    const int32_t bad_id = 60000;
    std::memcpy(token.data() + 64 + 4, &bad_id, 4);  // the first token (after the 2 layer flags, padded to 4)
    reseal(token);
    expect_refused(token, "outside the vocabulary");
    std::vector<uint8_t> n_tokens = good;
    const uint32_t huge = 1u << 30;
    std::memcpy(n_tokens.data() + 60, &huge, 4);
    expect_refused(n_tokens, "positions");
    // A damaged SEA field (k at byte 44) reads as corrupt, not as "saved by a context running SEA (k 5) ..."
    // against the same settings (the checksum is checked before the compatibility).
    std::vector<uint8_t> sea_k = good;
    sea_k[44] ^= 1;
    expect_refused(sea_k, "the checksum does not match");
    EXPECT_EQ(target.load(sea_k), SEAOPT_ERR_MODEL_FORMAT);
    // Every single flipped byte is caught (the checksum covers what the header checks do not).
    std::mt19937 rng(5);
    for (int i = 0; i < 300; ++i) {
        std::vector<uint8_t> flipped = good;
        const size_t at = rng() % flipped.size();
        flipped[at] ^= (uint8_t)(1u << (rng() % 8));
        SCOPED_TRACE(testing::Message() << "byte " << at);
        expect_refused(flipped, "");
    }
    ASSERT_EQ(target.load(good), SEAOPT_OK) << last_error();  // and the original still loads
    EXPECT_EQ(seaopt_kv_seq_len(target.ctx, 0), 9);
}

TEST(State, ArgumentsAreChecked) {
    ModelHandle m(kDenseModel);
    Ctx a(m.m, 32, 2);
    const std::vector<int32_t> ids = test_ids(10);
    a.run(ids, 0, 10);
    size_t size = 0, written = 0;
    ASSERT_EQ(seaopt_state_seq_get_size(a.ctx, 0, &size), SEAOPT_OK);
    std::vector<uint8_t> small(size - 1);
    EXPECT_EQ(seaopt_state_seq_get_data(a.ctx, 0, small.data(), small.size(), &written), SEAOPT_ERR_BUFFER_TOO_SMALL);
    EXPECT_EQ(written, size);
    EXPECT_EQ(seaopt_state_seq_get_data(a.ctx, 0, nullptr, 0, &written), SEAOPT_ERR_BUFFER_TOO_SMALL);
    EXPECT_EQ(seaopt_state_seq_get_size(a.ctx, 2, &size), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_state_seq_get_size(a.ctx, -1, &size), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_state_seq_get_size(nullptr, 0, &size), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_state_seq_get_size(a.ctx, 0, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_state_seq_set_data(a.ctx, 0, nullptr, 100), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_state_seq_save_file(a.ctx, 0, nullptr), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_state_seq_load_file(a.ctx, 5, "x"), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_kv_seq_tokens(a.ctx, 2, nullptr, 0), -1);
    EXPECT_EQ(seaopt_kv_seq_tokens(nullptr, 0, nullptr, 0), -1);
}

// The context keeps each sequence's tokens through every way it grows or shrinks.
TEST(State, SequenceTokensFollowTheCache) {
    ModelHandle m(kDenseModel);
    Ctx a(m.m, 64, 2);
    const std::vector<int32_t> ids = test_ids(40);
    a.run(ids, 0, 10);
    a.run(ids, 10, 12);
    EXPECT_EQ(a.tokens(), std::vector<int32_t>(ids.begin(), ids.begin() + 12));
    int32_t first3[3] = {-1, -1, -1};
    EXPECT_EQ(seaopt_kv_seq_tokens(a.ctx, 0, first3, 3), 12);  // a shorter buffer gets the first ones
    EXPECT_EQ(std::vector<int32_t>(first3, first3 + 3), std::vector<int32_t>(ids.begin(), ids.begin() + 3));
    // decode_nll grows the sequence too.
    std::vector<int32_t> targets(ids.begin() + 13, ids.begin() + 17);
    std::vector<float> nll(4);
    seaopt_batch b = seaopt_batch_get_one(ids.data() + 12, 4);
    ASSERT_EQ(seaopt_decode_nll(a.ctx, &b, targets.data(), nll.data()), SEAOPT_OK) << last_error();
    EXPECT_EQ(a.tokens(), std::vector<int32_t>(ids.begin(), ids.begin() + 16));
    // Greedy generation: the token given and every pick but the last are decoded.
    int32_t picks[5];
    ASSERT_EQ(seaopt_generate_greedy(a.ctx, 0, ids[16], 5, picks), SEAOPT_OK) << last_error();
    std::vector<int32_t> want(ids.begin(), ids.begin() + 17);
    want.insert(want.end(), picks, picks + 4);
    EXPECT_EQ(a.tokens(), want);
    EXPECT_EQ(seaopt_kv_seq_len(a.ctx, 0), (int32_t)want.size());
    // A failed batch adds nothing; truncate and clear take tokens away.
    const int32_t bad = -5;
    seaopt_batch fail = seaopt_batch_get_one(&bad, 1);
    EXPECT_NE(seaopt_decode(a.ctx, &fail), SEAOPT_OK);
    EXPECT_EQ(a.tokens(), want);
    ASSERT_EQ(seaopt_kv_truncate(a.ctx, 0, 6), SEAOPT_OK);
    EXPECT_EQ(a.tokens(), std::vector<int32_t>(ids.begin(), ids.begin() + 6));
    a.run(ids, 0, 3, 1);
    seaopt_kv_clear(a.ctx);
    EXPECT_TRUE(a.tokens(0).empty());
    EXPECT_TRUE(a.tokens(1).empty());
}

namespace {

// seaopt_kv_seq_cp: a prompt decoded once in sequence 0, copied to sequences 1 and 2 (2 held other tokens), then
// all three continued with the same tokens in one batch: the same logits as sequence 0 alone, bit for bit.
void expect_copies_continue_alike(const std::string &path, seaopt_attention attention) {
    ModelHandle m(path);
    const std::vector<int32_t> ids = test_ids(40), other = test_ids(12, 5);
    Ctx c(m.m, 64, 3, attention), alone(m.m, 64, 1, attention);
    c.run(ids, 0, 25, 0);
    c.run(other, 0, 12, 2);
    ASSERT_EQ(seaopt_kv_seq_cp(c.ctx, 0, 1), SEAOPT_OK) << last_error();
    ASSERT_EQ(seaopt_kv_seq_cp(c.ctx, 0, 2), SEAOPT_OK) << last_error();
    for (int32_t s = 1; s < 3; ++s) {
        EXPECT_EQ(seaopt_kv_seq_len(c.ctx, s), 25);
        EXPECT_EQ(c.tokens(s), std::vector<int32_t>(ids.begin(), ids.begin() + 25));
    }
    alone.run(ids, 0, 25);
    for (size_t t = 25; t < 30; ++t) {
        const std::vector<float> want = alone.run(ids, t, t + 1);
        const int32_t tok[3] = {ids[t], ids[t], ids[t]}, seq[3] = {0, 1, 2};
        const int8_t out[3] = {1, 1, 1};
        seaopt_batch b = seaopt_batch_get_one(tok, 3);
        b.seq_id = seq;
        b.logits = out;
        ASSERT_EQ(seaopt_decode(c.ctx, &b), SEAOPT_OK) << last_error();
        for (int32_t i = 0; i < 3; ++i) {
            const float *lg = seaopt_get_logits_ith(c.ctx, i);
            ASSERT_NE(lg, nullptr);
            EXPECT_TRUE(std::vector<float>(lg, lg + c.n_vocab) == want) << "position " << t << ", sequence " << i;
        }
    }
}

}  // namespace

TEST(SequenceCopy, DenseCopiesContinueAsTheOriginal) { expect_copies_continue_alike(kDenseModel, SEAOPT_ATTENTION_DENSE); }

TEST(SequenceCopy, SeaCopiesContinueAsTheOriginal) { expect_copies_continue_alike(kSeaModel, SEAOPT_ATTENTION_SEA); }

TEST(SequenceCopy, EmptySourcesAndBadIds) {
    ModelHandle m(kDenseModel);
    Ctx c(m.m, 32, 2);
    const std::vector<int32_t> ids = test_ids(10);
    c.run(ids, 0, 6, 1);
    ASSERT_EQ(seaopt_kv_seq_cp(c.ctx, 0, 1), SEAOPT_OK) << last_error();  // copying an empty sequence empties dst
    EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 1), 0);
    EXPECT_TRUE(c.tokens(1).empty());
    c.run(ids, 0, 4, 0);
    EXPECT_EQ(seaopt_kv_seq_cp(c.ctx, 0, 0), SEAOPT_OK);
    EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 0), 4);
    EXPECT_EQ(seaopt_kv_seq_cp(c.ctx, 0, 2), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("sequence id 2"), std::string::npos) << last_error();
    EXPECT_EQ(seaopt_kv_seq_cp(c.ctx, -1, 0), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_kv_seq_cp(nullptr, 0, 1), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 0), 4);
}
