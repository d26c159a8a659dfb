// The PyTorch-reference fixtures of SEA attention (tests/sea/README.md, format "seaopt-sea-fixture-v1") and the
// README's comparison rules, shared by the CPU test (tests/test_sea_cpu.cpp, SeaCpu.MatchesThePyTorchReference) and
// the CUDA test (tests/test_gpu_sea_fixtures.cpp, GpuSeaFixtures.MatchesThePyTorchReference): loading a fixture,
// its config, parameters and q, k, v in the engine's [T, H·64] layout, the truth's side of a query row's selection,
// the boundary-tie rule of the masks with its tally, the yardsticks of the estimator and output rules (torch fp32 and
// naive fp16), the decode-state comparison, and the loop over the fixtures of a set. Test programs that include it
// link seaopt_convert (the safetensors reader).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention/sea_cpu.h"
#include "engine/fp16.h"
#include "sea_test_util.h"
#include "weights-convert/byte_source.h"
#include "weights-convert/safetensors.h"

namespace seaopt_test {

struct FixtureTensor {
    std::vector<uint64_t> shape;
    std::vector<float> data;
};

struct SeaFixture {
    std::string file;
    std::map<std::string, FixtureTensor> tensors;

    bool has(const std::string &name) const { return tensors.count(name) != 0; }
    // The tensor's values; throws (the test fails) if it is missing or does not hold `numel` values.
    const std::vector<float> &get(const std::string &name, size_t numel) const {
        auto it = tensors.find(name);
        if (it == tensors.end()) throw std::runtime_error(file + ": no tensor " + name);
        if (it->second.data.size() != numel) {
            throw std::runtime_error(file + ": " + name + " has " + std::to_string(it->second.data.size()) +
                                     " values, expected " + std::to_string(numel));
        }
        return it->second.data;
    }
};

// Reads a fixture with the project's safetensors reader; F16 and F32 only (the README's format).
inline SeaFixture load_sea_fixture(const std::string &path) {
    using namespace seaopt::convert;
    FileSource src(path);
    SeaFixture f;
    f.file = path.substr(path.find_last_of('/') + 1);
    for (const SafetensorsTensor &t : read_safetensors_header(src)) {
        size_t n = 1;
        for (uint64_t d : t.shape) n *= (size_t)d;
        FixtureTensor out{t.shape, std::vector<float>(n)};
        std::vector<uint8_t> bytes((size_t)t.n_bytes);
        if (!bytes.empty()) src.read(t.offset, bytes.data(), bytes.size());
        if (t.dtype == DType::F32 && bytes.size() == 4 * n) {
            std::memcpy(out.data.data(), bytes.data(), bytes.size());
        } else if (t.dtype == DType::F16 && bytes.size() == 2 * n) {
            for (size_t i = 0; i < n; ++i)
                out.data[i] = seaopt::f16_to_f32((uint16_t)(bytes[2 * i] | (bytes[2 * i + 1] << 8)));
        } else {
            throw std::runtime_error(f.file + ": tensor " + t.name + " is neither F32 nor F16");
        }
        f.tensors.emplace(t.name, std::move(out));
    }
    return f;
}

// SEAOPT_SEA_FIXTURES=<dir>, else the committed small set.
inline std::string sea_fixture_dir() {
    const char *env = std::getenv("SEAOPT_SEA_FIXTURES");
    return env && *env ? std::string(env) : std::string(SEAOPT_TEST_DATA_DIR) + "/sea";
}

inline std::vector<std::string> sea_fixture_files() {
    std::vector<std::string> files;
    for (const auto &e : std::filesystem::directory_iterator(sea_fixture_dir())) {
        if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    return files;
}

// Every fixture of the set: prefill fixtures (kind prefill, T0 = T) and decode fixtures (T0 < T). A set without
// fixtures (or without a directory) fails: a comparison that compared nothing must not pass.
inline void check_every_sea_fixture(const std::function<void(const SeaFixture &)> &check_prefill,
                                    const std::function<void(const SeaFixture &)> &check_decode) {
    const std::vector<std::string> files = sea_fixture_files();
    ASSERT_FALSE(files.empty()) << "no fixtures in " << sea_fixture_dir();
    size_t prefill = 0, decode = 0;
    for (const std::string &path : files) {
        SCOPED_TRACE(path);
        const SeaFixture f = load_sea_fixture(path);
        const std::vector<float> &c = f.get("config", 8);
        if (c[7] < c[5]) {
            check_decode(f);
            ++decode;
        } else {
            check_prefill(f);
            ++prefill;
        }
    }
    EXPECT_GT(prefill, 0u);
    if (!std::getenv("SEAOPT_SEA_FIXTURES")) {
        EXPECT_GT(decode, 0u);
    }
}

// A fixture's config (the F32 `config` tensor: H, head_dim, k, K, m, T, n_positions, T0), parameters under their
// §5.1 names ("attention." + the SeaTensorSpec key), and q, k, v in the layout of sea_cpu.h ([T, H·64]).
struct FixtureRun {
    seaopt::cpu::SeaConfig cfg;
    seaopt::cpu::SeaParams params;
    size_t H = 0, K = 0, T = 0, T0 = 0;
    std::vector<float> q, k, v;
};

inline FixtureRun fixture_run(const SeaFixture &f) {
    using namespace seaopt::cpu;
    constexpr size_t kD = kSeaHeadDim;
    const std::vector<float> &c = f.get("config", 8);
    FixtureRun r;
    r.H = (size_t)c[0];
    r.K = (size_t)c[3];
    r.T = (size_t)c[5];
    r.T0 = (size_t)c[7];
    if ((size_t)c[1] != kD) throw std::runtime_error(f.file + ": head_dim is not 64");
    r.cfg = sea_make_config(r.H, r.K, (size_t)c[2], (size_t)c[6]);
    r.cfg.n_features = (size_t)c[4];
    for (const SeaTensorSpec &spec : sea_tensor_specs(r.cfg)) {
        size_t n = 1;
        for (size_t d : spec.shape) n *= d;
        r.params.*spec.member = f.get("attention." + spec.key, n);
    }
    // [H, T, 64] -> [T, H·64]: channel h·64 + i of token t. q is stored already scaled by 1/8, which is what
    // sea_attention_prefill_cpu expects (sea_cpu.h: "q is already multiplied by head_dim^-1/2").
    for (const char *name : {"q", "k", "v"}) {
        const std::vector<float> &src = f.get(name, r.H * r.T * kD);
        std::vector<float> &dst = name[0] == 'q' ? r.q : name[0] == 'k' ? r.k : r.v;
        dst.resize(src.size());
        for (size_t h = 0; h < r.H; ++h)
            for (size_t t = 0; t < r.T; ++t)
                std::copy_n(src.data() + (h * r.T + t) * kD, kD, dst.data() + t * r.H * kD + h * kD);
    }
    return r;
}

// worst = max(worst, e), a non-finite e counting as +inf (std::max would drop a NaN: an unwritten output must fail).
inline void track_max(double &worst, double e) { worst = std::max(worst, std::isfinite(e) ? e : INFINITY); }

inline double max_abs_diff(const float *a, const float *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; ++i) track_max(worst, std::fabs((double)a[i] - (double)b[i]));
    return worst;
}

// Query row t of a [H, rows, K] (head_major) or [rows, H, K] tensor as H·K values, flat index h·K + c.
inline std::vector<float> row_of_cells(const float *x, size_t H, size_t K, size_t rows, size_t t, bool head_major) {
    std::vector<float> row(H * K);
    for (size_t h = 0; h < H; ++h)
        std::copy_n(x + (head_major ? h * rows + t : t * H + h) * K, K, row.data() + h * K);
    return row;
}

// Everything the checks of one query row need, flat over the H·K cells (index h·K + c).
struct SelectionRow {
    std::vector<float> ref_p, got_p;  // the truth's Â and ours
    std::vector<uint8_t> ref_sel;     // the truth's mask
    std::vector<int32_t> got_cells;   // our selection (ascending)
    float thresh = 0, next = 0, margin = 0;
};

// The truth's side of query row t: Â, mask, threshold, next and margin from ref.* ([H, T, ·] and [T]) of a prefill
// fixture, or of decode step t from dec.* ([n, H, ·] and [n]); the caller fills got_p and got_cells.
inline SelectionRow fixture_selection_row(const SeaFixture &f, bool decode, size_t H, size_t K, size_t rows, size_t t) {
    const std::string pre = decode ? "dec." : "ref.";
    SelectionRow row;
    row.ref_p = row_of_cells(f.get(pre + "probs", H * rows * K).data(), H, K, rows, t, !decode);
    const std::vector<float> mask = row_of_cells(f.get(pre + "mask", H * rows * K).data(), H, K, rows, t, !decode);
    row.ref_sel.resize(H * K);
    for (size_t i = 0; i < H * K; ++i) row.ref_sel[i] = mask[i] != 0.0f;
    row.thresh = f.get(pre + "topk_thresh", rows)[t];
    row.next = f.get(pre + "topk_next", rows)[t];
    row.margin = f.get(pre + "topk_margin", rows)[t];
    return row;
}

struct SelectionTally {
    size_t head_rows = 0;       // (query, head) rows compared
    size_t head_rows_diff = 0;  // of which with other cells than the truth
    size_t tie_rows = 0;        // query rows that differ at a boundary tie
    size_t bad_rows = 0;        // query rows that differ otherwise (a bug)
};

// Compares one query row's selection with the truth; returns per head whether its cells agree. A differing row
// must be a boundary tie by the README's rule: with E_t = the row's max |ΔÂ| and ε = 2·E_t + 1e-7, ref margin ≤ ε,
// every added cell has ref Â within [thresh − ε, next], every dropped one within [thresh, next + ε].
inline std::vector<bool> compare_selection(const SelectionRow &r, size_t H, size_t K, SelectionTally &tally,
                                           const std::string &where) {
    const size_t HK = H * K;
    std::vector<uint8_t> got(HK, 0);
    for (int32_t c : r.got_cells) got[(size_t)c] = 1;
    double e_t = 0.0;
    for (size_t i = 0; i < HK; ++i) e_t = std::max(e_t, std::fabs((double)r.got_p[i] - (double)r.ref_p[i]));
    const double eps = 2.0 * e_t + 1e-7;
    std::vector<bool> head_same(H, true);
    bool differs = false, tie = true;
    std::string why;
    for (size_t i = 0; i < HK; ++i) {
        if (got[i] == r.ref_sel[i]) continue;
        differs = true;
        head_same[i / K] = false;
        const double p = r.ref_p[i];
        const bool ok = got[i] ? (p >= r.thresh - eps && p <= r.next) : (p >= r.thresh && p <= r.next + eps);
        if (!ok) {
            tie = false;
            why += " cell " + std::to_string(i) + (got[i] ? " added" : " dropped") + " (ref Â " + std::to_string(p) +
                   ")";
        }
    }
    tally.head_rows += H;
    if (!differs) return head_same;
    for (size_t h = 0; h < H; ++h) tally.head_rows_diff += head_same[h] ? 0 : 1;
    if (!(r.margin <= eps)) {
        tie = false;
        why += " ref margin " + std::to_string(r.margin) + " > ε " + std::to_string(eps);
    }
    if (tie) {
        ++tally.tie_rows;
    } else {
        ++tally.bad_rows;
        ADD_FAILURE() << where << ": the selection differs from the truth away from a boundary tie:" << why;
    }
    return head_same;
}

// The (query, head) rows that may select other cells at boundary ties: 0.1% of those compared (the rule),
// and at least `at_least` (0 on the CPU; the GPU tests allow 2, as tests/test_gpu_sea.cpp does).
inline size_t tie_row_limit(const SelectionTally &tally, size_t at_least) {
    return std::max(at_least, tally.head_rows / 1000);
}

inline void expect_selection_rules(const SelectionTally &tally, size_t at_least) {
    EXPECT_EQ(tally.bad_rows, 0u);
    EXPECT_LE(tally.head_rows_diff, tie_row_limit(tally, at_least))
        << "more than 0.1% of the (query, head) rows differ";
}

// The yardsticks of the estimator and output rules over the whole tensor: max |torch fp32 − truth| and
// max |naive16 − truth| of Â and of the output (prefill: ref.*, f32.*, naive16.*; decode: dec.*, f32.dec.*,
// naive16.dec.*, rows = the decode steps).
struct FixtureYardsticks {
    double p_f32 = 0, p_n16 = 0, o_f32 = 0, o_n16 = 0;
};

inline FixtureYardsticks fixture_yardsticks(const SeaFixture &f, bool decode, size_t H, size_t K, size_t rows) {
    const std::string ref = decode ? "dec." : "ref.", f32 = decode ? "f32.dec." : "f32.",
                      n16 = decode ? "naive16.dec." : "naive16.";
    const size_t np = H * rows * K, no = H * rows * seaopt::cpu::kSeaHeadDim;
    FixtureYardsticks y;
    y.p_f32 = max_abs_diff(f.get(f32 + "probs", np).data(), f.get(ref + "probs", np).data(), np);
    y.p_n16 = max_abs_diff(f.get(n16 + "probs", np).data(), f.get(ref + "probs", np).data(), np);
    y.o_f32 = max_abs_diff(f.get(f32 + "out", no).data(), f.get(ref + "out", no).data(), no);
    y.o_n16 = max_abs_diff(f.get(n16 + "out", no).data(), f.get(ref + "out", no).data(), no);
    return y;
}

// A decode fixture's state after the prompt (state.*) against an implementation's: the running sums in the
// fixture's layouts (S_k [H, m], S_kv [H, m, 128], Σv [H·64]) and the CNN history rings (row r in slot r % slots,
// [slots][2H][K/4]). The sums grow like T0, so relative to their size: fp32 sums of T0 terms are within about
// T0·2^-24 (both sides sum in fp32 or better). History rows T0-4..T0-1 (the fixture's [2H, 4, K/4]) within
// hist_tol, absolute.
struct DecodeStateErr {
    double sums = 0, history = 0;
};

inline DecodeStateErr expect_decode_state(const SeaFixture &f, const FixtureRun &r, const std::vector<float> &S_k,
                                          const std::vector<float> &S_kv, const std::vector<float> &v_sum,
                                          const float *image_ring, const float *conv1_ring, size_t slots,
                                          double hist_tol) {
    constexpr size_t kD = seaopt::cpu::kSeaHeadDim;
    const size_t H = r.H, m = r.cfg.n_features, T0 = r.T0, C = 2 * H, W4 = r.K / 4;
    auto rel_err = [](const std::vector<float> &got, const std::vector<float> &want) {
        double worst = 0.0, scale = 1.0;
        for (float w : want) scale = std::max(scale, (double)std::fabs(w));
        for (size_t i = 0; i < want.size(); ++i) track_max(worst, std::fabs((double)got[i] - want[i]) / scale);
        return worst;
    };
    DecodeStateErr e;
    e.sums = std::max({rel_err(S_k, f.get("state.S_k", H * m)), rel_err(S_kv, f.get("state.S_kv", H * m * 2 * kD)),
                       rel_err(v_sum, f.get("state.v_sum", H * kD))});
    EXPECT_LE(e.sums, 1e-5 + (double)T0 * std::ldexp(1.0, -24)) << "decode state sums";
    for (const auto &[name, ring] : {std::pair<const char *, const float *>{"state.img_hist", image_ring},
                                     {"state.c1_hist", conv1_ring}}) {
        const std::vector<float> &want = f.get(name, C * 4 * W4);
        for (size_t i = 0; i < 4; ++i) {
            if (T0 + i < 4) continue;  // before position 0
            const size_t pos = T0 - 4 + i;
            for (size_t c = 0; c < C; ++c)
                for (size_t x = 0; x < W4; ++x)
                    track_max(e.history, std::fabs((double)ring[((pos % slots) * C + c) * W4 + x] -
                                                    want[(c * 4 + i) * W4 + x]));
        }
    }
    EXPECT_LE(e.history, hist_tol) << "decode CNN history";
    return e;
}

}  // namespace seaopt_test
