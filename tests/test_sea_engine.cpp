// SEA attention in the CPU engine (issue 4):
//   * the mapping of a GGUF's blk.N.sea.* tensors onto attention/sea_cpu's SeaParams (model/opt_sea.h):
//     a random SEA checkpoint made by seaopt-make-tiny-checkpoint --sea (fp32 safetensors) and converted by
//     seaopt-convert --sea gives, per layer, the SeaParams built straight from the checkpoint's tensors,
//     element for element, and one layer of SEA run both ways gives the same output bit for bit;
//   * the engine through the C API on the build's SEA demo model (models/opt-tiny-sea-untrained.gguf,
//     2 layers, 2 heads of 64, K 16, k 4): prefill == token by token == chunked, the layer list and sea_k,
//     several sequences in one batch, kv_clear, kv_truncate (recomputed), decode_nll, and the errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "attention/sea_cpu.h"
#include "engine/fp16.h"
#include "model/opt_model.h"
#include "model/opt_sea.h"
#include "seaopt.h"
#include "test_util.h"
#include "weights-convert/byte_source.h"
#include "weights-convert/safetensors.h"

namespace {

using seaopt::cpu::SeaConfig;
using seaopt::cpu::SeaParams;
using seaopt::cpu::SeaTensorSpec;

const std::string kBin = SEAOPT_BINARY_DIR "/bin/";
const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";
const std::string kDenseModel = SEAOPT_BINARY_DIR "/models/opt-tiny-untrained.gguf";

seaopt_test::Result run_ok(const std::vector<std::string> &args) {
    const seaopt_test::Result r = seaopt_test::run(args);
    EXPECT_TRUE(r.exited && r.status == 0) << seaopt_test::describe(r);
    return r;
}

// ---- the mapping ---------------------------------------------------------------------------------

// The checkpoint's tensors (F32) by name.
std::map<std::string, std::vector<float>> read_f32_safetensors(const std::string &path) {
    using namespace seaopt::convert;
    FileSource src(path);
    std::map<std::string, std::vector<float>> out;
    for (const SafetensorsTensor &t : read_safetensors_header(src, true)) {
        if (!t.unconvertible.empty()) continue;  // the int64 redraw counter
        if (t.dtype != DType::F32) throw std::runtime_error(t.name + " is not F32");
        std::vector<float> v((size_t)t.n_bytes / 4);
        if (!v.empty()) src.read(t.offset, v.data(), (size_t)t.n_bytes);
        out.emplace(t.name, std::move(v));
    }
    return out;
}

// SeaParams of one layer straight from the checkpoint: every §5.1 key of sea_cpu's spec list (the masks
// included) under the student prefix "model.decoder.layers.L.self_attn.perlin_self_attention.attention.".
SeaParams params_from_checkpoint(const std::map<std::string, std::vector<float>> &ckpt, const SeaConfig &cfg,
                                 uint32_t layer) {
    SeaParams p;
    const std::string prefix =
        "model.decoder.layers." + std::to_string(layer) + ".self_attn.perlin_self_attention.attention.";
    for (const SeaTensorSpec &spec : seaopt::cpu::sea_tensor_specs(cfg)) {
        const auto it = ckpt.find(prefix + spec.key);
        if (it == ckpt.end()) throw std::runtime_error("the checkpoint has no " + prefix + spec.key);
        size_t n = 1;
        for (size_t d : spec.shape) n *= d;
        if (it->second.size() != n) throw std::runtime_error(spec.key + ": wrong size");
        p.*spec.member = it->second;  // (1, 1, P, 64) for the table: the same memory as (P, 64)
    }
    return p;
}

std::vector<float> random_rows(size_t n, uint32_t seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float &x : v) x = scale * normal(rng);
    return v;
}

