// seaopt_context_params.abort_callback on the CPU engine with the build's demo models: how often it is asked, and
// that a cancelled seaopt_decode / seaopt_decode_nll / seaopt_generate_greedy fails with SEAOPT_ERR_CANCELLED and
// leaves the sequence as it was (the next batches give what a context that was never cancelled gives, bit for bit).
// The GPU engine asks it before each batch only (test_gpu_engine's runs use no callback).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "seaopt.h"
#include "test_util.h"

namespace {

const std::string kDenseModel = SEAOPT_BINARY_DIR "/models/opt-tiny-untrained.gguf";
const std::string kSeaModel = SEAOPT_BINARY_DIR "/models/opt-tiny-sea-untrained.gguf";

// Counts its calls; says "stop" on call number stop_at (0: never).
struct Abort {
    int calls = 0, stop_at = 0;
    static bool callback(void *self) {
        Abort &a = *static_cast<Abort *>(self);
        return ++a.calls == a.stop_at;
    }
};

struct Ctx {
    seaopt_context *ctx = nullptr;
    int32_t n_vocab = 0;
    Ctx(seaopt_model *model, seaopt_attention attention, Abort *abort) {
        seaopt_context_params cp = seaopt_context_default_params();
        cp.n_ctx = 64;
        cp.n_threads = 2;
        cp.attention = attention;
        if (abort) {
            cp.abort_callback = Abort::callback;
            cp.abort_callback_data = abort;
        }
        EXPECT_EQ(seaopt_context_new(model, &cp, &ctx), SEAOPT_OK) << seaopt_last_error();
        n_vocab = seaopt_model_n_vocab(model);
    }
    ~Ctx() { seaopt_context_free(ctx); }
    seaopt_status decode(const std::vector<int32_t> &ids, size_t from, size_t to) {
        seaopt_batch b = seaopt_batch_get_one(ids.data() + from, (int32_t)(to - from));
        return seaopt_decode(ctx, &b);
    }
    std::vector<float> logits() {
        const float *lg = seaopt_get_logits_ith(ctx, -1);
        return lg ? std::vector<float>(lg, lg + n_vocab) : std::vector<float>();
    }
};

std::vector<int32_t> ids_of(size_t n) { return seaopt_test::lcg_token_ids(n, 31); }

}  // namespace

TEST(Abort, AskedBeforeTheBatchEachLayerAndTheHead) {
    seaopt_test::CpuModel model(kDenseModel);
    Abort abort;
    Ctx c(model.m, SEAOPT_ATTENTION_DENSE, &abort);
    const std::vector<int32_t> ids = ids_of(10);
    ASSERT_EQ(c.decode(ids, 0, 10), SEAOPT_OK) << seaopt_last_error();
    EXPECT_EQ(abort.calls, 1 + seaopt_model_n_layer(model.m) + 1);
}

TEST(Abort, ACancelledBatchLeavesTheSequenceAsItWas) {
    for (const auto &[path, attention] : std::vector<std::pair<std::string, seaopt_attention>>{
             {kDenseModel, SEAOPT_ATTENTION_DENSE}, {kSeaModel, SEAOPT_ATTENTION_SEA}}) {
        SCOPED_TRACE(path);
        seaopt_test::CpuModel model(path);
        const std::vector<int32_t> ids = ids_of(30);
        Ctx never(model.m, attention, nullptr);
        Abort abort;
        Ctx c(model.m, attention, &abort);
        ASSERT_EQ(c.decode(ids, 0, 12), SEAOPT_OK);
        ASSERT_EQ(never.decode(ids, 0, 12), SEAOPT_OK);
        for (int stop_at : {1, 2, 3, 4}) {  // before the batch, in layer 0, in layer 1, before the head
            SCOPED_TRACE(stop_at);
            abort.calls = 0;
            abort.stop_at = stop_at;
            EXPECT_EQ(c.decode(ids, 12, 20), SEAOPT_ERR_CANCELLED);
            EXPECT_NE(std::string(seaopt_last_error()).find("abort callback"), std::string::npos) << seaopt_last_error();
            EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 0), 12);
        }
        abort.stop_at = 0;
        ASSERT_EQ(c.decode(ids, 12, 20), SEAOPT_OK) << seaopt_last_error();
        ASSERT_EQ(never.decode(ids, 12, 20), SEAOPT_OK);
        EXPECT_TRUE(c.logits() == never.logits());
        for (size_t t = 20; t < 24; ++t) {  // and one token at a time after it (SEA: the decode states)
            ASSERT_EQ(c.decode(ids, t, t + 1), SEAOPT_OK);
            ASSERT_EQ(never.decode(ids, t, t + 1), SEAOPT_OK);
            EXPECT_TRUE(c.logits() == never.logits()) << "position " << t;
        }

        // decode_nll and greedy generation are cancelled the same way.
        abort.calls = 0;
        abort.stop_at = 3;
        const int32_t target = 7;
        float nll = 0;
        seaopt_batch b = seaopt_batch_get_one(&ids[24], 1);
        EXPECT_EQ(seaopt_decode_nll(c.ctx, &b, &target, &nll), SEAOPT_ERR_CANCELLED);
        EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 0), 24);
        abort.calls = 0;
        abort.stop_at = 10;  // in the third step
        int32_t picks[5];
        EXPECT_EQ(seaopt_generate_greedy(c.ctx, 0, ids[24], 5, picks), SEAOPT_ERR_CANCELLED);
        EXPECT_EQ(seaopt_kv_seq_len(c.ctx, 0), 24);
        abort.stop_at = 0;
        ASSERT_EQ(c.decode(ids, 24, 25), SEAOPT_OK);
        ASSERT_EQ(never.decode(ids, 24, 25), SEAOPT_OK);
        EXPECT_TRUE(c.logits() == never.logits());
    }
}
