// seaopt-attnviz: a PNG of SEA's interpretable attention matrix for one layer and head of a prompt
// (issue 4, item 8). A thin program over seaopt.h (seaopt_attention_maps).
//
//   seaopt-attnviz -m MODEL (-p TEXT | -f FILE) -o OUT.png [--layer L] [--head H] [--sea-k N] [--scale S]
//
// Three panels side by side, each T×T pixels times --scale, 8 white pixels apart: the estimated compressed
// attention [T, K] stretched to T columns, the selected mask expanded to keys, the dense attention.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "seaopt.h"
#include "tools/common/api.h"
#include "tools/common/cli.h"
#include "tools/common/files.h"
#include "tools/common/log.h"
#include "tools/common/png.h"

namespace {

const char *const kProgram = "seaopt-attnviz";
constexpr uint32_t kGap = 8;            // white pixels between the panels
constexpr uint32_t kMinHeight = 512;    // the default scale makes the image at least this tall
constexpr uint32_t kMaxPanel = 16384;   // T·scale at most

int fail(const std::string &message) { return seaopt_tools::fail(kProgram, message); }

struct MapsGuard {
    seaopt_attention_maps_out maps{};
    ~MapsGuard() { seaopt_attention_maps_free(&maps); }
};

// The three panels, row-major RGB: width 3·P + 2·kGap, height P, P = T·scale.
std::vector<uint8_t> render(const seaopt_attention_maps_out &m, uint32_t scale, uint32_t &width, uint32_t &height) {
    const uint32_t T = (uint32_t)m.T, K = (uint32_t)m.K, P = T * scale;
    width = 3 * P + 2 * kGap;
    height = P;
    std::vector<uint8_t> img((size_t)width * height * 3, 255);
    // Per panel, one colour per (t, column), then upscaled.
    std::vector<uint8_t> cell((size_t)T * T * 3);
    const uint8_t kFuture[3] = {0, 0, 0};
    for (int panel = 0; panel < 3; ++panel) {
        for (uint32_t t = 0; t < T; ++t) {
            float row_max = 0.0f;
            if (panel == 0) {
                for (uint32_t c = 0; c < K; ++c) row_max = std::max(row_max, m.estimated[(size_t)t * K + c]);
            } else if (panel == 2) {
                for (uint32_t j = 0; j <= t; ++j) row_max = std::max(row_max, m.dense[(size_t)t * T + j]);
            }
            for (uint32_t x = 0; x < T; ++x) {
                uint8_t *px = cell.data() + ((size_t)t * T + x) * 3;
                if (panel == 0) {
                    const uint32_t c = (uint32_t)std::min<uint64_t>(K - 1, (uint64_t)x * K / T);  // nearest
                    const float v = m.estimated[(size_t)t * K + c];
                    seaopt_tools::colormap_viridis(row_max > 0.0f ? v / row_max : 0.0f, px);
                } else if (x > t) {
                    std::memcpy(px, kFuture, 3);
                } else if (panel == 1) {
                    seaopt_tools::colormap_viridis(m.mask[(size_t)t * T + x] != 0.0f ? 1.0f : 0.0f, px);
                } else {
                    const float v = m.dense[(size_t)t * T + x];
                    seaopt_tools::colormap_viridis(row_max > 0.0f ? v / row_max : 0.0f, px);
                }
            }
        }
        const size_t x0 = (size_t)panel * (P + kGap);
        for (uint32_t y = 0; y < P; ++y) {
            const uint8_t *src_row = cell.data() + (size_t)(y / scale) * T * 3;
            uint8_t *dst = img.data() + ((size_t)y * width + x0) * 3;
            for (uint32_t x = 0; x < P; ++x) std::memcpy(dst + (size_t)x * 3, src_row + (size_t)(x / scale) * 3, 3);
        }
    }
    return img;
}

}  // namespace

