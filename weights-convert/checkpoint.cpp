#include "weights-convert/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "engine/error.h"
#include "weights-convert/json_strict.h"
#include "weights-convert/safetensors.h"

namespace seaopt::convert {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxPickleBytes = 64ull << 20;  // an OPT-13B data.pkl is about 100 KB
constexpr size_t kMaxIndexBytes = 16u << 20;       // an OPT-13B index.json is about 50 KB
constexpr size_t kMaxProblemsListed = 6;

bool is_file(const fs::path &p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

// A shard name from an index: a plain file name in the same directory, nothing else.
void check_shard_name(const std::string &name, const std::string &what) {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
        name.find('\\') != std::string::npos || name.find('\0') != std::string::npos) {
        throw_model_format(what + ": shard name '" + name + "' is not a plain file name in the checkpoint directory");
    }
}

// model.safetensors.index.json / pytorch_model.bin.index.json: {"weight_map": {tensor: shard}}.
std::map<std::string, std::string> read_weight_map(const fs::path &path) {
    const std::string what = path.filename().string();
    const json j = read_json_file(path.string(), what, kMaxIndexBytes);
    if (!j.is_object()) throw_model_format(what + ": is " + std::string(json_type_words(j)) + ", not a JSON object");
    const auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) throw_model_format(what + ": has no \"weight_map\" object");
    if (wm->empty()) throw_model_format(what + ": \"weight_map\" is empty");
    std::map<std::string, std::string> out;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it.value().is_string()) {
            throw_model_format(what + ": weight_map entry '" + it.key() + "' is " + json_type_words(it.value()) +
                               ", not a shard file name");
        }
        const std::string shard = it.value().get<std::string>();
        check_shard_name(shard, what);
        out.emplace(it.key(), shard);
    }
    return out;
}

using ListFn = std::vector<SourceTensor> (*)(const ByteSource &, size_t);

Checkpoint open_single(const fs::path &path, ListFn list, const std::string &format) {
    Checkpoint c;
    c.format = format;
    c.files.push_back(path.string());
    FileSource src(path.string(), path.filename().string());
    c.tensors = list(src, 0);
    return c;
}

Checkpoint open_sharded(const fs::path &dir, const fs::path &index_path, ListFn list, const std::string &format) {
    const std::string index_name = index_path.filename().string();
    const std::map<std::string, std::string> weight_map = read_weight_map(index_path);
    std::vector<std::string> shards;  // in order of first appearance (sorted by tensor name, then unique)
    std::set<std::string> shard_set;
    for (const auto &[tensor, shard] : weight_map) {
        if (shard_set.insert(shard).second) shards.push_back(shard);
    }
    std::sort(shards.begin(), shards.end());

    Checkpoint c;
    c.format = format + " (" + std::to_string(shards.size()) + (shards.size() == 1 ? " shard)" : " shards)");
    c.index_file = index_path.string();
    for (size_t k = 0; k < shards.size(); ++k) {
        const fs::path p = dir / shards[k];
        if (!is_file(p)) throw_io(index_name + " names shard " + shards[k] + ", which is not in " + dir.string());
        c.files.push_back(p.string());
        FileSource src(p.string(), shards[k]);
        for (SourceTensor &t : list(src, k)) {
            const auto it = weight_map.find(t.name);
            if (it == weight_map.end()) {
                throw_model_format(shards[k] + ": tensor '" + t.name + "' is not listed in " + index_name);
            }
            if (it->second != shards[k]) {
                throw_model_format(shards[k] + ": tensor '" + t.name + "' is listed in " + index_name + " under " +
                                   it->second);
            }
            c.tensors.push_back(std::move(t));
        }
    }
    // Every tensor the index promises must be where it says.
    std::set<std::string> found;
    for (const SourceTensor &t : c.tensors) {
        if (!found.insert(t.name).second) throw_model_format("tensor '" + t.name + "' appears twice in the shards");
    }
    for (const auto &[tensor, shard] : weight_map) {
        if (!found.count(tensor)) {
            throw_model_format(index_name + " lists tensor '" + tensor + "' in " + shard + ", but " + shard +
                               " does not contain it");
        }
    }
    return c;
}

}  // namespace

