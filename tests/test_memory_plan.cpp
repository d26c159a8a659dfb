// The activation memory planner (engine/memory_plan.h): hand-built cases with known optimal packings,
// alignment, determinism, verify_memory_plan on corrupted plans, a random stress test against the
// lower bound (peak live bytes) and upper bound (one aligned allocation per buffer), and the OPT
// forward's buffers at OPT-1.3B / OPT-350m shapes, including a check of the one-layer-period plan
// against the unrolled per-layer timeline.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/memory_plan.h"

using seaopt::BufferRequest;
using seaopt::MemoryPlan;
using seaopt::PlannedBuffer;

namespace {

constexpr uint64_t KiB = 1024, MiB = 1024 * 1024;

std::map<std::string, uint64_t> offsets(const MemoryPlan &plan) {
    std::map<std::string, uint64_t> m;
    for (const PlannedBuffer &b : plan.buffers) m[b.req.name] = b.offset;
    return m;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// The status code of an Error thrown by f, or SEAOPT_OK when nothing is thrown.
template <class F>
seaopt_status error_code(F &&f, std::string *message = nullptr) {
    try {
        f();
    } catch (const seaopt::Error &e) {
        if (message) *message = e.what();
        return e.code();
    }
    return SEAOPT_OK;
}

seaopt::OptHparams opt_1_3b() {
    seaopt::OptHparams hp;
    hp.n_vocab = 50272;
    hp.n_ctx_train = 2048;
    hp.n_embd = 2048;
    hp.n_layer = 24;
    hp.n_ff = 8192;
    hp.n_head = 32;
    hp.pre_ln = true;
    hp.n_embd_proj = 2048;
    return hp;
}

seaopt::OptHparams opt_350m() {
    seaopt::OptHparams hp;
    hp.n_vocab = 50272;
    hp.n_ctx_train = 2048;
    hp.n_embd = 1024;
    hp.n_layer = 24;
    hp.n_ff = 4096;
    hp.n_head = 16;
    hp.pre_ln = false;
    hp.n_embd_proj = 512;
    return hp;
}

}  // namespace

TEST(MemoryPlan, DisjointLifetimesShareOffsetZero) {
    const MemoryPlan plan = seaopt::plan_memory({{"a", 4096, 0, 1}, {"b", 4096, 2, 3}});
    EXPECT_EQ(offsets(plan), (std::map<std::string, uint64_t>{{"a", 0}, {"b", 0}}));
    EXPECT_EQ(plan.arena_bytes, 4096u);
    seaopt::verify_memory_plan(plan);
}

TEST(MemoryPlan, OverlappingBuffersStackLargestFirst) {
    const MemoryPlan plan = seaopt::plan_memory({{"small", 256, 0, 2}, {"big", 1024, 1, 1}, {"mid", 512, 0, 5}});
    EXPECT_EQ(offsets(plan), (std::map<std::string, uint64_t>{{"big", 0}, {"mid", 1024}, {"small", 1536}}));
    EXPECT_EQ(plan.arena_bytes, 1792u);
    ASSERT_EQ(plan.buffers.size(), 3u);
    EXPECT_EQ(plan.buffers[0].req.name, "big");  // placement order
    EXPECT_EQ(plan.buffers[2].req.name, "small");
    seaopt::verify_memory_plan(plan);
}

TEST(MemoryPlan, SharingAtStepBoundariesIsExact) {
    // The lifetimes are inclusive: a buffer read at step 1 and one written at step 1 never alias
    // (an op's input and output), while one that ends at 1 and one that starts at 2 do share.
    MemoryPlan plan = seaopt::plan_memory({{"in", 1024, 0, 1}, {"out", 1024, 1, 2}});
    EXPECT_EQ(plan.arena_bytes, 2048u);
    plan = seaopt::plan_memory({{"in", 1024, 0, 1}, {"out", 1024, 2, 3}});
    EXPECT_EQ(plan.arena_bytes, 1024u);
}

TEST(MemoryPlan, FillsTheLowestGapThatFits) {
    // P occupies [0, 2048) at step 0 only; Q sits above it for steps 0..5. R and S (steps 1..5)
    // conflict with Q but not with P: R takes the gap at 0, S the rest of that gap at 1024.
    const MemoryPlan plan = seaopt::plan_memory(
        {{"P", 2048, 0, 0}, {"Q", 1024, 0, 5}, {"R", 1024, 1, 5}, {"S", 1024, 1, 5}, {"T", 512, 1, 5}});
    EXPECT_EQ(offsets(plan),
              (std::map<std::string, uint64_t>{{"P", 0}, {"Q", 2048}, {"R", 0}, {"S", 1024}, {"T", 3072}}));
    EXPECT_EQ(plan.arena_bytes, 3584u);
    EXPECT_EQ(plan.arena_bytes,
              seaopt::peak_live_bytes(
                  {{"P", 2048, 0, 0}, {"Q", 1024, 0, 5}, {"R", 1024, 1, 5}, {"S", 1024, 1, 5}, {"T", 512, 1, 5}}));
    seaopt::verify_memory_plan(plan);
}

TEST(MemoryPlan, ChainOfOpsReusesDeadBuffers) {
    // A -> B -> C -> D, each op reading the previous buffer: two buffers live at any time.
    const std::vector<BufferRequest> req = {{"A", 3072, 0, 1}, {"B", 2048, 1, 2}, {"C", 1024, 2, 3}, {"D", 1024, 0, 3}};
    const MemoryPlan plan = seaopt::plan_memory(req);
    EXPECT_EQ(offsets(plan), (std::map<std::string, uint64_t>{{"A", 0}, {"B", 3072}, {"C", 0}, {"D", 5120}}));
    EXPECT_EQ(plan.arena_bytes, 6144u);
    EXPECT_EQ(seaopt::peak_live_bytes(req), 6144u);
    EXPECT_EQ(seaopt::total_requested_bytes(req), 7168u);
}

TEST(MemoryPlan, Alignment) {
    const std::vector<BufferRequest> req = {{"a", 100, 0, 0}, {"b", 100, 0, 0}, {"c", 100, 0, 0}};
    MemoryPlan plan = seaopt::plan_memory(req);  // default 256
    EXPECT_EQ(plan.alignment, 256u);
    EXPECT_EQ(offsets(plan), (std::map<std::string, uint64_t>{{"a", 0}, {"b", 256}, {"c", 512}}));
    EXPECT_EQ(plan.arena_bytes, 612u);  // the end of the last buffer, not rounded up
    plan = seaopt::plan_memory(req, 1);
    EXPECT_EQ(offsets(plan), (std::map<std::string, uint64_t>{{"a", 0}, {"b", 100}, {"c", 200}}));
    EXPECT_EQ(plan.arena_bytes, 300u);
    plan = seaopt::plan_memory(req, 48);  // not a power of two: still multiples of it
    EXPECT_EQ(offsets(plan), (std::map<std::string, uint64_t>{{"a", 0}, {"b", 144}, {"c", 288}}));
    seaopt::verify_memory_plan(plan);
    // Offsets are aligned, the ends are not: x (300 B) at 0, y at 512 (not 300); z (200 B, step 1)
    // takes x's bytes once x is dead.
    plan = seaopt::plan_memory({{"x", 300, 0, 0}, {"y", 300, 0, 1}, {"z", 200, 1, 1}});
    EXPECT_EQ(offsets(plan), (std::map<std::string, uint64_t>{{"x", 0}, {"y", 512}, {"z", 0}}));
}

TEST(MemoryPlan, ZeroSizeBuffersTakeNoSpace) {
    MemoryPlan plan = seaopt::plan_memory({{"empty", 0, 0, 9}});
    EXPECT_EQ(plan.arena_bytes, 0u);
    EXPECT_EQ(plan.buffers.at(0).offset, 0u);
    plan = seaopt::plan_memory({{"a", 512, 0, 9}, {"empty", 0, 0, 9}, {"b", 256, 3, 4}});
    EXPECT_EQ(offsets(plan), (std::map<std::string, uint64_t>{{"a", 0}, {"b", 512}, {"empty", 0}}));
    EXPECT_EQ(plan.arena_bytes, 768u);
    seaopt::verify_memory_plan(plan);
    EXPECT_EQ(seaopt::plan_memory({}).arena_bytes, 0u);
}

TEST(MemoryPlan, BadRequestsAreInvalidArguments) {
    std::string message;
    EXPECT_EQ(error_code(
                  [] {
                      seaopt::plan_memory({{"ok", 16, 0, 1}, {"backwards", 16, 3, 2}});
                  },
                  &message),
              SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(message.find("backwards"), std::string::npos) << message;
    EXPECT_EQ(error_code([] { seaopt::plan_memory({{"a", 16, 0, 1}}, 0); }), SEAOPT_ERR_INVALID_ARGUMENT);
    // Two live buffers whose sum does not fit 64 bits.
    const uint64_t huge = (uint64_t)1 << 63;
    EXPECT_EQ(error_code([&] {
                  seaopt::plan_memory({{"h1", huge, 0, 1}, {"h2", huge, 0, 1}});
              }),
              SEAOPT_ERR_INVALID_ARGUMENT);
    // ... but they may share if their lifetimes don't meet.
    EXPECT_EQ(seaopt::plan_memory({{"h1", huge, 0, 0}, {"h2", huge, 1, 1}}).arena_bytes, huge);
    EXPECT_EQ(error_code([] {
                  seaopt::plan_memory({{"a", ~(uint64_t)0, 0, 0}, {"b", 1, 0, 0}});
              }),
              SEAOPT_ERR_INVALID_ARGUMENT);
}

TEST(MemoryPlan, DeterministicUnderInputPermutations) {
    std::vector<BufferRequest> req = {{"a", 1024, 0, 3}, {"b", 1024, 2, 5}, {"c", 512, 0, 1},
                                      {"d", 512, 0, 1},  {"e", 700, 4, 6},  {"f", 1024, 2, 5}};
    std::sort(req.begin(), req.end(), [](const BufferRequest &x, const BufferRequest &y) { return x.name < y.name; });
    const MemoryPlan first = seaopt::plan_memory(req);
    size_t n_perms = 0;
    do {
        const MemoryPlan plan = seaopt::plan_memory(req);
        ASSERT_EQ(offsets(plan), offsets(first));
        ASSERT_EQ(plan.arena_bytes, first.arena_bytes);
        ASSERT_EQ(plan.buffers.size(), first.buffers.size());
        for (size_t i = 0; i < plan.buffers.size(); ++i) ASSERT_EQ(plan.buffers[i].req.name, first.buffers[i].req.name);
        ++n_perms;
    } while (std::next_permutation(req.begin(), req.end(),
                                   [](const BufferRequest &x, const BufferRequest &y) { return x.name < y.name; }));
    EXPECT_EQ(n_perms, 720u);
    // The OPT forward's list, reversed and shuffled.
    std::vector<BufferRequest> opt = seaopt::opt_forward_buffers(opt_1_3b(), 512, 512);
    const MemoryPlan base = seaopt::plan_memory(opt);
    std::mt19937 rng(7);
    for (int i = 0; i < 20; ++i) {
        std::shuffle(opt.begin(), opt.end(), rng);
        const MemoryPlan plan = seaopt::plan_memory(opt);
        ASSERT_EQ(offsets(plan), offsets(base));
        ASSERT_EQ(plan.arena_bytes, base.arena_bytes);
    }
}

TEST(MemoryPlan, VerifyCatchesCorruptedPlans) {
    const MemoryPlan good = seaopt::plan_memory({{"qkv", 3 * KiB, 1, 2}, {"ff", 4 * KiB, 3, 4}, {"x", 2 * KiB, 0, 5}});
    seaopt::verify_memory_plan(good);
    ASSERT_EQ(offsets(good).at("qkv"), 0u);  // shares with ff
    ASSERT_EQ(offsets(good).at("ff"), 0u);

    std::string message;
    // Overlap: move x onto the top of ff (above qkv's bytes).
    MemoryPlan bad = good;
    for (PlannedBuffer &b : bad.buffers) {
        if (b.req.name == "x") b.offset = 3072;
    }
    EXPECT_EQ(error_code([&] { seaopt::verify_memory_plan(bad); }, &message), SEAOPT_ERR_INTERNAL);
    EXPECT_NE(message.find("'x'"), std::string::npos) << message;
    EXPECT_NE(message.find("'ff'"), std::string::npos) << message;  // the pair is named
    // Extending a lifetime without moving the buffer makes qkv and ff collide.
    bad = good;
    for (PlannedBuffer &b : bad.buffers) {
        if (b.req.name == "qkv") b.req.last_step = 3;
    }
    EXPECT_EQ(error_code([&] { seaopt::verify_memory_plan(bad); }, &message), SEAOPT_ERR_INTERNAL);
    EXPECT_NE(message.find("'qkv'"), std::string::npos) << message;
    EXPECT_NE(message.find("'ff'"), std::string::npos) << message;
    // Misaligned.
    bad = good;
    bad.buffers.back().offset += 8;
    bad.arena_bytes += 8;
    EXPECT_EQ(error_code([&] { seaopt::verify_memory_plan(bad); }, &message), SEAOPT_ERR_INTERNAL);
    EXPECT_NE(message.find("aligned"), std::string::npos) << message;
    // Outside the arena.
    bad = good;
    bad.arena_bytes -= 1;
    EXPECT_EQ(error_code([&] { seaopt::verify_memory_plan(bad); }, &message), SEAOPT_ERR_INTERNAL);
    EXPECT_NE(message.find("past the arena"), std::string::npos) << message;
    // Zero alignment and an empty lifetime.
    bad = good;
    bad.alignment = 0;
    EXPECT_EQ(error_code([&] { seaopt::verify_memory_plan(bad); }), SEAOPT_ERR_INTERNAL);
    bad = good;
    bad.buffers[0].req.first_step = 9;
    EXPECT_EQ(error_code([&] { seaopt::verify_memory_plan(bad); }), SEAOPT_ERR_INTERNAL);
}

TEST(MemoryPlan, RandomStress) {
    std::mt19937_64 rng(20240611);
    uint64_t optimal = 0;
    for (int set = 0; set < 500; ++set) {
        const int n = 1 + (int)(rng() % 40);
        const int n_steps = 1 + (int)(rng() % 30);
        const uint64_t alignment = (rng() % 4 == 0) ? 1 + rng() % 100 : ((uint64_t)1 << (rng() % 10));
        std::vector<BufferRequest> req;
        for (int i = 0; i < n; ++i) {
            const int a = (int)(rng() % n_steps), b = (int)(rng() % n_steps);
            uint64_t bytes = rng() % 5 == 0 ? 0 : 1 + rng() % (64 * KiB);
            if (rng() % 3 == 0) bytes = align_up(bytes, 256);
            req.push_back({"buf" + std::to_string(i), bytes, std::min(a, b) - 3, std::max(a, b) - 3});
        }
        const MemoryPlan plan = seaopt::plan_memory(req, alignment);
        ASSERT_NO_THROW(seaopt::verify_memory_plan(plan)) << "set " << set;
        ASSERT_EQ(plan.buffers.size(), req.size());
        const uint64_t peak = seaopt::peak_live_bytes(req);
        uint64_t aligned_sum = 0;
        for (const BufferRequest &r : req) aligned_sum += align_up(r.bytes, alignment);
        ASSERT_GE(plan.arena_bytes, peak) << "set " << set;
        ASSERT_LE(plan.arena_bytes, aligned_sum) << "set " << set;
        if (alignment == 1) {
            ASSERT_LE(plan.arena_bytes, seaopt::total_requested_bytes(req)) << "set " << set;
        }
        if (plan.arena_bytes == peak) ++optimal;
        // Shuffled input: the same plan.
        std::shuffle(req.begin(), req.end(), rng);
        const MemoryPlan again = seaopt::plan_memory(req, alignment);
        ASSERT_EQ(offsets(again), offsets(plan)) << "set " << set;
    }
    std::printf("random stress: %llu of 500 plans reach the peak-live lower bound exactly\n",
                (unsigned long long)optimal);
}

TEST(MemoryPlan, FormatListsTheLargestBuffers) {
    std::vector<BufferRequest> req;
    for (int i = 0; i < 15; ++i) req.push_back({"buffer_" + std::to_string(i), (uint64_t)(i + 1) * MiB, i, i + 1});
    const MemoryPlan plan = seaopt::plan_memory(req);
    const std::string text = seaopt::format_memory_plan(plan, 4);
    std::printf("%s", text.c_str());
    EXPECT_EQ(text.rfind("memory plan: arena ", 0), 0u) << text;
    EXPECT_NE(text.find("buffer_14 "), std::string::npos) << text;
    EXPECT_NE(text.find("buffer_11 "), std::string::npos) << text;
    EXPECT_EQ(text.find("buffer_10 "), std::string::npos) << text;  // 5th largest: not shown
    EXPECT_NE(text.find("11 more buffers"), std::string::npos) << text;
    EXPECT_NE(text.find("15.000"), std::string::npos) << text;  // MiB of the largest
    EXPECT_NE(text.find("14..15"), std::string::npos) << text;  // its steps
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1 + 1 + 4 + 1);
}

namespace {

// The period plan applied to every layer: the forward's steps unrolled over n_layer layers, each
// per-layer buffer replicated as "blk.L.name" at the same offset, buffers that span the loop
// stretched over it, and the head shifted after it. verify_memory_plan on that proves the one
// offset per buffer is valid for the whole forward.
MemoryPlan unroll(const MemoryPlan &period, uint32_t n_layer) {
    const int L0 = seaopt::kOptStepLayer0, P = seaopt::kOptStepsPerLayer, shift = P * (int)(n_layer - 1);
    auto in_body = [&](int s) { return s >= L0 && s < L0 + P; };
    auto map_first = [&](int s) { return s >= L0 + P ? s + shift : s; };
    auto map_last = [&](int s) { return s >= L0 ? s + shift : s; };
    MemoryPlan out;
    out.alignment = period.alignment;
    out.arena_bytes = period.arena_bytes;
    for (const PlannedBuffer &b : period.buffers) {
        if (in_body(b.req.first_step) && in_body(b.req.last_step)) {
            for (uint32_t l = 0; l < n_layer; ++l) {
                PlannedBuffer c = b;
                c.req.name = "blk." + std::to_string(l) + "." + b.req.name;
                c.req.first_step += P * (int)l;
                c.req.last_step += P * (int)l;
                out.buffers.push_back(c);
            }
        } else {
            PlannedBuffer c = b;
            c.req.first_step = map_first(b.req.first_step);
            c.req.last_step = map_last(b.req.last_step);
            out.buffers.push_back(c);
        }
    }
    return out;
}

struct OptCase {
    const char *model;
    seaopt::OptHparams hp;
    uint32_t T, N;
};

}  // namespace

TEST(MemoryPlan, OptForwardBuffers) {
    const seaopt::OptHparams hp = opt_1_3b();
    const uint64_t T = 2048, N = 1, C = 2048, F = 8192;
    const std::vector<BufferRequest> req = seaopt::opt_forward_buffers(hp, (uint32_t)T, (uint32_t)N);
    std::map<std::string, BufferRequest> by_name;
    for (const BufferRequest &r : req) by_name[r.name] = r;
    EXPECT_EQ(by_name.count("embd_proj_in"), 0u);  // no projection in OPT-1.3B
    EXPECT_EQ(by_name.count("head_proj16"), 0u);
    EXPECT_EQ(by_name.at("x").bytes, 4 * T * C);
    EXPECT_EQ(by_name.at("h16").bytes, 2 * T * C);
    EXPECT_EQ(by_name.at("qkv").bytes, 2 * T * 3 * C);
    EXPECT_EQ(by_name.at("attn").bytes, 2 * T * C);
    EXPECT_EQ(by_name.at("ff").bytes, 2 * T * F);
    EXPECT_EQ(by_name.at("tiles").bytes, 16 * T);
    EXPECT_EQ(by_name.at("output_rows").bytes, 4 * T);  // every token may want logits; the head runs in chunks of N
    EXPECT_EQ(by_name.at("head_x").bytes, 4 * N * C);
    EXPECT_EQ(by_name.at("head16").bytes, 2 * N * C);
    EXPECT_EQ(by_name.at("logits").bytes, 4 * N * 50272);
    EXPECT_EQ(by_name.at("targets").bytes, 4 * T);  // the fused loss's target per output row
    EXPECT_EQ(by_name.at("nll").bytes, 4 * T);  // one NLL per output row, copied out once
    // Ops in one layer: ff and qkv never live at once, so they may share.
    const BufferRequest &qkv = by_name.at("qkv"), &ff = by_name.at("ff");
    EXPECT_TRUE(qkv.last_step < ff.first_step);
    const MemoryPlan plan = seaopt::plan_memory(req);
    EXPECT_EQ(offsets(plan).at("qkv"), offsets(plan).at("ff"));
    // The logits live to the end.
    int last = 0;
    for (const BufferRequest &r : req) last = std::max(last, r.last_step);
    EXPECT_EQ(by_name.at("logits").last_step, last);
    // The fused loss reads the targets after the lm_head GEMM; nll is written chunk by chunk, so it
    // lives through the whole head (from its first op, the gather) to the copy out.
    EXPECT_EQ(by_name.at("targets").first_step, 0);
    EXPECT_EQ(by_name.at("targets").last_step, last);
    EXPECT_EQ(by_name.at("nll").first_step, by_name.at("head_x").first_step);
    EXPECT_EQ(by_name.at("nll").last_step, last);
    // The lm_head GEMM reads head_x itself (the final LayerNorm fused into it): head_x lives to the
    // logits' first step, so the two never share bytes.
    EXPECT_EQ(by_name.at("head_x").last_step, by_name.at("logits").first_step);

    // Projection (OPT-350m, post-LN): the extra buffers, and h16 live through the layer period.
    const seaopt::OptHparams hp350 = opt_350m();
    by_name.clear();
    for (const BufferRequest &r : seaopt::opt_forward_buffers(hp350, 100, 3)) by_name[r.name] = r;
    EXPECT_EQ(by_name.at("embd_proj_in").bytes, 2u * 100 * 512);
    EXPECT_EQ(by_name.at("embd_proj_in").first_step, 1);
    EXPECT_EQ(by_name.at("embd_proj_in").last_step, 1);
    EXPECT_EQ(by_name.at("head_proj16").bytes, 2u * 3 * 512);
    EXPECT_EQ(by_name.at("h16").first_step, seaopt::kOptStepLayer0);
    EXPECT_EQ(by_name.at("h16").last_step, seaopt::kOptStepLayer0 + seaopt::kOptStepsPerLayer - 1);

    EXPECT_EQ(error_code([&] { seaopt::opt_forward_buffers(hp, 0, 0); }), SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(error_code([&] { seaopt::opt_forward_buffers(hp, 4, 5); }), SEAOPT_ERR_INVALID_ARGUMENT);
    // No outputs (a prefill that only fills the KV cache): the head buffers are empty.
    const MemoryPlan no_out = seaopt::plan_memory(seaopt::opt_forward_buffers(hp, 16, 0));
    seaopt::verify_memory_plan(no_out);
}

TEST(MemoryPlan, OptShapes) {
    const std::vector<OptCase> cases = {
        {"OPT-1.3B", opt_1_3b(), 2048, 1}, {"OPT-1.3B", opt_1_3b(), 2048, 2048}, {"OPT-1.3B", opt_1_3b(), 1, 1},
        {"OPT-1.3B", opt_1_3b(), 64, 64},  {"OPT-350m", opt_350m(), 2048, 1},    {"OPT-350m", opt_350m(), 2048, 2048},
        {"OPT-350m", opt_350m(), 1, 1},
    };
    for (const OptCase &c : cases) {
        SCOPED_TRACE(std::string(c.model) + " T=" + std::to_string(c.T) + " N=" + std::to_string(c.N));
        const std::vector<BufferRequest> req = seaopt::opt_forward_buffers(c.hp, c.T, c.N);
        const MemoryPlan plan = seaopt::plan_memory(req);
        ASSERT_NO_THROW(seaopt::verify_memory_plan(plan));
        const uint64_t peak = seaopt::peak_live_bytes(req), sum = seaopt::total_requested_bytes(req);
        std::printf("%s T=%u N=%u: arena %.2f MiB (%llu bytes), peak live %.2f MiB, naive sum %.2f MiB\n", c.model, c.T,
                    c.N, (double)plan.arena_bytes / MiB, (unsigned long long)plan.arena_bytes, (double)peak / MiB,
                    (double)sum / MiB);
        if (c.T == 2048) std::printf("%s", seaopt::format_memory_plan(plan, 6).c_str());
        EXPECT_GE(plan.arena_bytes, peak);
        // Greedy reaches the lower bound up to alignment padding on these shapes.
        EXPECT_LE(plan.arena_bytes, peak + plan.buffers.size() * plan.alignment);
        EXPECT_LT(plan.arena_bytes, sum);
        // Well below the naive sum. With logits for every token the logits dominate both (they can
        // share with nothing but the layer buffers): then what is left must pack well below its sum.
        const uint64_t logits = 4ull * c.N * c.hp.n_vocab;
        if (c.T >= 64 && c.N == 1) {
            EXPECT_LT((double)plan.arena_bytes, 0.7 * (double)sum);
        }
        if (c.T >= 64 && c.N > 1) {
            EXPECT_LT((double)(plan.arena_bytes - logits), 0.5 * (double)(sum - logits));
        }

        // The one-period plan is valid for every layer of the unrolled forward.
        const MemoryPlan unrolled = unroll(plan, c.hp.n_layer);
        ASSERT_NO_THROW(seaopt::verify_memory_plan(unrolled));
        std::vector<BufferRequest> unrolled_req;
        for (const PlannedBuffer &b : unrolled.buffers) unrolled_req.push_back(b.req);
        EXPECT_EQ(seaopt::peak_live_bytes(unrolled_req), peak);
    }
    // The headline number, exactly: OPT-1.3B at T=2048, N=1 peaks at FC1 with x, h16 and ff live,
    // (4C + 2C + 2F) bytes x T = 56 MiB, plus the metadata (qkv and attn fit in ff's bytes).
    const uint64_t T = 2048, C = 2048, F = 8192;
    const MemoryPlan p1 = seaopt::plan_memory(seaopt::opt_forward_buffers(opt_1_3b(), 2048, 1));
    const uint64_t fc1_live = 4 * T * C + 2 * T * C + 2 * T * F + (4 + 4 + 16) * T;  // + positions, seq_ids, tiles
    EXPECT_EQ(p1.arena_bytes, fc1_live + 4 * T + 4 * T);  // + output_rows and targets (an int32 per token each)
    EXPECT_EQ(p1.arena_bytes, seaopt::peak_live_bytes(seaopt::opt_forward_buffers(opt_1_3b(), 2048, 1)));
}

TEST(MemoryPlan, UnrolledCheckCatchesACarriedBuffer) {
    // If h16 of a post-LN model were planned as if dead at the end of the layer (a wrong lifetime),
    // the unrolled check would have to notice whenever another buffer took its bytes. Build such a
    // wrong period by hand: "carry" written at the last op of the layer and read by op 1 of the next
    // layer, declared (wrongly) as [last op, last op]; "tmp" lives at ops 0..1 and shares its bytes.
    const int L0 = seaopt::kOptStepLayer0, last = L0 + seaopt::kOptStepsPerLayer - 1;
    MemoryPlan wrong = seaopt::plan_memory({{"carry", 1024, last, last}, {"tmp", 1024, L0, L0 + 1}});
    ASSERT_EQ(offsets(wrong).at("carry"), offsets(wrong).at("tmp"));
    // The true lifetime of the carried value spans the boundary: in the unrolled timeline it is
    // [last of layer l, op 1 of layer l + 1]; declared that way, the collision shows.
    MemoryPlan unrolled = unroll(wrong, 3);
    for (PlannedBuffer &b : unrolled.buffers) {
        if (b.req.name.rfind("blk.0.carry", 0) == 0) b.req.last_step = L0 + seaopt::kOptStepsPerLayer + 1;
    }
    EXPECT_EQ(error_code([&] { seaopt::verify_memory_plan(unrolled); }), SEAOPT_ERR_INTERNAL);
}

// The GPU head runs in chunks: every chunk gathers from x by output_rows after an earlier chunk wrote
// logits, so neither may share bytes with logits (it did for 129..1570-token batches of OPT-1.3B).
TEST(MemoryPlan, ChunkedHeadKeepsItsInputs) {
    for (uint32_t T : {129u, 256u, 1000u, 1500u, 2048u}) {
        const MemoryPlan p = seaopt::plan_memory(seaopt::opt_forward_buffers(opt_1_3b(), T, 128));
        const PlannedBuffer *logits = nullptr;
        for (const PlannedBuffer &b : p.buffers) {
            if (b.req.name == "logits") logits = &b;
        }
        ASSERT_NE(logits, nullptr);
        for (const PlannedBuffer &b : p.buffers) {
            if (b.req.name != "x" && b.req.name != "output_rows") continue;
            const bool disjoint = b.offset + b.req.bytes <= logits->offset || logits->offset + logits->req.bytes <= b.offset;
            EXPECT_TRUE(disjoint) << b.req.name << " shares bytes with logits at T=" << T;
        }
    }
}
