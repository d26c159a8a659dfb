// Hugging Face OPT checkpoint directory -> seaopt GGUF (model/opt_format.h), streamed tensor by
// tensor in bounded chunks read with pread: peak memory does not grow with the checkpoint size
// (apart from the tokenizer and the tensor index), so OPT-13B converts on a small machine.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/opt_format.h"
#include "tokenizer/tokenizer.h"
#include "weights-convert/dtype.h"

namespace seaopt::convert {

inline constexpr size_t kConvertChunkElements = 1u << 20;  // per read: at most 4 MB in, 4 MB out

struct ConvertOptions {
    std::string input_dir;     // config.json, vocab.json, merges.txt and the weights
    std::string output_path;   // the .gguf to write (via a temporary "<path>.tmp.XXXXXX" and a rename)
    DType outtype = DType::F16;  // every tensor is written in this type (but see q8_0)
    // --outtype q8_0: the six weight matrices of every block are written as Q8_0 (model/q8_0.h), the other OPT
    // tensors as `outtype`. Needs hidden_size and ffn_dim multiples of 32 (the blocks run along the input dimension).
    bool q8_0 = false;
    std::string name;          // general.name; empty = the input directory's name
    // --sea: a SEA checkpoint file (weights-convert/sea_checkpoint.h). Its estimator is added as the
    // sea.* keys and blk.N.sea.* tensors (written F32), and its fine-tuned OPT tensors replace the
    // base ones from input_dir.
    std::string sea_checkpoint;
    uint32_t sea_k = 0;        // --sea-k; 0 = the trainer config's k if present, else 64 (sea.md §6)
};

struct ConvertProgress {
    size_t tensor_index = 0;  // 0-based index of the tensor being written
    size_t n_tensors = 0;
    const std::string *tensor_name = nullptr;  // GGUF name
    uint64_t bytes_done = 0;   // tensor bytes written so far (all tensors)
    uint64_t bytes_total = 0;
};
using ProgressFn = std::function<void(const ConvertProgress &)>;

struct ConvertResult {
    std::string source_format;  // "safetensors", "pytorch_model.bin (2 shards)", ...
    size_t n_tensors = 0;
    uint64_t n_params = 0;
    uint64_t tensor_bytes = 0;  // tensor data written
    uint64_t file_bytes = 0;    // size of the output file
    size_t n_skipped_tied_lm_head = 0;
    double seconds = 0;

    // With --sea:
    bool has_sea = false;
    std::string sea_format;         // "DeepSpeed model states (its 'module' state_dict)", ...
    SeaHparams sea;
    std::string sea_k_source;       // where k came from
    size_t n_sea_tensors = 0;       // blk.N.sea.* tensors written
    size_t n_opt_replaced = 0;      // base tensors replaced by the checkpoint's fine-tuned ones
    size_t n_sea_ignored = 0;       // SEA entries sea.md §5.1 marks unused
    size_t n_teacher_ignored = 0;   // the teacher's entries (base_model.*)
    std::vector<std::string> notes; // things the user should know
    std::string sea_engine_warning; // non-empty: seaopt's engine cannot run this model's SEA (e.g. heads not 64 wide)
};

// Throws seaopt::Error (message in plain words naming the file/tensor/key); on error no output
// file is left behind (the GGUF writer removes its temporary file).
ConvertResult convert_checkpoint(const ConvertOptions &options, const ProgressFn &progress = {});

// "f16" / "bf16" / "f32" (also upper case) -> DType; throws SEAOPT_ERR_INVALID_ARGUMENT.
// The tokenizer of a checkpoint directory as the converter stores it: tokenizer.json where there is one, else
// vocab.json + merges.txt, with the added and special tokens of its tokenizer files (hf_added_tokens.h), padded to
// n_vocab rows. `notes` gets what the user should know.
TokenizerData load_checkpoint_tokenizer(const std::string &dir, uint32_t n_vocab, std::vector<std::string> &notes);

DType parse_outtype(const std::string &s);
const char *outtype_name(DType t);  // "f16" ...
uint32_t gguf_file_type(DType t);   // general.file_type: 0 f32, 1 f16, 32 bf16 (7 for q8_0 files)

// Converts n elements between the three float types (rounding to nearest even, NaN kept).
void convert_elements(const void *src, DType from, void *dst, DType to, size_t n);
// The index of the first NaN or infinity among n values of type t, or n where there is none.
size_t first_non_finite(const void *data, DType t, size_t n);

// Throws SEAOPT_ERR_INVALID_ARGUMENT if `output` exists and is one of the files the converter reads (any spelling,
// or a hard link): renaming the output onto it would destroy it, and pull a mapped or streamed input from under its
// reader. seaopt-convert and seaopt-quantize both call it.
void refuse_output_over_input(const std::string &output, const std::vector<std::string> &inputs);

}  // namespace seaopt::convert