TEST(SeaMapping, GgufParamsAreTheCheckpointsElementForElement) {
    // 3 heads of 64, K = 32 (W = 8, G = 6), an fp32 checkpoint and fp32 output: no rounding anywhere.
    const std::string dir = seaopt_test::temp_dir() + "/mapping", ckpt = dir + "/sea.safetensors",
                      gguf = seaopt_test::temp_dir() + "/mapping.gguf";
    run_ok({kBin + "seaopt-make-tiny-checkpoint", "--out", dir, "--tokenizer-dir",
            std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer", "--seed", "7", "--hidden", "192", "--heads", "3",
            "--layers", "2", "--ffn", "64", "--sea", ckpt, "--sea-layout", "safetensors", "--sea-dtype", "f32",
            "--sea-width", "32"});
    const seaopt_test::Result converted = run_ok({kBin + "seaopt-convert", dir, "-o", gguf, "--outtype", "f32", "--sea",
                                                  ckpt, "--sea-k", "3", "--no-progress"});
    EXPECT_EQ(converted.err.find("warning"), std::string::npos) << converted.err;  // heads of 64: SEA runs

    seaopt_model_params mp = seaopt_model_default_params();
    mp.device = SEAOPT_DEVICE_CPU;
    const std::unique_ptr<seaopt::OptModel> model = seaopt::load_opt_model(gguf, mp);
    ASSERT_TRUE(model->hp.has_sea);
    ASSERT_EQ(model->sea.size(), 2u);
    const SeaConfig cfg = seaopt::sea_config_for_model(model->hp);
    EXPECT_EQ(cfg.n_head, 3u);
    EXPECT_EQ(cfg.k, 3u);
    EXPECT_EQ(cfg.K, 32u);
    EXPECT_EQ(cfg.n_features, 33u);  // int(64 ln 64 / 8)
    EXPECT_EQ(cfg.n_pos_table, 2048u);
    EXPECT_EQ(cfg.n_pos_ctx, 2048u);
    EXPECT_EQ(seaopt::sea_config_for_model(model->hp, 9).k, 9u);

    const std::map<std::string, std::vector<float>> tensors = read_f32_safetensors(ckpt);
    const size_t G = 6, kernel_live = 9, kernel_stored = 15;
    for (uint32_t l = 0; l < 2; ++l) {
        SCOPED_TRACE("layer " + std::to_string(l));
        const SeaParams from_gguf = seaopt::sea_params_from_model(model->hp, model->sea[l]);
        const SeaParams from_ckpt = params_from_checkpoint(tensors, cfg, l);
        ASSERT_NO_THROW(seaopt::cpu::sea_validate(cfg, from_gguf));
        ASSERT_NO_THROW(seaopt::cpu::sea_validate(cfg, from_ckpt));
        EXPECT_TRUE(from_gguf.conv1_mask.empty() && from_gguf.conv2_mask.empty() && from_gguf.conv4_mask.empty());

        for (const SeaTensorSpec &spec : seaopt::cpu::sea_tensor_specs(cfg)) {
            if (spec.optional) continue;  // the masks: folded into the weights below
            SCOPED_TRACE(spec.key);
            const std::vector<float> &got = from_gguf.*spec.member;
            std::vector<float> want = from_ckpt.*spec.member;
            // The module's effective kernel is weight ⊙ weight_mask (sea.md §2.6).
            const std::vector<float> *mask = spec.member == &SeaParams::conv1_w   ? &from_ckpt.conv1_mask
                                             : spec.member == &SeaParams::conv2_w ? &from_ckpt.conv2_mask
                                             : spec.member == &SeaParams::conv4_w ? &from_ckpt.conv4_mask
                                                                                  : nullptr;
            if (mask) {
                ASSERT_EQ(mask->size(), want.size());
                for (size_t i = 0; i < want.size(); ++i) want[i] *= (*mask)[i];
            }
            ASSERT_EQ(got.size(), want.size());
            size_t mismatches = 0;
            // Bit for bit, except that a dead kernel entry is +0 in the GGUF and w·0 = -0 for a negative w.
            for (size_t i = 0; i < got.size(); ++i) {
                mismatches += want[i] == 0.0f ? got[i] != 0.0f : std::memcmp(&got[i], &want[i], 4) != 0;
            }
            EXPECT_EQ(mismatches, 0u);
        }
        // The test means something: the checkpoint's dead kernel rows 3..4 are random (nonzero) and the
        // GGUF's are zero (the file keeps rows 0..2 of weight ⊙ mask).
        size_t dead_nonzero = 0;
        for (size_t kern = 0; kern < G * G; ++kern) {
            for (size_t i = kernel_live; i < kernel_stored; ++i) {
                dead_nonzero += from_ckpt.conv1_w[kern * kernel_stored + i] != 0.0f;
                EXPECT_EQ(from_gguf.conv1_w[kern * kernel_stored + i], 0.0f);
                EXPECT_EQ(from_gguf.conv2_w[kern * kernel_stored + i], 0.0f);
            }
        }
        EXPECT_GT(dead_nonzero, 0u);

        // One layer of SEA both ways: prefill of 48 tokens, then 3 decode steps; bit for bit.
        const size_t T = 48, C = 3 * 64, T_total = T + 3;
        const std::vector<float> q = random_rows(T_total * C, 10 + l, 0.125f);
        const std::vector<float> k = random_rows(T_total * C, 20 + l, 1.0f), v = random_rows(T_total * C, 30 + l, 1.0f);
        std::vector<float> out_gguf(T_total * C), out_ckpt(T_total * C);
        seaopt::cpu::SeaDecodeState st_gguf, st_ckpt;
        seaopt::cpu::SeaDebug dbg;
        seaopt::cpu::sea_attention_prefill_cpu(cfg, from_gguf, q.data(), k.data(), v.data(), T, out_gguf.data(), &dbg,
                                               &st_gguf, 2);
        seaopt::cpu::sea_attention_prefill_cpu(cfg, from_ckpt, q.data(), k.data(), v.data(), T, out_ckpt.data(),
                                               nullptr, &st_ckpt, 2);
        for (size_t t = T; t < T_total; ++t) {
            seaopt::cpu::sea_attention_decode_cpu(cfg, from_gguf, st_gguf, q.data() + t * C, k.data() + t * C,
                                                  v.data() + t * C, t, out_gguf.data() + t * C);
            seaopt::cpu::sea_attention_decode_cpu(cfg, from_ckpt, st_ckpt, q.data() + t * C, k.data() + t * C,
                                                  v.data() + t * C, t, out_ckpt.data() + t * C);
        }
        EXPECT_EQ(std::memcmp(out_gguf.data(), out_ckpt.data(), out_gguf.size() * 4), 0);
        // And it is sparse: the last rows keep fewer cells than H·K.
        EXPECT_LT(dbg.budget[T - 1], (int32_t)(3 * 32));
    }
}

