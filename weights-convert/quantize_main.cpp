// seaopt-quantize IN.gguf OUT.gguf q8_0
//
// Quantizes a seaopt GGUF (f32, f16 or bf16) to q8_0: the six weight matrices of every block become ggml's Q8_0
// blocks, the rest is copied (weights-convert/quantize.h). llama-quantize's argument order.
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "tools/common/cli_parse.h"
#include "weights-convert/interrupt_cleanup.h"
#include "weights-convert/quantize.h"

int main(int argc, char **argv) {
    CLI::App app{"seaopt-quantize: quantizes a seaopt GGUF model's weight matrices (q8_0: 8-bit, ggml's Q8_0 blocks)",
                 "seaopt-quantize"};
    std::string input, output, type;
    bool quiet = false;
    app.add_option("INPUT", input, "model to quantize (f32, f16 or bf16 GGUF)")->required()->check(CLI::ExistingFile);
    app.add_option("OUTPUT", output, "quantized model to write")->required();
    app.add_option("TYPE", type, "q8_0 (the only type for now)")
        ->required()
        ->transform(CLI::IsMember({"q8_0"}, CLI::ignore_case));
    app.add_flag("--no-progress", quiet, "print no progress");
    int exit_status = 0;
    if (!seaopt_tools::parse_command_line(app, argc, argv, &exit_status)) return exit_status;
    seaopt::convert::install_interrupt_cleanup();
    try {
        int next_pct = 0;
        const auto r = seaopt::convert::quantize_gguf_q8_0(input, output, [&](size_t i, size_t n) {
            const int pct = (int)(100 * (i + 1) / n);
            if (!quiet && pct >= next_pct) {
                std::fprintf(stderr, "seaopt-quantize: %3d%%  tensor %zu/%zu\n", pct, i + 1, n);
                next_pct = (pct / 10 + 1) * 10;
            }
        });
        std::printf("seaopt-quantize: wrote %s: %zu tensors, %zu quantized to q8_0, %.1f MiB -> %.1f MiB of tensor data in "
                    "%.2f s\n",
                    output.c_str(), r.n_tensors, r.n_quantized, (double)r.bytes_in / 1048576.0,
                    (double)r.bytes_out / 1048576.0, r.seconds);
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "seaopt-quantize: error: %s\n", e.what());
        return 1;
    }
}
