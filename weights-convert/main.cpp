// seaopt-convert HF_DIR -o OUT.gguf [--outtype f16|bf16|f32|q8_0] [--name NAME] [--no-progress]
//                [--sea CHECKPOINT [--sea-k K]]
//
// Converts a Hugging Face OPT checkpoint directory (config.json, tokenizer.json or vocab.json + merges.txt, and
// model.safetensors / shards / pytorch_model.bin) into a seaopt GGUF file. --sea adds the SEA
// estimator of a checkpoint of the authors' trainer (checkpoint.pth, DeepSpeed's
// mp_rank_00_model_states.pt or a .safetensors state_dict), whose fine-tuned OPT weights replace
// HF_DIR's (weights-convert/sea_checkpoint.h).
#include <cstdio>
#include <exception>
#include <string>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "engine/error.h"
#include "model/opt_format.h"
#include "tools/common/cli_parse.h"
#include "weights-convert/convert.h"
#include "weights-convert/interrupt_cleanup.h"

namespace {

using namespace seaopt::convert;

double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

// A redrawn bar on a terminal; otherwise (a log, a pipe) one line per ~10 %.
class ProgressPrinter {
public:
    explicit ProgressPrinter(bool tty) : tty_(tty) {}

    void operator()(const ConvertProgress &p) {
        const int pct = p.bytes_total ? (int)(100.0 * (double)p.bytes_done / (double)p.bytes_total) : 100;
        if (tty_) {
            constexpr int kWidth = 30;
            const int filled = pct * kWidth / 100;
            std::string bar(filled, '#');
            bar.append(kWidth - filled, '.');
            std::fprintf(stderr, "\r[%s] %3d%%  tensor %zu/%zu  %.1f/%.1f MiB  %-32.32s", bar.c_str(), pct,
                         p.tensor_index + 1, p.n_tensors, mib(p.bytes_done), mib(p.bytes_total),
                         p.tensor_name ? p.tensor_name->c_str() : "");
            std::fflush(stderr);
            drawn_ = true;
        } else if (pct >= next_pct_) {
            std::fprintf(stderr, "seaopt-convert: %3d%%  tensor %zu/%zu  %.1f/%.1f MiB\n", pct, p.tensor_index + 1,
                         p.n_tensors, mib(p.bytes_done), mib(p.bytes_total));
            next_pct_ = (pct / 10 + 1) * 10;
        }
    }
    void finish() {
        if (drawn_) std::fprintf(stderr, "\n");
        drawn_ = false;
    }

private:
    bool tty_;
    bool drawn_ = false;
    int next_pct_ = 0;
};

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"seaopt-convert: converts a Hugging Face OPT checkpoint directory to a seaopt GGUF file",
                 "seaopt-convert"};
    std::string input_dir, output, outtype = "f16", name, sea;
    uint32_t sea_k = 0;
    bool no_progress = false;
    app.add_option("HF_DIR", input_dir, "checkpoint directory (config.json; tokenizer.json, or vocab.json and merges.txt; the weights)")
        ->required();
    app.add_option("-o,--output", output, "output GGUF file")->required();
    app.add_option("--outtype", outtype,
                   "type of the tensors in the output: f16 (default), bf16 or f32; q8_0: the blocks' weight matrices "
                   "as Q8_0 (8-bit, ggml's format), the rest f16")
        ->check(CLI::IsMember({"f16", "bf16", "f32", "q8_0"}));
    app.add_option("--name", name, "general.name (default: the directory's name)");
    app.add_flag("--no-progress", no_progress, "print no progress");
    CLI::Option *sea_opt = app.add_option(
        "--sea", sea,
        "SEA checkpoint to import the estimator from (trainer checkpoint.pth, DeepSpeed mp_rank_00_model_states.pt "
        "or .safetensors); its fine-tuned OPT weights replace HF_DIR's");
    app.add_option("--sea-k", sea_k, "SEA sparsity budget k (default: the trainer config's, else 64)")
        ->check(CLI::Range(1u, seaopt::kSeaMaxK))
        ->needs(sea_opt);
    int exit_status = 0;
    if (!seaopt_tools::parse_command_line(app, argc, argv, &exit_status)) return exit_status;
    install_interrupt_cleanup();

    ProgressPrinter printer(isatty(STDERR_FILENO) == 1);
    try {
        ConvertOptions opt;
        opt.input_dir = input_dir;
        opt.output_path = output;
        opt.q8_0 = outtype == "q8_0";
        opt.outtype = opt.q8_0 ? seaopt::convert::DType::F16 : parse_outtype(outtype);
        opt.name = name;
        opt.sea_checkpoint = sea;
        opt.sea_k = sea_k;
        ProgressFn progress;
        if (!no_progress) progress = [&](const ConvertProgress &p) { printer(p); };
        const ConvertResult r = convert_checkpoint(opt, progress);
        printer.finish();
        std::printf("seaopt-convert: wrote %s: %zu tensors, %.1f M parameters, %s, %.1f MiB (%llu bytes) from %s%s in %.2f s\n",
                    output.c_str(), r.n_tensors, (double)r.n_params / 1e6, opt.q8_0 ? "q8_0" : outtype_name(opt.outtype), mib(r.file_bytes),
                    (unsigned long long)r.file_bytes, r.source_format.c_str(),
                    r.n_skipped_tied_lm_head ? " (tied lm_head.weight skipped)" : "", r.seconds);
        if (r.has_sea) {
            std::printf("seaopt-convert: SEA from %s (%s): %zu estimator tensors (f32), k %u (%s), K %u, m %u, d' %u, "
                        "%u positions; %zu OPT tensors replaced by the fine-tuned ones; skipped %zu unused SEA and %zu "
                        "teacher entries\n",
                        sea.c_str(), r.sea_format.c_str(), r.n_sea_tensors, r.sea.k, r.sea_k_source.c_str(),
                        r.sea.compressed_width, r.sea.random_features, r.sea.hidden, r.sea.position_table_length,
                        r.n_opt_replaced, r.n_sea_ignored, r.n_teacher_ignored);
            for (const std::string &n : r.notes) std::printf("seaopt-convert: note: %s\n", n.c_str());
            if (!r.sea_engine_warning.empty()) {
                std::fprintf(stderr, "seaopt-convert: warning: %s\n", r.sea_engine_warning.c_str());
            }
        }
        return 0;
    } catch (const std::exception &e) {
        printer.finish();
        std::fprintf(stderr, "seaopt-convert: error: %s\n", e.what());
        return 1;
    }
}