// ---- the engine through the C API ----------------------------------------------------------------

using Model = seaopt_test::CpuModel;

const Model &sea_model() {
    static Model m(kSeaModel);
    return m;
}

struct CtxOptions {
    seaopt_attention attention = SEAOPT_ATTENTION_SEA;
    const char *layers = nullptr;
    int32_t k = 0;
    uint32_t n_seq = 1;
    uint32_t n_ctx = 128;
};

struct Ctx {
    seaopt_context *c = nullptr;
    explicit Ctx(const CtxOptions &o = {}) {
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = o.n_ctx;
        cp.n_seq_max = o.n_seq;
        cp.attention = o.attention;
        cp.sea_layers = o.layers;
        cp.sea_k = o.k;
        cp.n_threads = 2;
        EXPECT_EQ(seaopt_context_new(sea_model().m, &cp, &c), SEAOPT_OK) << seaopt_last_error();
    }
    ~Ctx() { seaopt_context_free(c); }
};

constexpr int32_t kVocab = 50272;

// A fixed prompt of n ids (BOS first).
std::vector<int32_t> prompt(size_t n, uint32_t seed = 1) {
    std::mt19937 rng(seed);
    std::vector<int32_t> ids(n);
    for (size_t i = 0; i < n; ++i) ids[i] = i == 0 ? 2 : 4 + (int32_t)(rng() % 50000);
    return ids;
}

using Logits = std::vector<std::vector<float>>;  // per position

// One decode of `ids` continuing sequence 0, logits for every token.
Logits decode_all(seaopt_context *c, const std::vector<int32_t> &ids, size_t begin, size_t end) {
    std::vector<int8_t> want(end - begin, 1);
    seaopt_batch b = seaopt_batch_get_one(ids.data() + begin, (int32_t)(end - begin));
    b.logits = want.data();
    Logits out;
    EXPECT_EQ(seaopt_decode(c, &b), SEAOPT_OK) << seaopt_last_error();
    for (size_t i = 0; i < end - begin; ++i) {
        const float *row = seaopt_get_logits_ith(c, (int32_t)i);
        if (!row) {
            ADD_FAILURE() << seaopt_last_error();
            return out;
        }
        out.emplace_back(row, row + kVocab);
    }
    return out;
}

