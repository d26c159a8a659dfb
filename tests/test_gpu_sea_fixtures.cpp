// The CUDA SEA (attention/sea_cuda.h) against the PyTorch reference (tests/sea/sea_reference.py) through its
// fixtures: every *.safetensors of SEAOPT_SEA_FIXTURES=<dir>, else the committed small set tests/data/sea (format
// and rules: tests/sea/README.md). The loading, the selection/tie rule and the yardsticks are those of the CPU test
// (tests/sea_fixture_check.h, SeaCpu.MatchesThePyTorchReference); the bounds are the README's GPU ones.
//
// Inputs: the fixture's fp16 q (already ·1/8), k, v in the engine's fused qkv layout [T, 3C] with q_scale = 1, so the
// kernels see q_eff = fp32(q16)·1, exactly the q the CPU reference gets (checked: every value is an fp16 value).
// Prefill fixtures: sea_attention_prefill_cuda over all T rows with the SeaPrefillDebug copies ([T, H, K] Â,
// [T, H, ⌈K/32⌉] cell bits, [T, H] key count and key sum, [T, H, 2] gates), then:
//   Â         max |gpu − ref.probs| ≤ 2·max |naive16.probs − ref.probs| (printed next to torch fp32's own error);
//   gates     |gpu − ref.s_prob/s_mix| ≤ 1e-4·max(1, |ref|) (the end-to-end gate rule of tests/test_gpu_sea.cpp);
//   budget    the selected cells of every query row number ref.topk_n (a boundary-tie flip swaps cells, it keeps
//             the count; the kernel exposes no n_t of its own);
//   mask      compare_selection: (query, head) rows whose cells differ must be boundary ties; at most
//             max(2, 0.1% of the H·T rows);
//   expansion on the (query, head) rows whose cells agree, key_count and key_sum equal ref.key_count/ref.key_sum
//             (the interval map and the cap are not exposed otherwise);
//   output    on those rows, max |gpu − ref.out| ≤ 2·max |naive16.out − ref.out| + 1e-4 (fp16 output); no output
//             may be non-finite (the buffer starts as NaN).
// Decode fixtures: the prefill of positions 0..T0-1 with state_out (the state against state.*: sums relative,
// CNN history rings within 1e-3), then one sea_attention_decode_cuda call (R = 1) per position T0..T-1, the row's
// key and value written into a KV cache [head][pos][64] (NaN beyond) before each step. The decode has no debug
// output, but its scratch (sea_decode_scratch_layout) still holds the step's gates, Â and cell bits after the call,
// so the same rules apply against dec.* with f32.dec.* / naive16.dec.* as the yardsticks (only key counts and sums
// are not available). One line of measured numbers per fixture. Skipped without a GPU (tests/gpu_test_main.cpp).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "attention/sea_cpu.h"
#include "attention/sea_cuda.h"
#include "attention/sea_layout.h"
#include "engine/fp16.h"
#include "gpu_sea_test_util.h"
#include "sea_fixture_check.h"

namespace {

using seaopt::cuda::half_t;
using seaopt_test::cells_of_mask;
using seaopt_test::cuda_ok;
using seaopt_test::DeviceBuffer;
using seaopt_test::DeviceParams;
using seaopt_test::download;
using seaopt_test::FixtureRun;
using seaopt_test::FixtureYardsticks;
using seaopt_test::SeaFixture;
using seaopt_test::SelectionRow;
using seaopt_test::SelectionTally;
using seaopt_test::track_max;
using seaopt_test::upload;

constexpr size_t kD = seaopt::cpu::kSeaHeadDim;
constexpr float kQScale = 1.0f;         // the fixture's q is already ·1/8
constexpr size_t kTieRowsAtLeast = 2;   // as tests/test_gpu_sea.cpp
constexpr double kGateTol = 1e-4;       // ·max(1, |ref|)
constexpr double kOutSlack = 1e-4;      // the README's GPU output rule: 2×-naive16 + 1e-4
constexpr double kHistoryTol = 1e-3;    // the decoder image tolerance of tests/test_gpu_sea.cpp

// q, k, v as fp16 [T, 3C]; counts the values that do not survive fp32 -> fp16 -> fp32 (must be 0: then the GPU
// reads exactly the q, k, v that the CPU reference and the truth were computed from).
std::vector<uint16_t> fused_qkv16(const FixtureRun &r, size_t &not_fp16) {
    const size_t C = r.H * kD;
    std::vector<uint16_t> qkv(r.T * 3 * C);
    not_fp16 = 0;
    for (size_t t = 0; t < r.T; ++t) {
        for (size_t part = 0; part < 3; ++part) {
            const std::vector<float> &src = part == 0 ? r.q : part == 1 ? r.k : r.v;
            for (size_t c = 0; c < C; ++c) {
                const float x = src[t * C + c];
                const uint16_t h = seaopt::f32_to_f16(x);
                not_fp16 += seaopt::f16_to_f32(h) != x;
                qkv[t * 3 * C + part * C + c] = h;
            }
        }
    }
    return qkv;
}

std::vector<float> to_f32(const std::vector<uint16_t> &h) {
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); ++i) f[i] = seaopt::f16_to_f32(h[i]);
    return f;
}

