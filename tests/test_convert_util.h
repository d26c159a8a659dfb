// Helpers for the seaopt-convert tests: temp directories, a zip builder, a torch-style state_dict
// pickle writer and an HF-style checkpoint maker. Header-only, shared by tests/test_convert*.cpp.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/error.h"
#include "engine/fp16.h"
#include "weights-convert/dtype.h"
#include "weights-convert/safetensors_writer.h"

namespace convert_test {

namespace fs = std::filesystem;
using seaopt::convert::DType;
using Bytes = std::vector<uint8_t>;

// ---- files ---------------------------------------------------------------------------------

class TempDir {
public:
    TempDir() {
        const char *base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/seaopt-convert-test-XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
        path_ = buf.data();
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string &path() const { return path_; }
    std::string operator/(const std::string &name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

inline Bytes read_bytes(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read " + path);
    return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string &path, const void *data, size_t n) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(static_cast<const char *>(data), (std::streamsize)n);
    if (!f) throw std::runtime_error("cannot write " + path);
}
inline void write_bytes(const std::string &path, const Bytes &b) { write_bytes(path, b.data(), b.size()); }
inline void write_text(const std::string &path, const std::string &s) { write_bytes(path, s.data(), s.size()); }

// Runs `fn`, expects a seaopt::Error whose message contains every one of `needles`; returns it.
template <typename Fn>
std::string expect_error(Fn fn, std::initializer_list<std::string> needles, seaopt_status code = (seaopt_status)0) {
    try {
        fn();
    } catch (const seaopt::Error &e) {
        const std::string msg = e.what();
        for (const std::string &n : needles) {
            EXPECT_NE(msg.find(n), std::string::npos) << "message: " << msg << "\nmissing: " << n;
        }
        if (code != 0) {
            EXPECT_EQ(e.code(), code) << "message: " << msg;
        }
        return msg;
    } catch (const std::exception &e) {
        ADD_FAILURE() << "expected seaopt::Error, got std::exception: " << e.what();
        return e.what();
    }
    ADD_FAILURE() << "expected a seaopt::Error, but no exception was thrown";
    return "";
}

// ---- child processes ------------------------------------------------------------------------------

struct RunResult {
    int exit_code = -1;   // -1 if killed by a signal
    std::string out, err;
    long max_rss_kb = 0;  // the child's peak resident set (wait4's ru_maxrss)
};

// Runs `argv` (argv[0] is the path) with stdout/stderr captured through files in `tmp_dir`.
inline RunResult run_process(const std::vector<std::string> &argv, const std::string &tmp_dir) {
    const std::string out_path = tmp_dir + "/child.out", err_path = tmp_dir + "/child.err";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char *> args;
    for (const std::string &a : argv) args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = 0;
    RunResult r;
    const int rc = posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(rc));
    int status = 0;
    struct rusage ru;
    std::memset(&ru, 0, sizeof ru);
    if (wait4(pid, &status, 0, &ru) != pid) throw std::runtime_error("wait4 failed");
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.max_rss_kb = ru.ru_maxrss;
    const Bytes o = read_bytes(out_path), e = read_bytes(err_path);
    r.out.assign(o.begin(), o.end());
    r.err.assign(e.begin(), e.end());
    return r;
}

inline std::string binary(const char *name) { return std::string(SEAOPT_BINARY_DIR) + "/bin/" + name; }

// ---- little-endian byte building ---------------------------------------------------------------

inline void put16(Bytes &b, uint16_t v) {
    for (int i = 0; i < 2; ++i) b.push_back((uint8_t)(v >> (8 * i)));
}
inline void put32(Bytes &b, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back((uint8_t)(v >> (8 * i)));
}
inline void put64(Bytes &b, uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back((uint8_t)(v >> (8 * i)));
}
inline void put_str(Bytes &b, const std::string &s) { b.insert(b.end(), s.begin(), s.end()); }

// ---- zip -----------------------------------------------------------------------------------------

struct ZipSpec {
    std::string name;
    Bytes data;
    uint16_t method = 0;  // 0 = stored; anything else is written as-is (data not compressed)
};

struct ZipOptions {
    bool zip64 = false;        // ZIP64 end record + locator, and ZIP64 extra fields in the central directory
    size_t align = 64;         // pad the local extra field so that data starts aligned (as torch does)
    bool data_descriptor = true;  // as torch: sizes 0 in local headers, bit 3 set
};

// A zip archive with uncompressed entries, laid out as torch's PyTorchStreamWriter (miniz) writes it.
inline Bytes make_zip(const std::vector<ZipSpec> &entries, const ZipOptions &opt = {}) {
    Bytes out;
    std::vector<uint64_t> local_offsets;
    for (const ZipSpec &e : entries) {
        local_offsets.push_back(out.size());
        put32(out, 0x04034b50);
        put16(out, 20);
        put16(out, opt.data_descriptor ? 0x0008 : 0);
        put16(out, e.method);
        put16(out, 0);
        put16(out, 0);
        put32(out, 0);  // crc (not checked by the reader)
        put32(out, opt.data_descriptor ? 0 : (uint32_t)e.data.size());
        put32(out, opt.data_descriptor ? 0 : (uint32_t)e.data.size());
        put16(out, (uint16_t)e.name.size());
        size_t pad = 0;
        const size_t data_at = out.size() + 2 + e.name.size();
        if (opt.align > 1) {
            pad = (opt.align - (data_at + 4) % opt.align) % opt.align;
            pad += 4;  // "FB" extra field header
        }
        put16(out, (uint16_t)pad);
        put_str(out, e.name);
        if (pad) {
            put16(out, 0x4246);  // 'FB', torch's padding field id
            put16(out, (uint16_t)(pad - 4));
            out.insert(out.end(), pad - 4, 'Z');
        }
        out.insert(out.end(), e.data.begin(), e.data.end());
        if (opt.data_descriptor) {
            put32(out, 0x08074b50);
            put32(out, 0);
            put32(out, (uint32_t)e.data.size());
            put32(out, (uint32_t)e.data.size());
        }
    }
    const uint64_t cd_offset = out.size();
    for (size_t i = 0; i < entries.size(); ++i) {
        const ZipSpec &e = entries[i];
        put32(out, 0x02014b50);
        put16(out, 45);
        put16(out, 45);
        put16(out, opt.data_descriptor ? 0x0008 : 0);
        put16(out, e.method);
        put16(out, 0);
        put16(out, 0);
        put32(out, 0);
        const uint32_t marker = 0xFFFFFFFFu;
        put32(out, opt.zip64 ? marker : (uint32_t)e.data.size());
        put32(out, opt.zip64 ? marker : (uint32_t)e.data.size());
        put16(out, (uint16_t)e.name.size());
        put16(out, opt.zip64 ? 4 + 24 : 0);
        put16(out, 0);
        put16(out, 0);
        put16(out, 0);
        put32(out, 0);
        put32(out, opt.zip64 ? marker : (uint32_t)local_offsets[i]);
        put_str(out, e.name);
        if (opt.zip64) {
            put16(out, 0x0001);
            put16(out, 24);
            put64(out, e.data.size());  // uncompressed
            put64(out, e.data.size());  // compressed
            put64(out, local_offsets[i]);
        }
    }
    const uint64_t cd_size = out.size() - cd_offset;
    if (opt.zip64) {
        const uint64_t z64_at = out.size();
        put32(out, 0x06064b50);
        put64(out, 44);
        put16(out, 45);
        put16(out, 45);
        put32(out, 0);
        put32(out, 0);
        put64(out, entries.size());
        put64(out, entries.size());
        put64(out, cd_size);
        put64(out, cd_offset);
        put32(out, 0x07064b50);
        put32(out, 0);
        put64(out, z64_at);
        put32(out, 1);
    }
    put32(out, 0x06054b50);
    put16(out, 0);
    put16(out, 0);
    put16(out, opt.zip64 ? 0xFFFF : (uint16_t)entries.size());
    put16(out, opt.zip64 ? 0xFFFF : (uint16_t)entries.size());
    put32(out, opt.zip64 ? 0xFFFFFFFFu : (uint32_t)cd_size);
    put32(out, opt.zip64 ? 0xFFFFFFFFu : (uint32_t)cd_offset);
    put16(out, 0);
    return out;
}

// ---- torch-style pickle ----------------------------------------------------------------------------

struct PickleTensorSpec {
    std::string name;
    std::string storage_class;  // "HalfStorage", "FloatStorage", "BFloat16Storage"
    std::string key;
    uint64_t storage_numel = 0;
    uint64_t storage_offset = 0;
    std::vector<uint64_t> shape, stride;
};

inline void pickle_str(Bytes &b, const std::string &s) {
    b.push_back('X');
    put32(b, (uint32_t)s.size());
    put_str(b, s);
}
inline void pickle_int(Bytes &b, uint64_t v) {
    if (v < 0x80000000ull) {
        b.push_back('J');
        put32(b, (uint32_t)v);
    } else {
        b.push_back(0x8a);  // LONG1
        b.push_back(8);
        put64(b, v);
    }
}
inline void pickle_tuple(Bytes &b, const std::vector<uint64_t> &v) {
    b.push_back('(');
    for (uint64_t x : v) pickle_int(b, x);
    b.push_back('t');
}

// The protocol-2 state_dict pickle torch.save writes (without the memo, which is optional).
inline Bytes make_state_dict_pickle(const std::vector<PickleTensorSpec> &tensors) {
    Bytes b = {0x80, 0x02, '}', '('};
    for (const PickleTensorSpec &t : tensors) {
        pickle_str(b, t.name);
        put_str(b, "ctorch._utils\n_rebuild_tensor_v2\n");
        b.push_back('(');
        b.push_back('(');
        pickle_str(b, "storage");
        put_str(b, "ctorch\n" + t.storage_class + "\n");
        pickle_str(b, t.key);
        pickle_str(b, "cpu");
        pickle_int(b, t.storage_numel);
        b.push_back('t');
        b.push_back('Q');
        pickle_int(b, t.storage_offset);
        pickle_tuple(b, t.shape);
        pickle_tuple(b, t.stride);
        b.push_back(0x89);
        put_str(b, "ccollections\nOrderedDict\n");
        b.push_back(')');
        b.push_back('R');
        b.push_back('t');
        b.push_back('R');
    }
    b.push_back('u');
    b.push_back('.');
    return b;
}

inline std::vector<uint64_t> contiguous_stride(const std::vector<uint64_t> &shape) {
    std::vector<uint64_t> s(shape.size());
    uint64_t acc = 1;
    for (size_t i = shape.size(); i-- > 0;) {
        s[i] = acc;
        acc *= shape[i];
    }
    return s;
}

inline const char *storage_class(DType t) {
    return t == DType::F16 ? "HalfStorage" : t == DType::BF16 ? "BFloat16Storage" : "FloatStorage";
}

// A pytorch_model.bin as torch.save writes it: one storage per tensor.
struct BinTensor {
    std::string name;
    DType dtype;
    std::vector<uint64_t> shape;
    Bytes data;
};
inline Bytes make_torch_bin(const std::vector<BinTensor> &tensors, const std::string &archive = "pytorch_model",
                            bool zip64 = false) {
    std::vector<PickleTensorSpec> specs;
    std::vector<ZipSpec> entries;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const BinTensor &t = tensors[i];
        uint64_t numel = 1;
        for (uint64_t d : t.shape) numel *= d;
        specs.push_back({t.name, storage_class(t.dtype), std::to_string(i), numel, 0, t.shape, contiguous_stride(t.shape)});
    }
    entries.push_back({archive + "/data.pkl", make_state_dict_pickle(specs)});
    entries.push_back({archive + "/.format_version", {'1'}});
    entries.push_back({archive + "/.storage_alignment", {'6', '4'}});
    entries.push_back({archive + "/byteorder", {'l', 'i', 't', 't', 'l', 'e'}});
    for (size_t i = 0; i < tensors.size(); ++i) entries.push_back({archive + "/data/" + std::to_string(i), tensors[i].data});
    entries.push_back({archive + "/version", {'3', '\n'}});
    ZipOptions opt;
    opt.zip64 = zip64;
    return make_zip(entries, opt);
}

// ---- values ------------------------------------------------------------------------------------

// Deterministic test values, exactly representable in every dtype after rounding to it.
inline std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (float &x : v) x = dist(rng);
    return v;
}