Logits prefill(seaopt_context *c, const std::vector<int32_t> &ids) { return decode_all(c, ids, 0, ids.size()); }

Logits one_by_one(seaopt_context *c, const std::vector<int32_t> &ids, size_t begin = 0) {
    Logits out;
    for (size_t i = begin; i < ids.size(); ++i) {
        Logits one = decode_all(c, ids, i, i + 1);
        if (one.empty()) return out;
        out.push_back(std::move(one[0]));
    }
    return out;
}

// max |a - b| / (1 + |b|) over every logit.
double max_rel_diff(const Logits &a, const Logits &b) {
    EXPECT_EQ(a.size(), b.size());
    double worst = 0;
    for (size_t t = 0; t < std::min(a.size(), b.size()); ++t) {
        for (size_t j = 0; j < a[t].size(); ++j) {
            worst = std::max(worst, std::fabs((double)a[t][j] - b[t][j]) / (1.0 + std::fabs((double)b[t][j])));
        }
    }
    return worst;
}

bool identical(const Logits &a, const Logits &b) {
    if (a.size() != b.size()) return false;
    for (size_t t = 0; t < a.size(); ++t) {
        if (a[t].size() != b[t].size() || std::memcmp(a[t].data(), b[t].data(), a[t].size() * 4) != 0) return false;
    }
    return true;
}

Logits tail(const Logits &l, size_t from) { return Logits(l.begin() + (ptrdiff_t)from, l.end()); }

constexpr double kTol = 1e-5;

TEST(SeaEngine, PrefillEqualsTokenByTokenAndChunks) {
    const std::vector<int32_t> ids = prompt(40);
    Ctx a, b, c;
    const Logits full = prefill(a.c, ids);
    const Logits steps = one_by_one(b.c, ids);
    const double d = max_rel_diff(steps, full);
    std::printf("[ sea ] prefill vs one token at a time, 40 positions: max rel diff %.3g\n", d);
    EXPECT_LE(d, kTol);
    // A prompt in chunks: the first prefills, the later ones continue the sequence (one token: the decode; more:
    // the rows in parallel, sea_attention_continue_cpu).
    Logits chunked = decode_all(c.c, ids, 0, 13);
    for (Logits part : {decode_all(c.c, ids, 13, 14), decode_all(c.c, ids, 14, 40)}) {
        chunked.insert(chunked.end(), part.begin(), part.end());
    }
    EXPECT_LE(max_rel_diff(chunked, full), kTol);
    EXPECT_EQ(seaopt_kv_seq_len(c.c, 0), 40);
}

TEST(SeaEngine, SeaDiffersFromDenseAndDenseIsUntouched) {
    const std::vector<int32_t> ids = prompt(24);
    Ctx sea, dense({SEAOPT_ATTENTION_DENSE});
    const Logits s = prefill(sea.c, ids), d = prefill(dense.c, ids);
    EXPECT_GT(max_rel_diff(s, d), 1e-3) << "SEA should change the logits";
    // A dense context on the SEA model is the dense engine: the same as a second dense context, token by token.
    Ctx dense2({SEAOPT_ATTENTION_DENSE});
    EXPECT_LE(max_rel_diff(one_by_one(dense2.c, ids), d), kTol);
}

TEST(SeaEngine, LayerListsSelectTheLayers) {
    const std::vector<int32_t> ids = prompt(24);
    auto run = [&](const char *layers) {
        Ctx c({SEAOPT_ATTENTION_SEA, layers});
        return prefill(c.c, ids);
    };
    const Logits all = run(nullptr);
    // Every way of saying "all layers" is the same computation.
    for (const char *same : {"", "0-1", "0,1", "1,0", " 0 - 1 ", "0,0-1"}) {
        EXPECT_TRUE(identical(run(same), all)) << "'" << same << "'";
    }
    const Logits l0 = run("0"), l1 = run("1");
    Ctx dense({SEAOPT_ATTENTION_DENSE});
    const Logits d = prefill(dense.c, ids);
    for (const Logits *x : {&l0, &l1, &all}) {
        for (const Logits *y : {&l0, &l1, &all, &d}) {
            if (x != y) {
                EXPECT_GT(max_rel_diff(*x, *y), 1e-4);
            }
        }
    }
    // Decoding with one SEA layer matches its prefill too.
    Ctx c1({SEAOPT_ATTENTION_SEA, "1"});
    EXPECT_LE(max_rel_diff(one_by_one(c1.c, ids), l1), kTol);
}