size_t count_non_finite(const std::vector<float> &x) {
    return (size_t)std::count_if(x.begin(), x.end(), [](float v) { return !std::isfinite(v); });
}

// max |got − ref| / max(1, |ref|) of H gate pairs (got [H, 2], ref s_prob and s_mix at ref + h·stride).
double gate_err(const float *got, const float *s_prob, const float *s_mix, size_t H, size_t stride) {
    double worst = 0.0;
    for (size_t h = 0; h < H; ++h) {
        for (size_t g = 0; g < 2; ++g) {
            const double ref = (g == 0 ? s_prob : s_mix)[h * stride];
            track_max(worst, std::fabs((double)got[h * 2 + g] - ref) / std::max(1.0, std::fabs(ref)));
        }
    }
    return worst;
}

// The measured errors of one fixture (over its prefill rows or its decode steps), for the rules below.
struct GpuMeasured {
    double p_err = 0, g_err = 0, o_err = 0;  // Â, gates (relative), output on the agreeing (query, head) rows
    SelectionTally tally;
    size_t budget_diff = 0, non_finite = 0;
};

// The README's GPU rules on what one fixture measured; returns the measured numbers as a line of text.
std::string expect_gpu_rules(const GpuMeasured &m, const FixtureYardsticks &y, size_t rows) {
    const double p_tol = 2.0 * y.p_n16, o_tol = 2.0 * y.o_n16 + kOutSlack;
    EXPECT_LE(m.p_err, p_tol) << "estimated probabilities beyond 2·naive16";
    EXPECT_LE(m.g_err, kGateTol) << "gate logits";
    seaopt_test::expect_selection_rules(m.tally, kTieRowsAtLeast);
    EXPECT_EQ(m.budget_diff, 0u) << "query rows whose number of selected cells is not the truth's n_t";
    EXPECT_LE(m.o_err, o_tol) << "output beyond the 2×-naive-fp16 rule + 1e-4";
    EXPECT_EQ(m.non_finite, 0u) << "outputs not written or not finite";
    char line[1024];
    std::snprintf(line, sizeof line,
                  "max|ΔÂ| %.3g (torch fp32 %.3g, naive16 %.3g; bound 2·naive16 %.3g), max|Δgate| %.3g (rel.); budget "
                  "%zu/%zu rows differ; masks: %zu of %zu (query, head) rows differ (%zu tie query rows, %zu others; "
                  "limit %zu); max|Δout| %.3g on agreeing rows: %.2g of the bound 2·naive16 + 1e-4 = %.3g (torch fp32 "
                  "%.3g); %zu non-finite outputs",
                  m.p_err, y.p_f32, y.p_n16, p_tol, m.g_err, m.budget_diff, rows, m.tally.head_rows_diff,
                  m.tally.head_rows, m.tally.tie_rows, m.tally.bad_rows,
                  seaopt_test::tie_row_limit(m.tally, kTieRowsAtLeast), m.o_err, m.o_err / o_tol, o_tol, y.o_f32,
                  m.non_finite);
    return line;
}

struct GpuPrefill {
    std::vector<float> out;         // [T, C] (fp16 values)
    std::vector<float> gates;       // [T, H, 2]
    std::vector<float> probs;       // [T, H, K]
    std::vector<uint32_t> mask;     // [T, H, ⌈K/32⌉]
    std::vector<int32_t> key_count; // [T, H]
    std::vector<uint32_t> key_sum;  // [T, H]
};