inline Bytes encode(const std::vector<float> &v, DType t) {
    Bytes b(v.size() * seaopt::convert::dtype_size(t));
    for (size_t i = 0; i < v.size(); ++i) {
        if (t == DType::F32) {
            std::memcpy(&b[4 * i], &v[i], 4);
        } else {
            const uint16_t h = t == DType::F16 ? seaopt::f32_to_f16(v[i]) : seaopt::f32_to_bf16(v[i]);
            std::memcpy(&b[2 * i], &h, 2);
        }
    }
    return b;
}

inline std::vector<float> decode(const uint8_t *p, size_t n, DType t) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) {
        if (t == DType::F32) {
            std::memcpy(&v[i], p + 4 * i, 4);
        } else {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            v[i] = t == DType::F16 ? seaopt::f16_to_f32(h) : seaopt::bf16_to_f32(h);
        }
    }
    return v;
}

// ---- HF checkpoints -----------------------------------------------------------------------------------

struct TinyConfig {
    uint32_t vocab = 50272, hidden = 16, heads = 2, layers = 2, ffn = 32, max_pos = 8, proj = 16;
    bool pre_ln = true;
    bool tie = true;
    std::string activation = "relu";

    nlohmann::json to_json() const {
        return {{"_remove_final_layer_norm", false}, {"activation_function", activation},
                {"architectures", {"OPTForCausalLM"}}, {"bos_token_id", 2},
                {"do_layer_norm_before", pre_ln}, {"enable_bias", true}, {"eos_token_id", 2},
                {"ffn_dim", ffn}, {"hidden_size", hidden}, {"layer_norm_elementwise_affine", true},
                {"max_position_embeddings", max_pos}, {"model_type", "opt"},
                {"num_attention_heads", heads}, {"num_hidden_layers", layers}, {"pad_token_id", 1},
                {"tie_word_embeddings", tie}, {"torch_dtype", "float16"}, {"vocab_size", vocab},
                {"word_embed_proj_dim", proj}};
    }
};