static int tool_main(int argc, char **argv) {
    std::string model_path, out_path;
    int32_t layer = 0, head = 0, sea_k = 0, scale = 0;

    CLI::App app{"Write a PNG of SEA's interpretable attention matrix for one layer and head of a prompt: side by "
                 "side (8 white pixels apart), (1) the estimator's compressed attention [T, K] stretched to T "
                 "columns (nearest), (2) the selected mask expanded to T x T keys (yellow = read, purple = not "
                 "read), (3) the dense causal attention T x T. Panels 1 and 3 are scaled per row: each row is "
                 "divided by its largest value, so every row spans the whole colormap (viridis-like: dark purple "
                 "= 0, yellow = the row's maximum). Future keys (j > t) are black. Layers before --layer run dense "
                 "attention; the model runs on the CPU.",
                 kProgram};
    app.add_option("-m,--model", model_path, "model file (seaopt GGUF) with a SEA estimator (seaopt-convert --sea)")
        ->required();
    seaopt_tools::PromptOptions prompt;
    seaopt_tools::add_prompt_options(app, prompt, "the prompt", "read the prompt from a file (bytes)");
    app.add_option("-o,--output", out_path, "the PNG to write")->required();
    app.add_option("--layer", layer, "the layer, 0-based (default 0)");
    app.add_option("--head", head, "the head, 0-based (default 0)");
    app.add_option("--sea-k", sea_k, "SEA's sparsity budget k, about k keys per query per head (default 0: the model's)");
    app.add_option("--scale", scale,
                   "pixels per cell (default 0: the smallest integer making the image at least 512 px tall)");
    int exit_status = 0;
    if (!seaopt_tools::parse_command_line(app, argc, argv, &exit_status)) return exit_status;
    if (!prompt.given()) return fail("give the prompt with -p TEXT or -f FILE");
    if (scale < 0) return fail("--scale " + std::to_string(scale) + " must be >= 1 (or 0 for the default)");
    // The PNG replaces -o's file: never one of the inputs.
    for (const std::string &input : {model_path, prompt.from_file() ? prompt.file : std::string()}) {
        std::error_code ec;
        if (!input.empty() && std::filesystem::equivalent(input, out_path, ec)) {
            return fail("-o/--output " + out_path + " is the same file as the input " + input);
        }
    }
    if (const std::string why = seaopt_tools::png_output_problem(out_path); !why.empty()) {
        return fail("-o/--output: " + why);
    }
    seaopt_tools::install_log(false);
    seaopt_tools::install_png_interrupt_cleanup();  // a signal removes the PNG's temporary file

    std::string text, error;
    if (!prompt.read(text, error)) return fail(error);

    seaopt_model_params mparams = seaopt_model_default_params();
    mparams.device = SEAOPT_DEVICE_CPU;  // the maps are computed by the CPU engine
    const seaopt_tools::ModelPtr model = seaopt_tools::load_model(model_path, mparams);
    if (!model) return fail(seaopt_last_error());

    std::vector<seaopt_token> tokens;
    if (!seaopt_tools::tokenize(model.get(), text, true, true, tokens)) {
        return fail("cannot tokenize " + prompt.source("the prompt") + ": " + seaopt_last_error());
    }

    MapsGuard g;
    if (seaopt_attention_maps(model.get(), tokens.data(), (int32_t)tokens.size(), layer, head, sea_k, &g.maps) !=
        SEAOPT_OK) {
        return fail(seaopt_last_error());
    }
    const seaopt_attention_maps_out &m = g.maps;
    const uint32_t T = (uint32_t)m.T;
    const uint32_t s = scale > 0 ? (uint32_t)scale : std::max<uint32_t>(1, (kMinHeight + T - 1) / T);
    if ((uint64_t)T * s > kMaxPanel) {
        return fail("--scale " + std::to_string(s) + " makes panels of " + std::to_string((uint64_t)T * s) +
                    " pixels for " + std::to_string(T) + " tokens: at most " + std::to_string(kMaxPanel));
    }
    uint32_t width = 0, height = 0;
    const std::vector<uint8_t> img = render(m, s, width, height);
    if (!seaopt_tools::write_png_rgb(out_path, width, height, img, error)) return fail(error);

    std::printf("%s: wrote %s (%u x %u px, scale %u): layer %d, head %d, T = %d tokens, K = %d, k = %d\n", kProgram,
                out_path.c_str(), width, height, s, layer, head, m.T, m.K, m.sea_k);
    std::printf("%s: selected keys %lld of %lld causal (%.1f%%)\n", kProgram, (long long)m.n_selected,
                (long long)m.n_causal, m.n_causal ? 100.0 * (double)m.n_selected / (double)m.n_causal : 0.0);
    return 0;  // guarded_main flushes stdout and reports a failed write
}

int main(int argc, char **argv) { return seaopt_tools::guarded_main(kProgram, argc, argv, tool_main); }
