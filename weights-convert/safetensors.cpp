#include "weights-convert/safetensors.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "engine/error.h"

namespace seaopt::convert {
namespace {

using json = nlohmann::json;

struct Pending {
    std::string name;
    std::string dtype;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    std::vector<uint64_t> shape;
    std::vector<uint64_t> offsets;
};

// SAX handler for the header: no DOM (a 100 MB header must not become gigabytes of nodes), duplicate
// keys refused at every level, values checked against the schema as they arrive.
//
// Levels: 1 = the top object (keys are tensor names or __metadata__), 2 = a tensor's object or the
// metadata object, 3 = the shape / data_offsets arrays.
class HeaderHandler : public nlohmann::json_sax<json> {
public:
    std::vector<Pending> tensors;
    std::string error;

    bool null() override { return scalar("null"); }
    bool boolean(bool) override { return scalar("a boolean"); }
    bool number_integer(number_integer_t) override {
        // nlohmann reports only negative numbers here (non-negative ones come as number_unsigned).
        return scalar("a negative number");
    }
    bool number_unsigned(number_unsigned_t v) override {
        if (depth_ == 3 && field_ != Field::None) {
            std::vector<uint64_t> &dst = field_ == Field::Shape ? cur_.shape : cur_.offsets;
            const size_t cap = field_ == Field::Shape ? kSafetensorsMaxRank : 2;
            if (dst.size() >= cap) {
                return fail(field_ == Field::Shape ? "tensor '" + cur_.name + "' has more than " +
                                                         std::to_string(kSafetensorsMaxRank) + " dimensions"
                                                   : "tensor '" + cur_.name + "': data_offsets must be [begin, end]");
            }
            dst.push_back(v);
            return true;
        }
        return scalar("a number");
    }
    bool number_float(number_float_t, const string_t &) override { return scalar("a number with a fraction"); }
    bool binary(binary_t &) override { return fail("binary value in the header"); }
    bool string(string_t &v) override {
        if (depth_ == 2 && in_metadata_) return true;  // __metadata__ values: strings, ignored
        if (depth_ == 2 && !in_metadata_ && key_ == "dtype") {
            cur_.dtype = std::move(v);
            cur_.has_dtype = true;
            return true;
        }
        return scalar("a string");
    }
    bool start_object(std::size_t) override {
        if (depth_ == 0) {
            depth_ = 1;
            return true;
        }
        if (depth_ == 1) {
            depth_ = 2;
            seen_fields_.clear();
            if (key_ == "__metadata__") {
                in_metadata_ = true;
            } else {
                in_metadata_ = false;
                cur_ = Pending{};
                cur_.name = key_;
            }
            return true;
        }
        return scalar("an object");
    }
    bool end_object() override {
        if (depth_ == 2) {
            if (!in_metadata_) {
                if (!cur_.has_dtype) return fail("tensor '" + cur_.name + "' has no dtype");
                if (!cur_.has_shape) return fail("tensor '" + cur_.name + "' has no shape");
                if (!cur_.has_offsets || cur_.offsets.size() != 2) {
                    return fail("tensor '" + cur_.name + "' has no data_offsets [begin, end]");
                }
                tensors.push_back(std::move(cur_));
            }
            in_metadata_ = false;
        }
        --depth_;
        return true;
    }
    bool start_array(std::size_t) override {
        if (depth_ == 2 && !in_metadata_ && (key_ == "shape" || key_ == "data_offsets")) {
            depth_ = 3;
            field_ = key_ == "shape" ? Field::Shape : Field::Offsets;
            (field_ == Field::Shape ? cur_.has_shape : cur_.has_offsets) = true;
            return true;
        }
        return scalar("an array");
    }
    bool end_array() override {
        if (field_ == Field::Offsets && cur_.offsets.size() != 2) {
            return fail("tensor '" + cur_.name + "': data_offsets must be [begin, end]");
        }
        field_ = Field::None;
        depth_ = 2;
        return true;
    }
    bool key(string_t &k) override {
        if (depth_ == 1) {
            if (!top_keys_.insert(k).second) return fail("duplicate key '" + k + "'");
        } else if (depth_ == 2) {
            if (!seen_fields_.insert(k).second) {
                return fail(std::string(in_metadata_ ? "__metadata__" : "tensor '" + cur_.name + "'") +
                            ": duplicate key '" + k + "'");
            }
        }
        key_ = std::move(k);
        return true;
    }
    bool parse_error(std::size_t position, const std::string &, const nlohmann::detail::exception &ex) override {
        std::string msg = ex.what();
        if (const size_t p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);
        return fail("header is not valid JSON (byte " + std::to_string(position) + "): " + msg);
    }

private:
    enum class Field { None, Shape, Offsets };
    int depth_ = 0;
    bool in_metadata_ = false;
    Field field_ = Field::None;
    std::string key_;
    Pending cur_;
    std::unordered_set<std::string> top_keys_;
    std::unordered_set<std::string> seen_fields_;