// One source tensor of a test checkpoint: HF name (canonical, "decoder.*" / "lm_head.weight"),
// PyTorch shape, values.
struct HfTensor {
    std::string name;
    std::vector<uint64_t> shape;
    std::vector<float> values;
};

// Names (canonical HF, "decoder.*" / "lm_head.weight") and PyTorch shapes of an OPT checkpoint.
inline std::vector<std::pair<std::string, std::vector<uint64_t>>> hf_tensor_shapes(const TinyConfig &c, bool with_lm_head) {
    std::vector<std::pair<std::string, std::vector<uint64_t>>> t;
    const uint64_t C = c.hidden, D = c.proj, F = c.ffn, V = c.vocab, P = c.max_pos + 2;
    t.push_back({"decoder.embed_tokens.weight", {V, D}});
    t.push_back({"decoder.embed_positions.weight", {P, C}});
    if (D != C) {
        t.push_back({"decoder.project_in.weight", {C, D}});
        t.push_back({"decoder.project_out.weight", {D, C}});
    }
    if (c.pre_ln) {
        t.push_back({"decoder.final_layer_norm.weight", {C}});
        t.push_back({"decoder.final_layer_norm.bias", {C}});
    }
    for (uint32_t l = 0; l < c.layers; ++l) {
        const std::string p = "decoder.layers." + std::to_string(l) + ".";
        for (const char *proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
            t.push_back({p + "self_attn." + proj + ".weight", {C, C}});
            t.push_back({p + "self_attn." + proj + ".bias", {C}});
        }
        t.push_back({p + "self_attn_layer_norm.weight", {C}});
        t.push_back({p + "self_attn_layer_norm.bias", {C}});
        t.push_back({p + "fc1.weight", {F, C}});
        t.push_back({p + "fc1.bias", {F}});
        t.push_back({p + "fc2.weight", {C, F}});
        t.push_back({p + "fc2.bias", {C}});
        t.push_back({p + "final_layer_norm.weight", {C}});
        t.push_back({p + "final_layer_norm.bias", {C}});
    }
    if (with_lm_head) t.push_back({"lm_head.weight", {V, D}});
    return t;
}

