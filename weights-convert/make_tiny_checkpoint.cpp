// seaopt-make-tiny-checkpoint --out DIR --tokenizer-dir DIR --seed N
//     [--sea FILE [--sea-layout deepspeed|trainer|state-dict|safetensors] [--sea-dtype f16|bf16|f32]
//      [--sea-width K] [--sea-config-k K]]
//
// Writes a small *untrained* OPT in Hugging Face layout (config.json, model.safetensors in F16 with
// "model.decoder." names and no lm_head, vocab.json, merges.txt) for the demo model the build makes
// (models/opt-tiny-untrained.gguf). The weights come from a fixed-seed PRNG implemented here
// (splitmix64 + Box-Muller), seeded per tensor from the seed and the tensor's name, so the file
// is the same on every platform and does not depend on the order tensors are generated in.
// --sea also writes a random SEA checkpoint for this model in one of the layouts of the authors'
// trainer (weights-convert/tiny_sea_checkpoint.h), for seaopt-convert --sea.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/fp16.h"
#include "model/opt_format.h"
#include "tools/common/cli_parse.h"
#include "weights-convert/byte_source.h"
#include "weights-convert/interrupt_cleanup.h"
#include "weights-convert/safetensors_writer.h"
#include "weights-convert/tiny_sea_checkpoint.h"