std::string shape_string(const std::vector<uint64_t> &shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

std::vector<SourceTensor> list_safetensors_file(const ByteSource &src, size_t file, bool keep_unconvertible) {
    std::vector<SourceTensor> out;
    for (SafetensorsTensor &t : read_safetensors_header(src, keep_unconvertible)) {
        SourceTensor s;
        s.name = std::move(t.name);
        s.dtype = t.dtype;
        s.shape = std::move(t.shape);
        s.file = file;
        s.offset = t.offset;
        s.n_bytes = t.n_bytes;
        s.unconvertible = std::move(t.unconvertible);
        out.push_back(std::move(s));
    }
    return out;
}

std::vector<SourceTensor> list_safetensors_file(const ByteSource &src, size_t file) {
    return list_safetensors_file(src, file, /*keep_unconvertible=*/false);
}

TorchArchive read_torch_archive(const ByteSource &src) {
    const std::string &what = src.name();
    TorchArchive a;
    a.zip = read_zip_index(src);

    // torch.save writes "<archive>/data.pkl" with the storages as "<archive>/data/<key>".
    const ZipEntry *pkl = nullptr;
    for (const ZipEntry &e : a.zip.entries) {
        const size_t slash = e.name.find('/');
        if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
            if (pkl) throw_model_format(what + ": holds more than one data.pkl (" + pkl->name + ", " + e.name + ")");
            pkl = &e;
        }
    }
    if (!pkl) throw_model_format(what + ": zip archive has no <archive>/data.pkl: not a torch.save file");
    a.prefix = pkl->name.substr(0, pkl->name.size() - std::string("data.pkl").size());

    if (const ZipEntry *bo = a.zip.find(a.prefix + "byteorder")) {
        if (bo->size > 16) throw_model_format(what + ": byteorder record is too long");
        std::vector<uint8_t> v = src.read_vec(bo->data_offset, (size_t)bo->size);
        const std::string order(v.begin(), v.end());
        if (order != "little") {
            throw_unsupported(what + ": tensors are stored in byte order '" + order + "'; only 'little' is supported");
        }
    }
    if (pkl->size > kMaxPickleBytes) {
        throw_model_format(what + ": data.pkl is " + std::to_string(pkl->size) + " bytes, more than a state_dict needs");
    }
    a.pickle = src.read_vec(pkl->data_offset, (size_t)pkl->size);
    return a;
}

std::vector<SourceTensor> locate_torch_tensors(const ByteSource &src, const TorchArchive &archive,
                                               std::vector<PickledTensor> tensors, size_t file) {
    const std::string &what = src.name();
    std::vector<SourceTensor> out;
    out.reserve(tensors.size());
    for (PickledTensor &t : tensors) {
        SourceTensor s;
        s.file = file;
        if (t.unconvertible.empty()) {
            const ZipEntry *e = archive.zip.find(archive.prefix + "data/" + t.storage_key);
            if (!e) {
                throw_model_format(what + ": tensor '" + t.name + "' refers to storage '" + t.storage_key +
                                   "', which the archive does not contain");
            }
            const uint64_t esize = dtype_size(t.dtype);
            uint64_t begin = 0, n_bytes = 0, end = 0;
            if (!checked_mul(t.storage_offset, esize, &begin) || !checked_mul(t.numel(), esize, &n_bytes) ||
                !checked_add(begin, n_bytes, &end) || end > e->size) {
                throw_model_format(what + ": tensor '" + t.name + "' (" + dtype_name(t.dtype) + " " +
                                   shape_string(t.shape) + " at element " + std::to_string(t.storage_offset) +
                                   ") runs past the end of its storage entry " + e->name + " (" +
                                   std::to_string(e->size) + " bytes)");
            }
            s.offset = e->data_offset + begin;
            s.n_bytes = n_bytes;
        }
        s.name = std::move(t.name);
        s.dtype = t.dtype;
        s.shape = std::move(t.shape);
        s.unconvertible = std::move(t.unconvertible);
        out.push_back(std::move(s));
    }
    return out;
}

std::vector<SourceTensor> list_torch_zip_file(const ByteSource &src, size_t file) {
    const TorchArchive archive = read_torch_archive(src);
    std::vector<PickledTensor> tensors = unpickle_state_dict(archive.pickle.data(), archive.pickle.size(), src.name());
    return locate_torch_tensors(src, archive, std::move(tensors), file);
}