    bool fail(const std::string &m) {
        if (error.empty()) error = m;
        return false;
    }
    // A value where the schema does not allow it.
    bool scalar(const char *what) {
        if (depth_ == 0) return fail(std::string("header is ") + what + ", not a JSON object");
        if (depth_ == 1) return fail("entry '" + key_ + "' is " + what + ", not an object");
        if (in_metadata_) return fail(std::string("__metadata__ value '") + key_ + "' is " + what + ", not a string");
        if (depth_ == 2) {
            if (key_ == "dtype" || key_ == "shape" || key_ == "data_offsets") {
                return fail("tensor '" + cur_.name + "': " + key_ + " is " + what);
            }
            // Unknown fields of a tensor entry are ignored, as long as they are plain scalars.
            return std::strcmp(what, "an object") && std::strcmp(what, "an array")
                       ? true
                       : fail("tensor '" + cur_.name + "': field '" + key_ + "' is " + what);
        }
        return fail("tensor '" + cur_.name + "': " + (field_ == Field::Shape ? "shape" : "data_offsets") +
                    " holds " + what + ", not a non-negative integer");
    }
};

bool parse_dtype(const std::string &s, DType *out) {
    if (s == "F16") *out = DType::F16;
    else if (s == "BF16") *out = DType::BF16;
    else if (s == "F32") *out = DType::F32;
    else return false;
    return true;
}

// Bits per element of the safetensors dtypes seaopt does not convert; 0 for an unknown name.
uint32_t other_safetensors_dtype_bits(const std::string &s) {
    static const struct {
        const char *name;
        uint32_t bits;
    } kKnown[] = {{"BOOL", 8}, {"U8", 8},  {"I8", 8},  {"I16", 16}, {"U16", 16}, {"I32", 32},
                  {"U32", 32}, {"I64", 64}, {"U64", 64}, {"F64", 64}, {"F8_E5M2", 8}, {"F8_E4M3", 8},
                  {"F8_E8M0", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"C64", 64}};
    for (const auto &k : kKnown) {
        if (s == k.name) return k.bits;
    }
    return 0;
}

std::string shape_str(const std::vector<uint64_t> &shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

}  // namespace

std::vector<SafetensorsTensor> read_safetensors_header(const ByteSource &src, bool keep_unconvertible) {
    const std::string &what = src.name();
    const uint64_t file_size = src.size();
    if (file_size < 8) {
        throw_model_format(what + ": file is " + std::to_string(file_size) +
                           " bytes, too short for a safetensors header length");
    }
    uint8_t len_bytes[8];
    src.read(0, len_bytes, 8);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
    if (header_len > kSafetensorsMaxHeader) {
        throw_model_format(what + ": header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
    }
    if (header_len > file_size - 8) {
        throw_model_format(what + ": header length " + std::to_string(header_len) + " is past the end of the file (" +
                           std::to_string(file_size) + " bytes)");
    }
    if (header_len < 2) throw_model_format(what + ": header of " + std::to_string(header_len) + " bytes is too small");

    const std::vector<uint8_t> header = src.read_vec(8, (size_t)header_len);
    if (header[0] != '{') throw_model_format(what + ": header does not start with '{' (not a JSON object)");

    HeaderHandler h;
    bool ok = false;
    try {
        ok = json::sax_parse(header.begin(), header.end(), &h, nlohmann::detail::input_format_t::json, true, false);
    } catch (const std::exception &e) {
        if (h.error.empty()) h.error = std::string("header is not valid JSON: ") + e.what();
    }
    if (!ok || !h.error.empty()) throw_model_format(what + ": " + (h.error.empty() ? "header is not valid JSON" : h.error));

    const uint64_t data_start = 8 + header_len;
    const uint64_t data_size = file_size - data_start;
    std::vector<SafetensorsTensor> out;
    out.reserve(h.tensors.size());
    for (Pending &p : h.tensors) {
        SafetensorsTensor t;
        t.name = std::move(p.name);
        uint64_t element_bits = 0;
        if (parse_dtype(p.dtype, &t.dtype)) {
            element_bits = 8 * dtype_size(t.dtype);
        } else {
            element_bits = other_safetensors_dtype_bits(p.dtype);
            if (element_bits == 0) throw_model_format(what + ": tensor '" + t.name + "' has unknown dtype '" + p.dtype + "'");
            if (!keep_unconvertible) {
                throw_unsupported(what + ": tensor '" + t.name + "' has unsupported dtype " + p.dtype +
                                  " (seaopt-convert reads F16, BF16 and F32)");
            }
            t.unconvertible = "dtype " + p.dtype;
        }
        uint64_t n_bits = element_bits;
        for (uint64_t d : p.shape) {
            if (!checked_mul(n_bits, d, &n_bits)) {
                throw_model_format(what + ": tensor '" + t.name + "' shape " + shape_str(p.shape) +
                                   " overflows 64-bit sizes");
            }
        }
        const uint64_t n_bytes = n_bits / 8 + (n_bits % 8 ? 1 : 0);
        const uint64_t begin = p.offsets[0], end = p.offsets[1];
        if (begin > end) {
            throw_model_format(what + ": tensor '" + t.name + "' has data_offsets [" + std::to_string(begin) + ", " +
                               std::to_string(end) + "] with begin after end");
        }
        if (end > data_size) {
            throw_model_format(what + ": tensor '" + t.name + "' data_offsets end " + std::to_string(end) +
                               " is past the end of the data (" + std::to_string(data_size) + " bytes)");
        }
        if (end - begin != n_bytes) {
            throw_model_format(what + ": tensor '" + t.name + "' has " + std::to_string(end - begin) +
                               " bytes in data_offsets but shape " + shape_str(p.shape) + " of " +
                               p.dtype + " needs " + std::to_string(n_bytes));
        }
        t.shape = std::move(p.shape);
        t.offset = data_start + begin;
        t.n_bytes = n_bytes;
        out.push_back(std::move(t));
    }

    // No two tensors may share bytes (empty tensors occupy nothing and cannot overlap).
    std::vector<size_t> order(out.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return out[a].offset != out[b].offset ? out[a].offset < out[b].offset : out[a].n_bytes < out[b].n_bytes;
    });
    const SafetensorsTensor *prev = nullptr;
    for (size_t i : order) {
        const SafetensorsTensor &t = out[i];
        if (t.n_bytes == 0) continue;
        if (prev && t.offset < prev->offset + prev->n_bytes) {
            throw_model_format(what + ": tensors '" + prev->name + "' and '" + t.name + "' overlap in the data buffer");
        }
        prev = &t;
    }
    return out;
}

}  // namespace seaopt::convert