namespace {

using namespace seaopt::convert;
namespace fs = std::filesystem;

constexpr uint32_t kVocab = 50272, kMaxPos = 2048;

// The shape: the demo model's by default (head_dim 16, which the CUDA engine does not run); tests of
// the CUDA engine ask for OPT's head sizes (64, 80, 128).
struct TinyShape {
    uint32_t hidden = 64, heads = 4, layers = 2, ffn = 256;
};

uint64_t splitmix64(uint64_t &state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Standard normal numbers from splitmix64 via Box-Muller (both outputs of each pair used).
class Normal {
public:
    explicit Normal(uint64_t seed) : state_(seed) {}
    double next() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        const double u1 = ((double)(splitmix64(state_) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
        const double u2 = (double)(splitmix64(state_) >> 11) * 0x1.0p-53;          // [0, 1)
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double a = 6.283185307179586 * u2;
        spare_ = r * std::sin(a);
        has_spare_ = true;
        return r * std::cos(a);
    }

private:
    uint64_t state_;
    double spare_ = 0;
    bool has_spare_ = false;
};

uint64_t name_seed(uint64_t seed, const std::string &name) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    uint64_t s = seed ^ h;
    return splitmix64(s);
}

struct TinyTensor {
    std::string name;  // HF name without the "model." prefix
    std::vector<uint64_t> shape;
};

seaopt::OptHparams tiny_hparams(const TinyShape &shape) {
    seaopt::OptHparams hp;
    hp.n_vocab = kVocab;
    hp.n_ctx_train = kMaxPos;
    hp.n_embd = hp.n_embd_proj = shape.hidden;
    hp.n_head = shape.heads;
    hp.n_layer = shape.layers;
    hp.n_ff = shape.ffn;
    return hp;
}

// The tensors of the tiny model: the shared OPT layout (model/opt_format.h), with PyTorch shapes.
std::vector<TinyTensor> tiny_tensors(const TinyShape &shape) {
    const seaopt::OptHparams hp = tiny_hparams(shape);
    std::vector<TinyTensor> t;
    for (const seaopt::OptTensorSpec &spec : seaopt::opt_tensor_specs(hp, false)) {
        t.push_back({spec.hf_name, std::vector<uint64_t>(spec.ne.rbegin(), spec.ne.rend())});
    }
    return t;
}

bool ends_with(const std::string &s, const char *suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// The F16 bytes of one tensor: embeddings N(0,1) (the token embedding N(0, token_std²)), linear weights
// N(0,1)/sqrt(fan_in), LayerNorm weights 1 + 0.1 N, biases 0.1 N.
std::vector<uint8_t> tensor_bytes(const TinyTensor &t, uint64_t seed, double token_std) {
    Normal rng(name_seed(seed, t.name));
    const bool embedding = t.name.find("embed_") != std::string::npos;
    const bool layer_norm = t.name.find("layer_norm") != std::string::npos;
    const bool bias = ends_with(t.name, ".bias");
    double scale = 1.0, shift = 0.0;
    if (bias) {
        scale = 0.1;
    } else if (layer_norm) {
        scale = 0.1;
        shift = 1.0;
    } else if (!embedding) {
        scale = 1.0 / std::sqrt((double)t.shape[1]);  // [out, in]
    } else if (t.name.find("embed_tokens") != std::string::npos) {
        scale = token_std;
    }
    uint64_t n = 1;
    for (uint64_t d : t.shape) n *= d;
    std::vector<uint8_t> out(n * 2);
    for (uint64_t i = 0; i < n; ++i) {
        const uint16_t h = seaopt::f32_to_f16((float)(shift + scale * rng.next()));
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
    return out;
}

nlohmann::json tiny_config(const TinyShape &shape) {
    return {{"_remove_final_layer_norm", false},
            {"activation_dropout", 0.0},
            {"activation_function", "relu"},
            {"architectures", {"OPTForCausalLM"}},
            {"attention_dropout", 0.0},
            {"bos_token_id", 2},
            {"do_layer_norm_before", true},
            {"dropout", 0.0},
            {"enable_bias", true},
            {"eos_token_id", 2},
            {"ffn_dim", shape.ffn},
            {"hidden_size", shape.hidden},
            {"init_std", 0.02},
            {"layer_norm_elementwise_affine", true},
            {"layerdrop", 0.0},
            {"max_position_embeddings", kMaxPos},
            {"model_type", "opt"},
            {"num_attention_heads", shape.heads},
            {"num_hidden_layers", shape.layers},
            {"pad_token_id", 1},
            {"tie_word_embeddings", true},
            {"torch_dtype", "float16"},
            {"use_cache", true},
            {"vocab_size", kVocab},
            {"word_embed_proj_dim", shape.hidden}};
}

std::string read_whole(const std::string &path) {
    FileSource f(path);
    if (f.size() > (256u << 20)) seaopt::throw_io(path + " is unexpectedly large");
    const std::vector<uint8_t> b = f.read_vec(0, (size_t)f.size());
    return std::string(b.begin(), b.end());
}

void make_tiny_checkpoint(const std::string &out_dir, const std::string &tokenizer_dir, uint64_t seed,
                          const TinyShape &shape, double token_std) {
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (!fs::is_directory(out_dir)) seaopt::throw_io("cannot create directory " + out_dir + ": " + ec.message());

    const std::vector<TinyTensor> tensors = tiny_tensors(shape);
    std::vector<SafetensorsWriteSpec> specs;
    for (const TinyTensor &t : tensors) specs.push_back({"model." + t.name, DType::F16, t.shape});
    write_safetensors(out_dir + "/model.safetensors", specs,
                      [&](size_t i, const ByteSink &sink) {
                          const std::vector<uint8_t> b = tensor_bytes(tensors[i], seed, token_std);
                          sink(b.data(), b.size());
                      },
                      {{"format", "pt"}});
    write_file_atomically(out_dir + "/config.json", tiny_config(shape).dump(2) + "\n");
    for (const char *f : {"vocab.json", "merges.txt"}) {
        write_file_atomically(out_dir + "/" + f, read_whole(tokenizer_dir + "/" + f));
    }
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"seaopt-make-tiny-checkpoint: writes a small untrained OPT checkpoint in Hugging Face layout",
                 "seaopt-make-tiny-checkpoint"};
    std::string out_dir, tokenizer_dir;
    uint64_t seed = 1;
    app.add_option("--out", out_dir, "output directory (created if missing)")->required();
    app.add_option("--tokenizer-dir", tokenizer_dir, "directory with vocab.json and merges.txt")->required();
    app.add_option("--seed", seed, "PRNG seed")->check(seaopt_tools::integer_in_range(0, UINT64_MAX));
    TinyShape shape;
    std::string sea_path, sea_layout = "deepspeed", sea_dtype = "f16";
    uint32_t sea_width = 64;
    int64_t sea_config_k = 0;
    CLI::Option *sea = app.add_option("--sea", sea_path, "also write a random SEA checkpoint for this model to this file");
    app.add_option("--sea-layout", sea_layout, "its layout: deepspeed (default), trainer, state-dict or safetensors")
        ->check(CLI::IsMember({"deepspeed", "trainer", "state-dict", "safetensors"}))
        ->needs(sea);
    app.add_option("--sea-dtype", sea_dtype, "its float type: f16 (default), bf16 or f32")
        ->check(CLI::IsMember({"f16", "bf16", "f32"}))
        ->needs(sea);
    app.add_option("--sea-width", sea_width, "SEA's compressed width K (default 64; the engine needs a multiple of 4)")
        ->check(CLI::Range(4u, 65536u))
        ->needs(sea);
    app.add_option("--sea-config-k", sea_config_k, "trainer layout: the k its config records (default: none)")->needs(sea);
    app.add_option("--hidden", shape.hidden, "hidden size (default 64)")->check(CLI::Range(1u, 65536u));
    app.add_option("--heads", shape.heads, "attention heads (default 4)")->check(CLI::Range(1u, 1024u));
    app.add_option("--layers", shape.layers, "layers (default 2)")->check(CLI::Range(1u, 512u));
    app.add_option("--ffn", shape.ffn, "feed-forward size (default 256)")->check(CLI::Range(1u, 262144u));
    double token_std = 1.0;
    app.add_option("--token-embedding-std", token_std,
                   "standard deviation of the (tied) token embedding (default 1; small values let greedy continuations "
                   "wander instead of repeating the last token)")
        ->check(CLI::Range(1e-3, 1e3));
    int exit_status = 0;
    if (!seaopt_tools::parse_command_line(app, argc, argv, &exit_status)) return exit_status;
    install_interrupt_cleanup();
    try {
        // CLI::Range compares, and NaN fails every comparison: it would pass and give an all-NaN embedding.
        if (!(token_std >= 1e-3 && token_std <= 1e3)) {
            seaopt::throw_invalid_argument("--token-embedding-std must be a number in [0.001, 1000]");
        }
        if (shape.hidden % shape.heads != 0) seaopt::throw_invalid_argument("--hidden must be a multiple of --heads");
        make_tiny_checkpoint(out_dir, tokenizer_dir, seed, shape, token_std);
        std::printf("seaopt-make-tiny-checkpoint: wrote %s (hidden %u, %u heads, %u layers, ffn %u, seed %llu)\n",
                    out_dir.c_str(), shape.hidden, shape.heads, shape.layers, shape.ffn, (unsigned long long)seed);
        if (!sea_path.empty()) {
            TinySeaSpec spec;
            spec.hp = tiny_hparams(shape);
            spec.layout = parse_sea_checkpoint_layout(sea_layout);
            spec.dtype = sea_dtype == "f32" ? DType::F32 : sea_dtype == "bf16" ? DType::BF16 : DType::F16;
            spec.compressed_width = sea_width;
            spec.config_k = sea_config_k;
            spec.seed = seed;
            write_tiny_sea_checkpoint(sea_path, spec, tiny_sea_state_dict(spec));
            std::printf("seaopt-make-tiny-checkpoint: wrote SEA checkpoint %s (%s, %s, K %u, m %u)\n", sea_path.c_str(),
                        sea_layout.c_str(), sea_dtype.c_str(), sea_width, spec.m());
        }
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "seaopt-make-tiny-checkpoint: error: %s\n", e.what());
        return 1;
    }
}