TEST(SeaEngine, SeaKOverridesTheModels) {
    const std::vector<int32_t> ids = prompt(32);
    Ctx model_k, same_k({SEAOPT_ATTENTION_SEA, nullptr, 4}), k1({SEAOPT_ATTENTION_SEA, nullptr, 1}),
        k_all({SEAOPT_ATTENTION_SEA, nullptr, 1000});
    const Logits a = prefill(model_k.c, ids);
    EXPECT_TRUE(identical(prefill(same_k.c, ids), a));  // the model's sea.k is 4
    EXPECT_GT(max_rel_diff(prefill(k1.c, ids), a), 1e-4);
    const Logits full_budget = prefill(k_all.c, ids);
    EXPECT_GT(max_rel_diff(full_budget, a), 1e-4);
    Ctx k_all2({SEAOPT_ATTENTION_SEA, nullptr, 1000});
    EXPECT_LE(max_rel_diff(one_by_one(k_all2.c, ids), full_budget), kTol);
}

TEST(SeaEngine, SequencesInOneBatchAreIndependent) {
    const std::vector<int32_t> p0 = prompt(21, 3), p1 = prompt(9, 4);
    Ctx alone0, alone1, both({SEAOPT_ATTENTION_SEA, nullptr, 0, 3});
    const Logits a0 = prefill(alone0.c, p0), a1 = prefill(alone1.c, p1);
    // Interleaved in one batch, in sequences 2 and 0.
    std::vector<int32_t> tok, seq;
    std::vector<int8_t> want;
    size_t i0 = 0, i1 = 0;
    while (i0 < p0.size() || i1 < p1.size()) {
        if (i0 < p0.size()) tok.push_back(p0[i0++]), seq.push_back(2), want.push_back(1);
        if (i1 < p1.size() && (i0 % 2 == 0 || i0 == p0.size())) {
            tok.push_back(p1[i1++]), seq.push_back(0), want.push_back(1);
        }
    }
    seaopt_batch b = seaopt_batch_get_one(tok.data(), (int32_t)tok.size());
    b.seq_id = seq.data();
    b.logits = want.data();
    ASSERT_EQ(seaopt_decode(both.c, &b), SEAOPT_OK) << seaopt_last_error();
    Logits g0, g1;
    for (size_t i = 0; i < tok.size(); ++i) {
        const float *row = seaopt_get_logits_ith(both.c, (int32_t)i);
        ASSERT_NE(row, nullptr);
        (seq[i] == 2 ? g0 : g1).emplace_back(row, row + kVocab);
    }
    EXPECT_TRUE(identical(g0, a0));
    EXPECT_TRUE(identical(g1, a1));

    // Then one decode step of both sequences in one batch == each alone.
    const int32_t next0 = 777, next1 = 888;
    const std::vector<int32_t> step_tok = {next1, next0}, step_seq = {0, 2};
    const std::vector<int8_t> step_want = {1, 1};
    b = seaopt_batch_get_one(step_tok.data(), 2);
    b.seq_id = step_seq.data();
    b.logits = step_want.data();
    ASSERT_EQ(seaopt_decode(both.c, &b), SEAOPT_OK) << seaopt_last_error();
    const std::vector<float> s1(seaopt_get_logits_ith(both.c, 0), seaopt_get_logits_ith(both.c, 0) + kVocab);
    const std::vector<float> s0(seaopt_get_logits_ith(both.c, 1), seaopt_get_logits_ith(both.c, 1) + kVocab);
    const Logits e0 = one_by_one(alone0.c, {next0}), e1 = one_by_one(alone1.c, {next1});
    EXPECT_TRUE(identical({s0}, e0));
    EXPECT_TRUE(identical({s1}, e1));
    EXPECT_EQ(seaopt_kv_seq_len(both.c, 2), 22);
    EXPECT_EQ(seaopt_kv_seq_len(both.c, 0), 10);
    EXPECT_EQ(seaopt_kv_seq_len(both.c, 1), 0);
}