// Positions 0..T-1 of the fused qkv buffer; every buffer starts as NaN / all-ones bytes, so nothing unwritten passes.
GpuPrefill run_prefill(const seaopt::cpu::SeaConfig &cfg, const seaopt::cuda::SeaDeviceParams &dp,
                       const DeviceBuffer &qkv, size_t T, void *state_out) {
    const size_t H = cfg.n_head, K = cfg.K, C = H * kD, KW = (K + 31) / 32;
    DeviceBuffer scratch(seaopt::cuda::sea_prefill_scratch_bytes(cfg, T)), out(T * C * 2), gates(T * H * 2 * 4),
        probs(T * H * K * 4), mask(T * H * KW * 4), count(T * H * 4), sum(T * H * 4);
    for (DeviceBuffer *b : {&scratch, &out, &gates, &probs, &mask, &count, &sum}) b->fill(0xFF);
    seaopt::cuda::SeaPrefillDebug dbg;
    dbg.gates = gates.as<float>();
    dbg.probs = probs.as<float>();
    dbg.cell_mask = mask.as<uint32_t>();
    dbg.key_count = count.as<int32_t>();
    dbg.key_sum = sum.as<uint32_t>();
    seaopt::cuda::sea_attention_prefill_cuda(cfg, dp, seaopt::cuda::sea_qkv_fused(qkv.as<half_t>(), (int)H), kQScale,
                                             (int)T, out.as<half_t>(), (int64_t)C, scratch.as<void>(), scratch.bytes(),
                                             /*stream*/ nullptr, &dbg, state_out);
    cuda_ok(cudaDeviceSynchronize(), "sea_attention_prefill_cuda");
    GpuPrefill g;
    g.out = to_f32(download<uint16_t>(out, T * C));
    g.gates = download<float>(gates, T * H * 2);
    g.probs = download<float>(probs, T * H * K);
    g.mask = download<uint32_t>(mask, T * H * KW);
    g.key_count = download<int32_t>(count, T * H);
    g.key_sum = download<uint32_t>(sum, T * H);
    return g;
}

void check_prefill_fixture(const SeaFixture &f) {
    const FixtureRun r = seaopt_test::fixture_run(f);
    const size_t H = r.H, K = r.K, T = r.T, C = H * kD;
    size_t not_fp16 = 0;
    const std::vector<uint16_t> qkv16 = fused_qkv16(r, not_fp16);
    ASSERT_EQ(not_fp16, 0u) << "q, k, v values that are not fp16: the GPU would not see the reference's inputs";
    const DeviceParams dp = seaopt_test::upload_params(r.cfg, r.params);
    const auto d_qkv = upload(qkv16);
    const GpuPrefill g = run_prefill(r.cfg, dp.view, *d_qkv, T, nullptr);

    // Per query row: Â and gates (token-major here, head-major in the fixture), budget, selection, and on the
    // agreeing (query, head) rows the expansion and the output.
    const std::vector<std::vector<int32_t>> cells = cells_of_mask(g.mask, r.cfg, T);
    const std::vector<float> &ref_p = f.get("ref.probs", H * T * K), &topk_n = f.get("ref.topk_n", T);
    const std::vector<float> &ref_sp = f.get("ref.s_prob", H * T), &ref_sm = f.get("ref.s_mix", H * T);
    const std::vector<float> &key_count = f.get("ref.key_count", H * T), &key_sum = f.get("ref.key_sum", H * T);
    const std::vector<float> &ref_out = f.get("ref.out", H * T * kD);
    GpuMeasured m;
    size_t key_diff = 0, agreeing = 0;
    for (size_t t = 0; t < T; ++t) {
        const std::string where = f.file + " row " + std::to_string(t);
        for (size_t h = 0; h < H; ++h)
            track_max(m.p_err, seaopt_test::max_abs_diff(&g.probs[(t * H + h) * K], &ref_p[(h * T + t) * K], K));
        track_max(m.g_err, gate_err(&g.gates[t * H * 2], &ref_sp[t], &ref_sm[t], H, T));
        if ((float)cells[t].size() != topk_n[t] && m.budget_diff++ < 5) {
            ADD_FAILURE() << where << ": " << cells[t].size() << " cells, ref n_t " << topk_n[t];
        }
        SelectionRow row = seaopt_test::fixture_selection_row(f, false, H, K, T, t);
        row.got_p = seaopt_test::row_of_cells(g.probs.data(), H, K, T, t, false);
        row.got_cells = cells[t];
        const std::vector<bool> same = seaopt_test::compare_selection(row, H, K, m.tally, where);
        for (size_t h = 0; h < H; ++h) {
            if (!same[h]) continue;
            ++agreeing;
            const size_t i = h * T + t;
            if ((float)g.key_count[t * H + h] != key_count[i] || g.key_sum[t * H + h] != (uint32_t)key_sum[i]) {
                if (key_diff++ < 5) {
                    ADD_FAILURE() << where << " head " << h << ": " << g.key_count[t * H + h] << " keys (sum "
                                  << g.key_sum[t * H + h] << "), ref " << key_count[i] << " (sum " << key_sum[i] << ")";
                }
            }
            track_max(m.o_err, seaopt_test::max_abs_diff(&g.out[t * C + h * kD], &ref_out[i * kD], kD));
        }
    }
    m.non_finite = count_non_finite(g.out);
    const std::string line = expect_gpu_rules(m, seaopt_test::fixture_yardsticks(f, false, H, K, T), T);
    EXPECT_EQ(key_diff, 0u) << "key counts or key sums on agreeing rows";
    std::printf("[pytorch-gpu] %s: %s; key counts/sums: %zu of %zu agreeing (query, head) rows differ\n",
                f.file.c_str(), line.c_str(), key_diff, agreeing);
}