// The same with random values (seeded per tensor).
inline std::vector<HfTensor> make_hf_tensors(const TinyConfig &c, bool with_lm_head, uint32_t seed = 7) {
    std::vector<HfTensor> t;
    uint32_t s = seed;
    for (auto &[name, shape] : hf_tensor_shapes(c, with_lm_head)) {
        uint64_t n = 1;
        for (uint64_t d : shape) n *= d;
        t.push_back({name, shape, random_values((size_t)n, s++, 0.5f)});
    }
    return t;
}

enum class Layout { Safetensors, ShardedSafetensors, Bin, ShardedBin };

inline std::string stored_name(const std::string &hf, bool model_prefix) {
    return model_prefix && hf.rfind("decoder.", 0) == 0 ? "model." + hf : hf;
}

inline void copy_tokenizer(const std::string &dir) {
    const std::string src = std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer/";
    fs::copy_file(src + "vocab.json", dir + "/vocab.json", fs::copy_options::overwrite_existing);
    fs::copy_file(src + "merges.txt", dir + "/merges.txt", fs::copy_options::overwrite_existing);
}

// Writes config.json, the tokenizer files and the weights in `layout` to `dir`.
inline void write_hf_checkpoint(const std::string &dir, const nlohmann::json &config, const std::vector<HfTensor> &tensors,
                                DType dtype, Layout layout, bool model_prefix) {
    fs::create_directories(dir);
    write_text(dir + "/config.json", config.dump(2));
    copy_tokenizer(dir);
    const bool sharded = layout == Layout::ShardedSafetensors || layout == Layout::ShardedBin;
    const bool bin = layout == Layout::Bin || layout == Layout::ShardedBin;
    const size_t n_shards = sharded ? 3 : 1;
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t s = 0; s < n_shards; ++s) {
        std::string file;
        if (sharded) {
            char buf[64];
            std::snprintf(buf, sizeof buf, bin ? "pytorch_model-%05zu-of-%05zu.bin" : "model-%05zu-of-%05zu.safetensors",
                          s + 1, n_shards);
            file = buf;
        } else {
            file = bin ? "pytorch_model.bin" : "model.safetensors";
        }
        std::vector<seaopt::convert::SafetensorsBlob> blobs;
        std::vector<BinTensor> bins;
        for (size_t i = s; i < tensors.size(); i += n_shards) {
            const std::string name = stored_name(tensors[i].name, model_prefix);
            weight_map[name] = file;
            if (bin) {
                bins.push_back({name, dtype, tensors[i].shape, encode(tensors[i].values, dtype)});
            } else {
                blobs.push_back({name, dtype, tensors[i].shape, encode(tensors[i].values, dtype)});
            }
        }
        if (bin) {
            write_bytes(dir + "/" + file, make_torch_bin(bins, file.substr(0, file.find('.'))));
        } else {
            seaopt::convert::write_safetensors(dir + "/" + file, blobs);
        }
    }
    if (sharded) {
        const nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
        write_text(dir + "/" + (bin ? "pytorch_model.bin.index.json" : "model.safetensors.index.json"), index.dump(2));
    }
}

}  // namespace convert_test
