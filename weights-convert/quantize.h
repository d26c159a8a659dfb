// seaopt-quantize: a seaopt GGUF with f32/f16/bf16 matrices -> the same model with the six weight matrices of every
// block as Q8_0 (model/q8_0.h), as llama.cpp's llama-quantize does for its models. Everything else -- metadata,
// tokenizer, embeddings, LayerNorms, biases, the SEA estimator -- is copied as it is; general.file_type becomes 7.
// Quantizing the f16 file of a checkpoint gives the same bytes as `seaopt-convert --outtype q8_0` of that
// checkpoint when its weights are f16 (both quantize the same values).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace seaopt::convert {

struct QuantizeResult {
    size_t n_tensors = 0, n_quantized = 0;
    uint64_t bytes_in = 0, bytes_out = 0;  // tensor data
    double seconds = 0;
};

// Validates the input as the loader does (every key and tensor; no weights are converted), refuses a model whose
// matrices are already Q8_0 or whose widths are not multiples of 32, and an output path naming the input; writes via
// a temporary file and a rename (gguf::Writer), so a failure leaves no output. progress(i, n) after tensor i.
QuantizeResult quantize_gguf_q8_0(const std::string &input, const std::string &output,
                                  const std::function<void(size_t, size_t)> &progress = {});

}  // namespace seaopt::convert