void check_decode_fixture(const SeaFixture &f) {
    const FixtureRun r = seaopt_test::fixture_run(f);
    const size_t H = r.H, K = r.K, T = r.T, T0 = r.T0, n = T - T0, C = H * kD, KW = (K + 31) / 32;
    const size_t m = r.cfg.n_features, W4 = K / 4;
    ASSERT_GT(T0, 0u);
    ASSERT_GT(n, 0u);
    size_t not_fp16 = 0;
    const std::vector<uint16_t> qkv16 = fused_qkv16(r, not_fp16);
    ASSERT_EQ(not_fp16, 0u) << "q, k, v values that are not fp16: the GPU would not see the reference's inputs";
    const DeviceParams dp = seaopt_test::upload_params(r.cfg, r.params);
    const auto d_qkv = upload(qkv16);

    // The prompt, leaving the decode state (NaN bytes before: a part it does not write shows).
    const size_t state_bytes = seaopt::cuda::sea_decode_state_bytes(r.cfg);
    DeviceBuffer states(state_bytes);
    states.fill(0xFF);
    run_prefill(r.cfg, dp.view, *d_qkv, T0, states.as<void>());

    // The state against state.*, in the fixture's layouts (sea_layout.h: perf [H][m][129] = S_kv | S_k).
    const seaopt::cuda::SeaDecodeStateLayout SL = seaopt::cuda::sea_decode_state_layout(r.cfg);
    const size_t cols = seaopt::cuda::kSeaStateCols, slots = seaopt::cuda::kSeaHistoryRows;
    const std::vector<float> perf = download<float>(states, H * m * cols, SL.perf);
    std::vector<float> S_k(H * m), S_kv(H * m * 2 * kD);
    for (size_t j = 0; j < H * m; ++j) {
        S_k[j] = perf[j * cols + 2 * kD];
        std::copy_n(&perf[j * cols], 2 * kD, &S_kv[j * 2 * kD]);
    }
    const std::vector<float> v_sum = download<float>(states, H * kD, SL.v_sum);
    const std::vector<float> image_ring = download<float>(states, slots * 2 * H * W4, SL.image_ring);
    const std::vector<float> conv1_ring = download<float>(states, slots * 2 * H * W4, SL.conv1_ring);
    const seaopt_test::DecodeStateErr s = seaopt_test::expect_decode_state(
        f, r, S_k, S_kv, v_sum, image_ring.data(), conv1_ring.data(), slots, kHistoryTol);

    // The KV cache [head][pos][64] of the one sequence: the prompt's rows, NaN beyond (reading a later key shows).
    std::vector<uint16_t> kc(H * T * kD, 0xFFFF), vc(H * T * kD, 0xFFFF);
    for (size_t t = 0; t < T0; ++t) {
        for (size_t h = 0; h < H; ++h) {
            std::copy_n(&qkv16[t * 3 * C + C + h * kD], kD, &kc[(h * T + t) * kD]);
            std::copy_n(&qkv16[t * 3 * C + 2 * C + h * kD], kD, &vc[(h * T + t) * kD]);
        }
    }
    const auto kcache = upload(kc), vcache = upload(vc);
    const seaopt::cuda::SeaKvCache cache{kcache->as<half_t>(), vcache->as<half_t>(), (int64_t)(H * T * kD),
                                         (int64_t)(T * kD)};

    // One step per position. The decode has no debug output; its scratch (sea_decode_scratch_layout: [R][H][2]
    // gates, [R][H][K] Â, [R][H][⌈K/32⌉] cell bits, none overwritten by a later kernel of the call) holds the step's.
    const seaopt::cuda::SeaDecodeScratchLayout L = seaopt::cuda::sea_decode_scratch_layout(r.cfg, 1);
    DeviceBuffer scratch(seaopt::cuda::sea_decode_scratch_bytes(r.cfg, 1)), out(C * 2), batch(3 * C * 2), meta(3 * 4);
    const std::vector<float> &ref_p = f.get("dec.probs", n * H * K), &topk_n = f.get("dec.topk_n", n);
    const std::vector<float> &ref_sp = f.get("dec.s_prob", n * H), &ref_sm = f.get("dec.s_mix", n * H);
    const std::vector<float> &ref_out = f.get("dec.out", n * H * kD);
    GpuMeasured me;
    for (size_t i = 0; i < n; ++i) {
        const size_t t = T0 + i;
        const std::string where = f.file + " step " + std::to_string(t);
        // The row's own key and value into the cache, its q, k, v as batch row 0; row 0, position t, sequence 0.
        for (size_t h = 0; h < H; ++h) {
            const size_t off = (h * T + t) * kD;
            cuda_ok(cudaMemcpy(kcache->as<half_t>() + off, &qkv16[t * 3 * C + C + h * kD], kD * 2,
                               cudaMemcpyHostToDevice), "k row");
            cuda_ok(cudaMemcpy(vcache->as<half_t>() + off, &qkv16[t * 3 * C + 2 * C + h * kD], kD * 2,
                               cudaMemcpyHostToDevice), "v row");
        }
        cuda_ok(cudaMemcpy(batch.as<void>(), &qkv16[t * 3 * C], 3 * C * 2, cudaMemcpyHostToDevice), "batch");
        const int32_t rows[3] = {0, (int32_t)t, 0};
        cuda_ok(cudaMemcpy(meta.as<void>(), rows, sizeof rows, cudaMemcpyHostToDevice), "meta");
        scratch.fill(0xFF);
        out.fill(0xFF);
        const seaopt::cuda::SeaDecodeRows dr{meta.as<int32_t>(), meta.as<int32_t>() + 1, meta.as<int32_t>() + 2, 1};
        seaopt::cuda::sea_attention_decode_cuda(r.cfg, dp.view, seaopt::cuda::sea_qkv_fused(batch.as<half_t>(), (int)H),
                                                kQScale, dr, cache, states.as<void>(), state_bytes, out.as<half_t>(),
                                                (int64_t)C, scratch.as<void>(), scratch.bytes(), nullptr);
        cuda_ok(cudaDeviceSynchronize(), "sea_attention_decode_cuda");
        const std::vector<float> got = to_f32(download<uint16_t>(out, C));
        const std::vector<float> gates = download<float>(scratch, H * 2, L.gates);
        const std::vector<float> probs = download<float>(scratch, H * K, L.probs);
        const std::vector<uint32_t> mask = download<uint32_t>(scratch, H * KW, L.cell_mask);

        track_max(me.p_err, seaopt_test::max_abs_diff(probs.data(), &ref_p[i * H * K], H * K));
        track_max(me.g_err, gate_err(gates.data(), &ref_sp[i * H], &ref_sm[i * H], H, 1));
        SelectionRow row = seaopt_test::fixture_selection_row(f, true, H, K, n, i);
        row.got_p = probs;
        row.got_cells = cells_of_mask(mask, r.cfg, 1)[0];
        if ((float)row.got_cells.size() != topk_n[i]) {
            ++me.budget_diff;
            ADD_FAILURE() << where << ": " << row.got_cells.size() << " cells, ref n_t " << topk_n[i];
        }
        const std::vector<bool> same = seaopt_test::compare_selection(row, H, K, me.tally, where);
        for (size_t h = 0; h < H; ++h)
            if (same[h]) track_max(me.o_err, seaopt_test::max_abs_diff(&got[h * kD], &ref_out[(i * H + h) * kD], kD));
        me.non_finite += count_non_finite(got);
    }
    const std::string line = expect_gpu_rules(me, seaopt_test::fixture_yardsticks(f, true, H, K, n), n);
    std::printf("[pytorch-gpu] %s: prefill %zu + %zu decode steps; state rel. err %.3g, history %.3g; %s\n",
                f.file.c_str(), T0, n, s.sums, s.history, line.c_str());
}

}  // namespace

// Every fixture of the set (SEAOPT_SEA_FIXTURES or tests/data/sea); a set without fixtures fails.
TEST(GpuSeaFixtures, MatchesThePyTorchReference) {
    seaopt_test::check_every_sea_fixture(check_prefill_fixture, check_decode_fixture);
}
