// Finding the weights of a Hugging Face OPT checkpoint directory, and matching them to the tensors
// of opt_format.h.
//
// Layouts, in order of preference (safetensors first: it cannot execute anything and needs no
// pickle): model.safetensors; model.safetensors.index.json + shards; pytorch_model.bin;
// pytorch_model.bin.index.json + shards. Every file is read through the validating readers, and
// only headers are read here: tensor bytes stay in the files until the converter streams them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "weights-convert/byte_source.h"
#include "weights-convert/dtype.h"
#include "weights-convert/hf_config.h"
#include "weights-convert/unpickler.h"
#include "weights-convert/zip_reader.h"

namespace seaopt::convert {

struct SourceTensor {
    std::string name;             // as stored in the checkpoint ("model.decoder.layers.0.fc1.weight")
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;  // PyTorch order, outermost first
    size_t file = 0;              // index into Checkpoint::files
    uint64_t offset = 0;          // absolute offset of the first byte in that file
    uint64_t n_bytes = 0;         // contiguous, row-major, little-endian
    // Only from the SEA checkpoint readers: non-empty for a tensor that cannot be converted (another
    // dtype, not contiguous); offset/n_bytes are then meaningless. Refused only if it is needed.
    std::string unconvertible;
};

struct Checkpoint {
    std::string format;              // in words, e.g. "safetensors (2 shards)"
    std::vector<std::string> files;  // paths of the weight files
    std::string index_file;          // a sharded checkpoint's index.json, else ""
    std::vector<SourceTensor> tensors;
};

// Finds and indexes the weights in `dir`. Throws seaopt::Error naming the file and the problem.
Checkpoint open_checkpoint(const std::string &dir);

// One weight file (tests use these with in-memory sources). `file` is stored in each tensor.
std::vector<SourceTensor> list_safetensors_file(const ByteSource &src, size_t file);
// The same, keeping tensors of dtypes the converter cannot read (marked `unconvertible`, refused
// only if used: SEA checkpoints carry such buffers).
std::vector<SourceTensor> list_safetensors_file(const ByteSource &src, size_t file, bool keep_unconvertible);
std::vector<SourceTensor> list_torch_zip_file(const ByteSource &src, size_t file);

// A torch.save zip archive: its directory and its data.pkl (bounded in size, not yet interpreted).
struct TorchArchive {
    ZipIndex zip;
    std::string prefix;           // "<archive>/": data.pkl is prefix + "data.pkl", storages prefix + "data/<key>"
    std::vector<uint8_t> pickle;  // the bytes of data.pkl
};
TorchArchive read_torch_archive(const ByteSource &src);

// Locates each tensor's bytes in the archive's storages (bounds checked; unconvertible tensors are
// passed through unlocated).
std::vector<SourceTensor> locate_torch_tensors(const ByteSource &src, const TorchArchive &archive,
                                               std::vector<PickledTensor> tensors, size_t file);

// A tensor the GGUF file must contain, and the HF tensor it comes from (model/opt_format.h).
using ExpectedTensor = OptTensorSpec;

// The exact tensor set of opt_format.h for these hyperparameters. `untied_output`: the model has
// its own lm_head (tie_word_embeddings false) -> output.weight.
std::vector<ExpectedTensor> expected_opt_tensors(const OptHparams &hp, bool untied_output);

// "model.decoder.x" and "decoder.x" -> "decoder.x"; "lm_head.weight" stays.
std::string canonical_hf_name(const std::string &name);

struct PlannedTensor {
    ExpectedTensor expected;
    const SourceTensor *source = nullptr;
};

struct TensorPlan {
    std::vector<PlannedTensor> tensors;  // in the order of expected_opt_tensors
    size_t n_skipped_tied_lm_head = 0;   // a tied lm_head.weight present in the checkpoint, not written
};

// Matches the checkpoint's tensors to the expected set: every expected tensor exactly once with its
// shape, nothing else (a tied lm_head is skipped). Throws SEAOPT_ERR_MODEL_FORMAT listing missing,
// unexpected and mis-shaped tensors.
TensorPlan plan_tensors(const std::vector<SourceTensor> &tensors, const HfOptConfig &config);

std::string shape_string(const std::vector<uint64_t> &shape);  // "[50272, 768]"

}  // namespace seaopt::convert
