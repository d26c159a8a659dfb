#include "weights-convert/quantize.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/error.h"
#include "engine/file_mode.h"
#include "model/gguf.h"
#include "model/opt_format.h"
#include "model/opt_model.h"
#include "model/q8_0.h"
#include "weights-convert/convert.h"
#include "weights-convert/interrupt_cleanup.h"

namespace seaopt::convert {


QuantizeResult quantize_gguf_q8_0(const std::string &input, const std::string &output,
                                  const std::function<void(size_t, size_t)> &progress) {
    const auto t0 = std::chrono::steady_clock::now();
    if (output.empty()) throw_invalid_argument("no output path given");
    if (const std::string why = output_path_problem(output); !why.empty()) throw_invalid_argument("the output " + why);
    refuse_output_over_input(output, {input});
    // The loader's validation of everything but the weights' values (vocab_only: nothing is converted).
    seaopt_model_params params{};
    params.device = SEAOPT_DEVICE_CPU;
    params.vocab_only = true;
    const std::unique_ptr<OptModel> model = load_opt_model(input, params);
    const OptHparams &hp = model->hp;
    if (model->file_type == "q8_0") throw_invalid_argument(input + " is already q8_0");
    check_q8_0_widths(hp);

    gguf::MappedFile mapped(input);
    const gguf::File file = gguf::parse(mapped.data(), mapped.size());
    std::vector<bool> quantize(file.tensors.size(), false);
    for (const OptTensorSpec &e : opt_tensor_specs(hp, file.find_tensor("output.weight") != nullptr)) {
        if (!e.quantizable) continue;
        for (size_t i = 0; i < file.tensors.size(); ++i) {
            if (file.tensors[i].name == e.gguf_name) quantize[i] = true;
        }
    }

    gguf::Writer writer;
    for (const auto &[key, value] : file.kv) writer.set(key, value);
    writer.set(keys::kFileType, gguf::Value::make_u32(kFileTypeMostlyQ8_0));
    QuantizeResult r;
    for (size_t i = 0; i < file.tensors.size(); ++i) {
        const gguf::TensorInfo &t = file.tensors[i];
        writer.add_tensor(t.name, quantize[i] ? gguf::TensorType::Q8_0 : t.type,
                          std::vector<int64_t>(t.ne, t.ne + t.n_dims));
        r.bytes_in += t.n_bytes;
        r.bytes_out += writer.tensors().back().n_bytes;
        if (quantize[i]) ++r.n_quantized;
    }
    r.n_tensors = file.tensors.size();

    // A matrix in pieces of whole rows' worth of blocks (at most kPiece values), so that memory stays bounded
    // whatever the model's width (an OPT-66B fc1 is 340 M values).
    constexpr uint64_t kPiece = 1u << 20;  // a multiple of 32
    std::vector<float> values;
    std::vector<uint8_t> blocks;
    write_gguf_guarded(writer, output, [&](size_t i, const gguf::Writer::Sink &sink) {
        const gguf::TensorInfo &t = file.tensors[i];
        const uint8_t *data = mapped.data() + file.data_offset + t.offset;
        if (!quantize[i]) {
            sink(data, t.n_bytes);
        } else {
            const uint64_t elem_bytes = t.n_bytes / t.n_elements;  // F32, F16 or BF16 (Q8_0 inputs were refused)
            for (uint64_t done = 0; done < t.n_elements; done += kPiece) {
                gguf::TensorInfo piece = t;
                piece.n_dims = 1;
                piece.ne[0] = (int64_t)std::min(kPiece, t.n_elements - done);
                piece.n_elements = (uint64_t)piece.ne[0];
                piece.n_bytes = piece.n_elements * elem_bytes;
                tensor_to_f32(values, piece, data + done * elem_bytes);
                blocks.resize(piece.n_elements / kQ8Block * kQ8BlockBytes);
                size_t bad = 0;
                if (!quantize_q8_0(values.data(), blocks.data(), values.size(), &bad)) {
                    throw Error(SEAOPT_ERR_MODEL_FORMAT, input + ": tensor '" + t.name + "' " +
                                                             q8_0_refusal(values[bad], done + bad));
                }
                sink(blocks.data(), blocks.size());
            }
        }
        if (progress) progress(i, file.tensors.size());
    });
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace seaopt::convert