TEST(SeaEngine, KvClearThenPrefillReproduces) {
    const std::vector<int32_t> ids = prompt(30, 5), other = prompt(17, 6);
    Ctx c;
    const Logits first = prefill(c.c, ids);
    const Logits steps_first = one_by_one(c.c, {11, 12, 13});
    seaopt_kv_clear(c.c);
    EXPECT_EQ(seaopt_kv_seq_len(c.c, 0), 0);
    prefill(c.c, other);  // something else in between
    seaopt_kv_clear(c.c);
    EXPECT_TRUE(identical(prefill(c.c, ids), first));
    EXPECT_TRUE(identical(one_by_one(c.c, {11, 12, 13}), steps_first));
    // After a clear, feeding token by token from position 0 works too.
    seaopt_kv_clear(c.c);
    EXPECT_LE(max_rel_diff(one_by_one(c.c, ids), first), kTol);
}

TEST(SeaEngine, KvTruncateRecomputesTheState) {
    const std::vector<int32_t> ids = prompt(36, 8);
    Ctx c, ref;
    const Logits full = prefill(ref.c, ids);
    prefill(c.c, std::vector<int32_t>(ids.begin(), ids.begin() + 30));
    ASSERT_EQ(seaopt_kv_truncate(c.c, 0, 20), SEAOPT_OK) << seaopt_last_error();
    EXPECT_EQ(seaopt_kv_seq_len(c.c, 0), 20);
    // Continuing from position 20 gives what the whole prompt gives there.
    EXPECT_LE(max_rel_diff(one_by_one(c.c, ids, 20), tail(full, 20)), kTol);
    // n_keep >= the length changes nothing; 0 empties the sequence; -1 = every sequence.
    ASSERT_EQ(seaopt_kv_truncate(c.c, 0, 100), SEAOPT_OK);
    EXPECT_EQ(seaopt_kv_seq_len(c.c, 0), 36);
    ASSERT_EQ(seaopt_kv_truncate(c.c, -1, 5), SEAOPT_OK) << seaopt_last_error();
    EXPECT_EQ(seaopt_kv_seq_len(c.c, 0), 5);
    EXPECT_LE(max_rel_diff(decode_all(c.c, ids, 5, 36), tail(full, 5)), kTol);
    ASSERT_EQ(seaopt_kv_truncate(c.c, 0, 0), SEAOPT_OK);
    EXPECT_EQ(seaopt_kv_seq_len(c.c, 0), 0);
    EXPECT_TRUE(identical(prefill(c.c, ids), full));
}

TEST(SeaEngine, DecodeNllMatchesTheLogits) {
    const std::vector<int32_t> ids = prompt(20, 9);
    Ctx a, b;
    const Logits l = prefill(a.c, ids);
    std::vector<int32_t> targets(ids.size(), 0);
    for (size_t i = 0; i + 1 < ids.size(); ++i) targets[i] = ids[i + 1];
    std::vector<int8_t> want(ids.size(), 1);
    want[ids.size() - 1] = 0;
    std::vector<float> nll(ids.size(), -1.0f);
    seaopt_batch batch = seaopt_batch_get_one(ids.data(), (int32_t)ids.size());
    batch.logits = want.data();
    ASSERT_EQ(seaopt_decode_nll(b.c, &batch, targets.data(), nll.data()), SEAOPT_OK) << seaopt_last_error();
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
        double max = l[i][0], sum = 0;
        for (float x : l[i]) max = std::max(max, (double)x);
        for (float x : l[i]) sum += std::exp((double)x - max);
        EXPECT_NEAR(nll[i], std::log(sum) + max - l[i][(size_t)targets[i]], 1e-4) << i;
    }
    // And the states moved on: the next token decodes as after seaopt_decode.
    EXPECT_TRUE(identical(one_by_one(b.c, {500}), one_by_one(a.c, {500})));
}