Checkpoint open_checkpoint(const std::string &dir_str) {
    const fs::path dir(dir_str);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw_io(dir_str + " is not a directory");

    const fs::path st = dir / "model.safetensors", st_index = dir / "model.safetensors.index.json";
    const fs::path bin = dir / "pytorch_model.bin", bin_index = dir / "pytorch_model.bin.index.json";
    if (is_file(st)) return open_single(st, list_safetensors_file, "safetensors");
    if (is_file(st_index)) return open_sharded(dir, st_index, list_safetensors_file, "safetensors");
    if (is_file(bin)) return open_single(bin, list_torch_zip_file, "pytorch_model.bin");
    if (is_file(bin_index)) return open_sharded(dir, bin_index, list_torch_zip_file, "pytorch_model.bin");
    throw_io(dir_str + " has no weights: expected model.safetensors, model.safetensors.index.json, "
                       "pytorch_model.bin or pytorch_model.bin.index.json");
}

std::string canonical_hf_name(const std::string &name) {
    static const std::string kModel = "model.";
    if (name.compare(0, kModel.size(), kModel) == 0) return name.substr(kModel.size());
    return name;
}

std::vector<ExpectedTensor> expected_opt_tensors(const OptHparams &hp, bool untied_output) {
    return opt_tensor_specs(hp, untied_output);
}

TensorPlan plan_tensors(const std::vector<SourceTensor> &tensors, const HfOptConfig &config) {
    const std::vector<ExpectedTensor> expected = expected_opt_tensors(config.hp, !config.tie_word_embeddings);
    std::unordered_map<std::string, size_t> by_hf_name;
    for (size_t i = 0; i < expected.size(); ++i) by_hf_name.emplace(expected[i].hf_name, i);

    TensorPlan plan;
    plan.tensors.resize(expected.size());
    for (size_t i = 0; i < expected.size(); ++i) plan.tensors[i].expected = expected[i];

    std::vector<std::string> unexpected, misshaped, duplicated;
    for (const SourceTensor &s : tensors) {
        const std::string hf = canonical_hf_name(s.name);
        const auto it = by_hf_name.find(hf);
        if (it == by_hf_name.end()) {
            if (hf == "lm_head.weight" && config.tie_word_embeddings) {
                ++plan.n_skipped_tied_lm_head;  // tied to embed_tokens: the loader reuses token_embd
                continue;
            }
            unexpected.push_back("'" + s.name + "'");
            continue;
        }
        PlannedTensor &p = plan.tensors[it->second];
        if (p.source) {
            duplicated.push_back("'" + p.source->name + "' and '" + s.name + "'");
            continue;
        }
        p.source = &s;
        std::vector<uint64_t> want(p.expected.ne.rbegin(), p.expected.ne.rend());
        if (s.shape != want) {
            misshaped.push_back("'" + s.name + "' has shape " + shape_string(s.shape) + ", expected " +
                                shape_string(want) + " (" + p.expected.gguf_name + ")");
        }
    }
    std::vector<std::string> missing;
    for (const PlannedTensor &p : plan.tensors) {
        if (!p.source) missing.push_back("'" + p.expected.hf_name + "' (" + p.expected.gguf_name + ")");
    }

    std::string problems;
    auto list = [&](const std::vector<std::string> &items, const std::string &head) {
        if (items.empty()) return;
        if (!problems.empty()) problems += "; ";
        problems += head + ": ";
        for (size_t i = 0; i < items.size() && i < kMaxProblemsListed; ++i) problems += (i ? ", " : "") + items[i];
        if (items.size() > kMaxProblemsListed) problems += " and " + std::to_string(items.size() - kMaxProblemsListed) + " more";
    };
    list(missing, std::to_string(missing.size()) + " tensor(s) missing");
    list(unexpected, std::to_string(unexpected.size()) + " unexpected tensor(s), not part of an OPT model with this "
                                                         "config.json");
    list(misshaped, std::to_string(misshaped.size()) + " tensor(s) with the wrong shape");
    list(duplicated, "tensor(s) present twice");
    if (!problems.empty()) throw_model_format("checkpoint does not match config.json: " + problems);
    return plan;
}

}  // namespace seaopt::convert