TEST(SeaEngine, MemoryReportCountsTheStates) {
    Ctx sea, dense({SEAOPT_ATTENTION_DENSE});
    seaopt_memory_report ms{}, md{};
    ASSERT_EQ(seaopt_context_memory(sea.c, &ms), SEAOPT_OK);
    ASSERT_EQ(seaopt_context_memory(dense.c, &md), SEAOPT_OK);
    EXPECT_EQ(md.workspace_bytes, 0u);
    EXPECT_GT(ms.workspace_bytes, 0u);
    EXPECT_EQ(ms.total_bytes, ms.weights_bytes + ms.kv_cache_bytes + ms.workspace_bytes);
    char buf[512];
    size_t n = 0;
    ASSERT_EQ(seaopt_context_memory_plan(sea.c, buf, sizeof buf, &n), SEAOPT_OK);
    EXPECT_NE(std::string(buf, n).find("SEA attention"), std::string::npos);
}

// Expects seaopt_context_new to fail with `code` and every needle in the message.
void expect_context_error(const seaopt_model *m, const seaopt_context_params &cp, seaopt_status code,
                          std::initializer_list<std::string> needles) {
    seaopt_context *c = reinterpret_cast<seaopt_context *>(0x1);
    EXPECT_EQ(seaopt_context_new(const_cast<seaopt_model *>(m), &cp, &c), code) << seaopt_last_error();
    EXPECT_EQ(c, nullptr);
    const std::string msg = seaopt_last_error();
    for (const std::string &n : needles) EXPECT_NE(msg.find(n), std::string::npos) << msg << "\nmissing: " << n;
}

TEST(SeaEngine, ContextErrors) {
    seaopt_context_params cp = seaopt_context_default_params();
    cp.n_ctx = 64;
    cp.attention = SEAOPT_ATTENTION_SEA;
    {
        Model dense(kDenseModel);
        ASSERT_FALSE(seaopt_model_has_sea(dense.m));
        expect_context_error(dense.m, cp, SEAOPT_ERR_UNSUPPORTED,
                             {"has no SEA estimator: convert it with seaopt-convert --sea"});
    }
    const seaopt_model *m = sea_model().m;
    ASSERT_TRUE(seaopt_model_has_sea(m));
    struct Bad {
        const char *list;
        const char *needle;
    };
    for (const Bad &bad : {Bad{"2", "layer 2 is out of range: the model has 2 layers (0-1)"},
                           Bad{"0-2", "layer 2 is out of range"}, Bad{"x", "'x' is not a layer index or a range"},
                           Bad{"1-", "'1-' is not a layer index or a range"}, Bad{"0,,1", "'' is not a layer index"},
                           Bad{"1,", "'' is not a layer index"}, Bad{"-1", "'-1' is not a layer index"},
                           Bad{"1-0", "the range '1-0' is empty"}, Bad{"0;1", "'0;1' is not"},
                           Bad{"99999999999", "is not a layer index"}}) {
        SCOPED_TRACE(bad.list);
        cp.sea_layers = bad.list;
        expect_context_error(m, cp, SEAOPT_ERR_INVALID_ARGUMENT,
                             {std::string("sea_layers = '") + bad.list + "'", bad.needle});
    }
    cp.sea_layers = nullptr;
    cp.sea_k = -1;
    expect_context_error(m, cp, SEAOPT_ERR_INVALID_ARGUMENT, {"sea_k = -1 must be >= 0"});
    cp.sea_k = (1 << 20) + 1;  // k·K > 2^24 for K = 16 (sea_cpu's limit)
    expect_context_error(m, cp, SEAOPT_ERR_INVALID_ARGUMENT, {"sea_k = 1048577 is out of range: at most 1048576"});
    cp.sea_k = (1 << 24) / 16;  // the largest the reference takes with K = 16
    seaopt_context *c = nullptr;
    EXPECT_EQ(seaopt_context_new(const_cast<seaopt_model *>(m), &cp, &c), SEAOPT_OK) << seaopt_last_error();
    seaopt_context_free(c);
    // The SEA fields with dense attention are a mistake, not ignored.
    cp = seaopt_context_default_params();
    cp.sea_layers = "0";
    expect_context_error(m, cp, SEAOPT_ERR_INVALID_ARGUMENT, {"sea_layers is set but attention is dense"});
    cp.sea_layers = "";
    cp.sea_k = 3;
    expect_context_error(m, cp, SEAOPT_ERR_INVALID_ARGUMENT, {"sea_k is set but attention is dense"});
    cp.sea_k = 0;
    cp.attention = (seaopt_attention)7;
    expect_context_error(m, cp, SEAOPT_ERR_INVALID_ARGUMENT, {"unknown attention kind 7"});
}

}  // namespace
