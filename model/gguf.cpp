// GGUF v3 reader and streaming writer. See gguf.h for the contract and anchors.md E1-E4 for why
// each check exists (every one of them answers a real llama.cpp advisory).
#include "model/gguf.h"
#include "model/q8_0.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "engine/error.h"
#include "engine/file_mode.h"

namespace seaopt::gguf {
namespace {

// Sanity caps for untrusted headers, checked before anything is allocated. OPT-175B has ~1.5k
// tensors and ~25 keys; the largest arrays are the tokenizer's (~50k entries).
constexpr uint64_t kMaxTensors = 1u << 16;
constexpr uint64_t kMaxKeys = 1u << 16;
constexpr uint64_t kMaxArrayLength = 1u << 24;
constexpr uint64_t kMaxKeyLength = 65535;  // the spec's limit; the writer enforces it
// Smallest possible encodings, used to bound counts against the bytes that remain.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4;                  // key length, 1 key byte, value type
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, ne[0], type, offset
constexpr size_t kWriteBufferSize = 4u << 20;
const char *const kAlignmentKey = "general.alignment";

std::string str(uint64_t v) { return std::to_string(v); }

bool is_valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::FLOAT64); }

bool is_integer_type(ValueType t) {
    switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::UINT16: case ValueType::INT16:
    case ValueType::UINT32: case ValueType::INT32: case ValueType::UINT64: case ValueType::INT64:
    case ValueType::BOOL:
        return true;
    default:
        return false;
    }
}

bool is_float_type(ValueType t) { return t == ValueType::FLOAT32 || t == ValueType::FLOAT64; }

// Encoded size of one scalar (strings: their minimum, the length field).
uint64_t encoded_size(ValueType t) {
    switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: case ValueType::STRING: return 8;
    case ValueType::ARRAY: return 4 + 8;
    }
    return 1;
}

// ggml type names, only to make "unsupported type" messages telling (seaopt reads F32/F16/BF16).
const char *ggml_type_name(uint32_t t) {
    static const char *const names[] = {
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2 (removed)", "Q4_3 (removed)", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
        "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    };
    return t < sizeof(names) / sizeof(names[0]) ? names[t] : nullptr;
}

bool is_supported_tensor_type(uint32_t t) {
    return t == static_cast<uint32_t>(TensorType::F32) || t == static_cast<uint32_t>(TensorType::F16) ||
           t == static_cast<uint32_t>(TensorType::BF16) || t == static_cast<uint32_t>(TensorType::Q8_0);
}

bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Rounds v up to a multiple of `alignment` (a power of two); false on overflow.
bool align_up(uint64_t v, uint64_t alignment, uint64_t *out) {
    uint64_t t;
    if (__builtin_add_overflow(v, alignment - 1, &t)) return false;
    *out = t & ~(alignment - 1);
    return true;
}

std::string shape_string(const int64_t *ne, uint32_t n) {
    std::string s = "{";
    for (uint32_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "}";
}

// A little-endian cursor over untrusted bytes. Every read checks the remaining length first;
// `context` names what is being read ("key 'general.name'") for the error messages.
class Reader {
public:
    Reader(const uint8_t *data, size_t size) : data_(data), size_(size) {}

    size_t offset() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }
    std::string context;

    [[noreturn]] void fail(const std::string &what) const { throw_model_format(what); }

    void require(uint64_t n, const char *what) const {
        if (n > remaining()) {
            fail("the file is truncated: " + std::string(what) + where() + " at offset " + str(pos_) + " needs " +
                 str(n) + " bytes but only " + str(remaining()) + " remain");
        }
    }

    uint8_t u8(const char *what) {
        require(1, what);
        return data_[pos_++];
    }
    uint16_t u16(const char *what) { return static_cast<uint16_t>(little_endian(2, what)); }
    uint32_t u32(const char *what) { return static_cast<uint32_t>(little_endian(4, what)); }
    uint64_t u64(const char *what) { return little_endian(8, what); }

    // A GGUF string: uint64 length, then that many bytes (no NUL). `max_length` is checked before
    // the length is trusted for anything.
    std::string string(const char *what, uint64_t max_length) {
        const size_t at = pos_;
        const uint64_t n = u64(what);
        if (n > max_length) {
            fail(std::string(what) + where() + " at offset " + str(at) + " claims a length of " + str(n) +
                 " bytes, more than the limit of " + str(max_length) + ": the file is corrupt");
        }
        return bytes(n, what);
    }

    // n raw bytes as a string; the caller has bounded n.
    std::string bytes(uint64_t n, const char *what) {
        require(n, what);
        std::string s(reinterpret_cast<const char *>(data_ + pos_), static_cast<size_t>(n));
        pos_ += static_cast<size_t>(n);
        return s;
    }

    std::string where() const { return context.empty() ? "" : " of " + context; }

private:
    uint64_t little_endian(unsigned n, const char *what) {
        require(n, what);
        uint64_t v = 0;
        for (unsigned i = 0; i < n; ++i) v |= static_cast<uint64_t>(data_[pos_ + i]) << (8 * i);
        pos_ += n;
        return v;
    }

    const uint8_t *data_;
    size_t size_;
    size_t pos_ = 0;
};

void read_scalar(Reader &r, ValueType type, Value &v) {
    switch (type) {
    case ValueType::UINT8: v.u64 = r.u8("a UINT8 value"); break;
    case ValueType::INT8: v.i64 = static_cast<int8_t>(r.u8("an INT8 value")); break;
    case ValueType::UINT16: v.u64 = r.u16("a UINT16 value"); break;
    case ValueType::INT16: v.i64 = static_cast<int16_t>(r.u16("an INT16 value")); break;
    case ValueType::UINT32: v.u64 = r.u32("a UINT32 value"); break;
    case ValueType::INT32: v.i64 = static_cast<int32_t>(r.u32("an INT32 value")); break;
    case ValueType::UINT64: v.u64 = r.u64("a UINT64 value"); break;
    case ValueType::INT64: v.i64 = static_cast<int64_t>(r.u64("an INT64 value")); break;
    case ValueType::FLOAT32: {
        const uint32_t bits = r.u32("a FLOAT32 value");
        float f;
        std::memcpy(&f, &bits, 4);
        v.f64 = f;
        break;
    }
    case ValueType::FLOAT64: {
        const uint64_t bits = r.u64("a FLOAT64 value");
        std::memcpy(&v.f64, &bits, 8);
        break;
    }
    case ValueType::BOOL: {
        const size_t at = r.offset();
        const uint8_t b = r.u8("a BOOL value");
        if (b > 1) r.fail("BOOL value" + r.where() + " at offset " + str(at) + " is " + str(b) + "; it must be 0 or 1");
        v.u64 = b;
        break;
    }
    case ValueType::STRING: v.str = r.string("a string value", kMaxStringLength); break;
    case ValueType::ARRAY: break;  // handled by read_value
    }
}

Value read_value(Reader &r, ValueType type) {
    Value v;
    v.type = type;
    if (type != ValueType::ARRAY) {
        read_scalar(r, type, v);
        return v;
    }
    const size_t at = r.offset();
    const uint32_t elem = r.u32("the array element type");
    if (!is_valid_value_type(elem)) {
        r.fail("array" + r.where() + " at offset " + str(at) + " has an invalid element type " + str(elem) +
               " (valid value types are 0 to 12)");
    }
    v.array_type = static_cast<ValueType>(elem);
    if (v.array_type == ValueType::ARRAY) {
        r.fail("array" + r.where() + " at offset " + str(at) + " contains arrays: nested arrays are not supported");
    }
    const uint64_t count = r.u64("the array length");
    const uint64_t min_elem = encoded_size(v.array_type);
    if (count > kMaxArrayLength) {
        r.fail("array" + r.where() + " claims " + str(count) + " elements, more than the limit of " +
               str(kMaxArrayLength) + ": the file is corrupt");
    }
    if (count > r.remaining() / min_elem) {
        r.fail("the file is truncated: array" + r.where() + " claims " + str(count) + " " +
               value_type_name(v.array_type) + " elements (at least " + str(count * min_elem) +
               " bytes) but only " + str(r.remaining()) + " bytes remain");
    }
    const size_t n = static_cast<size_t>(count);
    Value elem_value;
    if (v.array_type == ValueType::STRING) {
        v.str_array.reserve(n);
        for (size_t i = 0; i < n; ++i) v.str_array.push_back(r.string("an array string", kMaxStringLength));
    } else if (is_float_type(v.array_type)) {
        v.float_array.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            read_scalar(r, v.array_type, elem_value);
            v.float_array.push_back(elem_value.f64);
        }
    } else {
        // Integers and BOOL; UINT64 elements above INT64_MAX keep their bit pattern.
        v.int_array.reserve(n);
        const bool is_unsigned = v.array_type == ValueType::UINT8 || v.array_type == ValueType::UINT16 ||
                                 v.array_type == ValueType::UINT32 || v.array_type == ValueType::UINT64 ||
                                 v.array_type == ValueType::BOOL;
        for (size_t i = 0; i < n; ++i) {
            read_scalar(r, v.array_type, elem_value);
            v.int_array.push_back(is_unsigned ? static_cast<int64_t>(elem_value.u64) : elem_value.i64);
        }
    }
    return v;
}

std::string describe_type(const Value &v) {
    if (v.type == ValueType::ARRAY) return std::string("ARRAY of ") + value_type_name(v.array_type);
    return value_type_name(v.type);
}

[[noreturn]] void throw_wrong_type(const std::string &key, const char *expected, const Value &found) {
    throw_model_format("key " + key + ": expected " + expected + ", found " + describe_type(found));
}

const Value &require_key(const File &f, const std::string &key) {
    const Value *v = f.find(key);
    if (!v) throw_model_format("required key " + key + " is missing");
    return *v;
}

}  // namespace

// ---- names and sizes ---------------------------------------------------------------------------

const char *value_type_name(ValueType t) {
    switch (t) {
    case ValueType::UINT8: return "UINT8";
    case ValueType::INT8: return "INT8";
    case ValueType::UINT16: return "UINT16";
    case ValueType::INT16: return "INT16";
    case ValueType::UINT32: return "UINT32";
    case ValueType::INT32: return "INT32";
    case ValueType::FLOAT32: return "FLOAT32";
    case ValueType::BOOL: return "BOOL";
    case ValueType::STRING: return "STRING";
    case ValueType::ARRAY: return "ARRAY";
    case ValueType::UINT64: return "UINT64";
    case ValueType::INT64: return "INT64";
    case ValueType::FLOAT64: return "FLOAT64";
    }
    return "unknown";
}

const char *tensor_type_name(TensorType t) {
    switch (t) {
    case TensorType::F32: return "F32";
    case TensorType::F16: return "F16";
    case TensorType::BF16: return "BF16";
    case TensorType::Q8_0: return "Q8_0";
    }
    return "unknown";
}

bool tensor_data_bytes(TensorType t, const int64_t *ne, uint32_t n_dims, uint64_t *n_bytes) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
        if (ne[d] <= 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(ne[d]), &n)) return false;
    }
    switch (t) {
    case TensorType::F32: return !__builtin_mul_overflow(n, uint64_t{4}, n_bytes);
    case TensorType::F16:
    case TensorType::BF16: return !__builtin_mul_overflow(n, uint64_t{2}, n_bytes);
    case TensorType::Q8_0:
        if (n_dims == 0 || static_cast<uint64_t>(ne[0]) % kQ8Block != 0) return false;
        return !__builtin_mul_overflow(n / kQ8Block, static_cast<uint64_t>(kQ8BlockBytes), n_bytes);
    }
    return false;  // not reachable from parsed files (parse() refuses other types)
}

// ---- Value -------------------------------------------------------------------------------------

Value Value::make_u32(uint32_t v) {
    Value r;
    r.type = ValueType::UINT32;
    r.u64 = v;
    return r;
}

Value Value::make_i32(int32_t v) {
    Value r;
    r.type = ValueType::INT32;
    r.i64 = v;
    return r;
}

Value Value::make_u64(uint64_t v) {
    Value r;
    r.type = ValueType::UINT64;
    r.u64 = v;
    return r;
}

Value Value::make_f32(float v) {
    Value r;
    r.type = ValueType::FLOAT32;
    r.f64 = v;
    return r;
}

Value Value::make_bool(bool v) {
    Value r;
    r.type = ValueType::BOOL;
    r.u64 = v ? 1 : 0;
    return r;
}

Value Value::make_str(std::string v) {
    Value r;
    r.type = ValueType::STRING;
    r.str = std::move(v);
    return r;
}

Value Value::make_str_array(std::vector<std::string> v) {
    Value r;
    r.type = ValueType::ARRAY;
    r.array_type = ValueType::STRING;
    r.str_array = std::move(v);
    return r;
}

Value Value::make_i32_array(std::vector<int32_t> v) {
    Value r;
    r.type = ValueType::ARRAY;
    r.array_type = ValueType::INT32;
    r.int_array.assign(v.begin(), v.end());
    return r;
}

size_t Value::array_size() const {
    if (type != ValueType::ARRAY) return 0;
    if (array_type == ValueType::STRING) return str_array.size();
    if (is_float_type(array_type)) return float_array.size();
    if (is_integer_type(array_type)) return int_array.size();
    return 0;
}

// ---- File --------------------------------------------------------------------------------------

const Value *File::find(const std::string &key) const {
    if (auto it = key_index.find(key); it != key_index.end() && it->second < kv.size() && kv[it->second].first == key) {
        return &kv[it->second].second;
    }
    for (const auto &entry : kv) {
        if (entry.first == key) return &entry.second;
    }
    return nullptr;
}

const TensorInfo *File::find_tensor(const std::string &name) const {
    if (auto it = tensor_index.find(name);
        it != tensor_index.end() && it->second < tensors.size() && tensors[it->second].name == name) {
        return &tensors[it->second];
    }
    for (const TensorInfo &t : tensors) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

uint32_t File::get_u32(const std::string &key) const {
    const Value &v = require_key(*this, key);
    if (v.type != ValueType::UINT32) throw_wrong_type(key, "UINT32", v);
    return static_cast<uint32_t>(v.u64);
}

float File::get_f32(const std::string &key) const {
    const Value &v = require_key(*this, key);
    if (v.type != ValueType::FLOAT32) throw_wrong_type(key, "FLOAT32", v);
    return static_cast<float>(v.f64);
}

bool File::get_bool(const std::string &key) const {
    const Value &v = require_key(*this, key);
    if (v.type != ValueType::BOOL) throw_wrong_type(key, "BOOL", v);
    return v.u64 != 0;
}

const std::string &File::get_str(const std::string &key) const {
    const Value &v = require_key(*this, key);
    if (v.type != ValueType::STRING) throw_wrong_type(key, "STRING", v);
    return v.str;
}

const std::vector<std::string> &File::get_str_array(const std::string &key) const {
    const Value &v = require_key(*this, key);
    if (v.type != ValueType::ARRAY || v.array_type != ValueType::STRING) throw_wrong_type(key, "ARRAY of STRING", v);
    return v.str_array;
}

// ---- parse -------------------------------------------------------------------------------------

File parse(const uint8_t *data, size_t size) {
    if (size == 0 || data == nullptr) throw_model_format("the file is empty (0 bytes): it is not a GGUF file");
    if (size < 4) throw_model_format("the file is only " + str(size) + " bytes long: it is not a GGUF file");
    Reader r(data, size);
    File f;

    const uint32_t magic = r.u32("the magic");
    if (magic != kMagic) {
        std::string shown;
        for (int i = 0; i < 4; ++i) {
            const char c = static_cast<char>(data[i]);
            shown += (c >= 0x20 && c < 0x7f) ? c : '?';
        }
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%08x", magic);
        throw_model_format("not a GGUF file: bad magic '" + shown + "' (" + hex + "), expected 'GGUF'");
    }

    f.version = r.u32("the version");
    if (f.version != kVersion) {
        if (f.version == 1 || f.version == 2) {
            throw_model_format("GGUF version " + str(f.version) + " is not supported; re-convert the model");
        }
        if (f.version == 0x03000000u) {
            throw_model_format("GGUF version field reads 0x03000000: this is a big-endian GGUF file, which seaopt "
                               "does not read; re-convert the model");
        }
        if (f.version == 0) throw_model_format("GGUF version 0 is not a valid version: the file is corrupt");
        throw_model_format("GGUF version " + str(f.version) + " is newer than this seaopt reads (version " +
                           str(kVersion) + "); update seaopt or re-convert the model");
    }

    const uint64_t n_tensors = r.u64("the tensor count");
    const uint64_t n_kv = r.u64("the key-value count");
    // Bound both counts before anything is allocated: by a sane cap and by the bytes that remain.
    const uint64_t rest = r.remaining();
    if (n_kv > kMaxKeys) {
        throw_model_format("the header claims " + str(n_kv) + " metadata keys (key-value count), more than the limit of " +
                           str(kMaxKeys) + ": the file is corrupt");
    }
    if (n_tensors > kMaxTensors) {
        throw_model_format("the header claims " + str(n_tensors) + " tensors (tensor count), more than the limit of " +
                           str(kMaxTensors) + ": the file is corrupt");
    }
    if (n_kv * kMinKvBytes + n_tensors * kMinTensorInfoBytes > rest) {
        throw_model_format("the file is truncated or corrupt: the header claims " + str(n_kv) + " metadata keys and " +
                           str(n_tensors) + " tensors, which need at least " +
                           str(n_kv * kMinKvBytes + n_tensors * kMinTensorInfoBytes) + " bytes, but only " +
                           str(rest) + " bytes follow the header");
    }

    // ---- metadata
    f.kv.reserve(static_cast<size_t>(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
        const size_t key_at = r.offset();
        r.context = "metadata key #" + str(i);
        std::string key = r.string("the name", kMaxKeyLength);
        if (key.empty()) throw_model_format("metadata key #" + str(i) + " at offset " + str(key_at) + " is empty");
        if (auto it = f.key_index.find(key); it != f.key_index.end()) {
            throw_model_format("duplicate metadata key '" + key + "' (entries #" + str(it->second) + " and #" + str(i) +
                               ", offset " + str(key_at) + ")");
        }
        r.context = "key '" + key + "'";
        const size_t type_at = r.offset();
        const uint32_t type = r.u32("the value type");
        if (!is_valid_value_type(type)) {
            throw_model_format("key '" + key + "' has an invalid value type " + str(type) + " at offset " +
                               str(type_at) + " (valid value types are 0 to 12)");
        }
        Value v = read_value(r, static_cast<ValueType>(type));
        f.key_index.emplace(key, f.kv.size());
        f.kv.emplace_back(std::move(key), std::move(v));
    }

    if (const Value *a = f.find(kAlignmentKey)) {
        if (a->type != ValueType::UINT32) {
            throw_model_format(std::string("key '") + kAlignmentKey + "' must be UINT32, found " + describe_type(*a));
        }
        if (!is_power_of_two(a->u64)) {
            throw_model_format(std::string("key '") + kAlignmentKey + "' is " + str(a->u64) +
                               "; the alignment must be a nonzero power of two");
        }
        f.alignment = a->u64;
    }

    // ---- tensor infos
    f.tensors.reserve(static_cast<size_t>(n_tensors));
    uint64_t expected_offset = 0;  // canonical layout: each tensor starts where the previous ended, aligned
    for (uint64_t i = 0; i < n_tensors; ++i) {
        const size_t info_at = r.offset();
        r.context = "tensor #" + str(i);
        const uint64_t name_length = r.u64("the tensor name length");
        if (name_length >= kMaxNameLength) {
            throw_model_format("tensor #" + str(i) + " at offset " + str(info_at) + " has a name of " + str(name_length) +
                               " bytes; tensor names must be shorter than " + str(kMaxNameLength) + " bytes");
        }
        if (name_length == 0) throw_model_format("tensor #" + str(i) + " at offset " + str(info_at) + " has an empty name");
        TensorInfo t;
        t.name = r.bytes(name_length, "the tensor name");
        if (auto it = f.tensor_index.find(t.name); it != f.tensor_index.end()) {
            throw_model_format("duplicate tensor name '" + t.name + "' (tensors #" + str(it->second) + " and #" +
                               str(i) + ", offset " + str(info_at) + ")");
        }
        const std::string tname = "tensor '" + t.name + "'";
        r.context = tname;

        t.n_dims = r.u32("the number of dimensions");
        if (t.n_dims < 1 || t.n_dims > kMaxDims) {
            throw_model_format(tname + " has " + str(t.n_dims) + " dimensions; seaopt supports 1 to " + str(kMaxDims) +
                               " dimensions");
        }
        for (uint32_t d = 0; d < t.n_dims; ++d) t.ne[d] = static_cast<int64_t>(r.u64("a dimension"));
        int64_t n_elements = 1;
        for (uint32_t d = 0; d < t.n_dims; ++d) {
            // Zero dims are refused too: they invite divisions by zero downstream (anchors.md E4).
            if (t.ne[d] <= 0) {
                throw_model_format(tname + " has shape " + shape_string(t.ne, t.n_dims) + ": dimension " + str(d) +
                                   " is " + std::to_string(t.ne[d]) + "; every dimension must be positive");
            }
            if (__builtin_mul_overflow(n_elements, t.ne[d], &n_elements)) {
                throw_model_format(tname + " has shape " + shape_string(t.ne, t.n_dims) +
                                   ": its element count overflows 64 bits; the file is corrupt");
            }
        }
        t.n_elements = static_cast<uint64_t>(n_elements);

        const size_t type_at = r.offset();
        const uint32_t type = r.u32("the tensor type");
        if (!is_supported_tensor_type(type)) {
            const char *known = ggml_type_name(type);
            throw_model_format(tname + " has tensor type " + str(type) + (known ? std::string(" (") + known + ")" : "") +
                               " at offset " + str(type_at) + "; seaopt reads only F32, F16, BF16 and Q8_0 tensors");
        }
        t.type = static_cast<TensorType>(type);
        if (t.type == TensorType::Q8_0 && static_cast<uint64_t>(t.ne[0]) % kQ8Block != 0) {
            throw_model_format(tname + " has type Q8_0 and shape " + shape_string(t.ne, t.n_dims) + ": its first dimension " +
                               std::to_string(t.ne[0]) + " is not a multiple of the Q8_0 block size 32");
        }
        if (!tensor_data_bytes(t.type, t.ne, t.n_dims, &t.n_bytes)) {
            throw_model_format(tname + " has shape " + shape_string(t.ne, t.n_dims) +
                               ": its byte size overflows 64 bits; the file is corrupt");
        }

        t.offset = r.u64("the tensor data offset");
        if (t.offset % f.alignment != 0) {
            throw_model_format(tname + " has data offset " + str(t.offset) + ", which is not a multiple of the alignment " +
                               str(f.alignment));
        }
        if (t.offset != expected_offset) {
            if (i == 0) {
                throw_model_format(tname + " is the first tensor but has data offset " + str(t.offset) +
                                   "; it must start at offset 0 (a gap in the data section)");
            }
            const TensorInfo &prev = f.tensors.back();
            if (t.offset < expected_offset) {
                throw_model_format(tname + " has data offset " + str(t.offset) + ", which overlaps or precedes tensor '" +
                                   prev.name + "' (data [" + str(prev.offset) + ", " + str(prev.offset + prev.n_bytes) +
                                   ")); tensors must be stored in order without overlap");
            }
            throw_model_format(tname + " has data offset " + str(t.offset) + ", leaving a gap after tensor '" +
                               prev.name + "'; expected offset " + str(expected_offset));
        }
        uint64_t end;
        if (__builtin_add_overflow(t.offset, t.n_bytes, &end) || !align_up(end, f.alignment, &expected_offset)) {
            throw_model_format(tname + " data offset " + str(t.offset) + " plus its " + str(t.n_bytes) +
                               " bytes overflows 64 bits; the file is corrupt");
        }
        f.tensor_index.emplace(t.name, f.tensors.size());
        f.tensors.push_back(std::move(t));
    }
    r.context.clear();

    // ---- data section: every tensor inside the buffer
    if (!align_up(r.offset(), f.alignment, &f.data_offset)) throw_model_format("the header size overflows 64 bits");
    for (const TensorInfo &t : f.tensors) {
        uint64_t begin = 0, end = 0;
        const bool overflow = __builtin_add_overflow(f.data_offset, t.offset, &begin) ||
                              __builtin_add_overflow(begin, t.n_bytes, &end);
        if (overflow || end > size) {
            const std::string range = overflow ? "at data offset " + str(t.offset) + " (" + str(t.n_bytes) + " bytes)"
                                               : "[" + str(begin) + ", " + str(end) + ")";
            throw_model_format("tensor '" + t.name + "' data " + range + " lies beyond the end of the file (size " +
                               str(size) + "): the file is truncated or corrupt");
        }
    }
    // The data section ends with the last tensor padded to the alignment (what llama.cpp and gguf-py
    // write, and what llama.cpp's non-mmap reader reads), so a file cut inside that padding is
    // truncated too. A file without tensors may end right after its header (a metadata-only file).
    uint64_t data_end = 0;
    if (!f.tensors.empty() && (__builtin_add_overflow(f.data_offset, expected_offset, &data_end) || data_end > size)) {
        throw_model_format("the file is truncated: its data section should end at offset " + str(data_end) +
                           " (the last tensor padded to the alignment " + str(f.alignment) +
                           ") but the file size is " + str(size));
    }
    // Nor may bytes follow it: a general.alignment changed from 32 to 16 moves the data section 16 bytes earlier,
    // and every tensor would be read shifted, silently, with the file's last 16 bytes left over.
    if (!f.tensors.empty() && data_end < size) {
        throw_model_format(str(size - data_end) + " bytes follow the data section (which ends at offset " +
                           str(data_end) + " with the alignment " + str(f.alignment) +
                           "): the file is corrupt or its general.alignment is wrong");
    }
    return f;
}

// ---- MappedFile --------------------------------------------------------------------------------

MappedFile::MappedFile(const std::string &path) {
    // O_NONBLOCK: a FIFO (or another special file) would block open() until a writer came; it is refused below by
    // the regular-file check instead. On a regular file the flag changes nothing.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw_io("cannot open '" + path + "': " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        throw_io("cannot stat '" + path + "': " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw_io("cannot open '" + path + "': " + (S_ISDIR(st.st_mode) ? "it is a directory" : "it is not a regular file"));
    }
    if (static_cast<uint64_t>(st.st_size) > std::numeric_limits<size_t>::max()) {
        ::close(fd);
        throw_io("cannot map '" + path + "': the file is too large for this address space");
    }
    // An empty file is not mapped (mmap of length 0 fails); parse() then reports it as too short.
    if (st.st_size > 0) {
        const size_t n = static_cast<size_t>(st.st_size);
        void *p = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            throw_io("cannot map '" + path + "' (" + str(n) + " bytes): " + std::strerror(e));
        }
        data_ = static_cast<const uint8_t *>(p);
        size_ = n;
    }
    ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t *>(data_), size_);
}

// ---- Writer ------------------------------------------------------------------------------------

namespace {

bool fits_unsigned(ValueType t, uint64_t v) {
    switch (t) {
    case ValueType::UINT8: return v <= 0xff;
    case ValueType::UINT16: return v <= 0xffff;
    case ValueType::UINT32: return v <= 0xffffffffu;
    case ValueType::UINT64: return true;
    case ValueType::BOOL: return v <= 1;
    default: return false;
    }
}

bool fits_signed(ValueType t, int64_t v) {
    switch (t) {
    case ValueType::INT8: return v >= INT8_MIN && v <= INT8_MAX;
    case ValueType::INT16: return v >= INT16_MIN && v <= INT16_MAX;
    case ValueType::INT32: return v >= INT32_MIN && v <= INT32_MAX;
    case ValueType::INT64: return true;
    default: return false;
    }
}

bool is_signed_type(ValueType t) {
    return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 || t == ValueType::INT64;
}

// int_array holds every integer element type as int64; UINT64 elements keep their bit pattern.
bool array_element_fits(ValueType t, int64_t v) {
    if (is_signed_type(t)) return fits_signed(t, v);
    if (t == ValueType::UINT64) return true;
    return v >= 0 && fits_unsigned(t, static_cast<uint64_t>(v));
}

// Refuses what the writer could not encode faithfully, or what parse() would refuse on reading.
void check_value(const std::string &key, const Value &v) {
    const std::string what = "GGUF key '" + key + "'";
    if (!is_valid_value_type(static_cast<uint32_t>(v.type))) {
        throw_invalid_argument(what + ": invalid value type " + str(static_cast<uint32_t>(v.type)));
    }
    if (is_signed_type(v.type) && !fits_signed(v.type, v.i64)) {
        throw_invalid_argument(what + ": value " + std::to_string(v.i64) + " does not fit " + value_type_name(v.type));
    }
    if ((is_integer_type(v.type) && !is_signed_type(v.type)) && !fits_unsigned(v.type, v.u64)) {
        throw_invalid_argument(what + ": value " + str(v.u64) + " does not fit " + value_type_name(v.type));
    }
    if (v.type == ValueType::STRING && v.str.size() > kMaxStringLength) {
        throw_invalid_argument(what + ": the string is longer than " + str(kMaxStringLength) + " bytes");
    }
    if (v.type != ValueType::ARRAY) return;
    if (!is_valid_value_type(static_cast<uint32_t>(v.array_type)) || v.array_type == ValueType::ARRAY) {
        throw_invalid_argument(what + ": invalid array element type " + str(static_cast<uint32_t>(v.array_type)) +
                               " (nested arrays are not supported)");
    }
    if (v.array_size() > kMaxArrayLength) {
        throw_invalid_argument(what + ": the array has more than " + str(kMaxArrayLength) + " elements");
    }
    if (v.array_type == ValueType::STRING) {
        for (size_t i = 0; i < v.str_array.size(); ++i) {
            if (v.str_array[i].size() > kMaxStringLength) {
                throw_invalid_argument(what + ": string " + str(i) + " is longer than " + str(kMaxStringLength) + " bytes");
            }
        }
    } else if (is_integer_type(v.array_type)) {
        for (size_t i = 0; i < v.int_array.size(); ++i) {
            if (!array_element_fits(v.array_type, v.int_array[i])) {
                throw_invalid_argument(what + ": element " + str(i) + " = " + std::to_string(v.int_array[i]) +
                                       " does not fit " + value_type_name(v.array_type));
            }
        }
    }
}

void check_tensor_name(const std::string &name) {
    if (name.empty()) throw_invalid_argument("GGUF tensor name is empty");
    if (name.size() >= kMaxNameLength) {
        throw_invalid_argument("GGUF tensor name '" + name + "' is " + str(name.size()) +
                               " bytes; names must be shorter than " + str(kMaxNameLength) + " bytes");
    }
}

void put_le(std::vector<uint8_t> &out, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put_string(std::vector<uint8_t> &out, const std::string &s) {
    put_le(out, s.size(), 8);
    out.insert(out.end(), s.begin(), s.end());
}

void put_f32(std::vector<uint8_t> &out, double v) {
    const float f = static_cast<float>(v);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    put_le(out, bits, 4);
}

void put_f64(std::vector<uint8_t> &out, double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    put_le(out, bits, 8);
}

// One scalar of type t; integers come as their two's-complement bit pattern.
void put_integer(std::vector<uint8_t> &out, ValueType t, uint64_t bits) {
    put_le(out, bits, static_cast<unsigned>(encoded_size(t)));
}

void put_value(std::vector<uint8_t> &out, const Value &v) {
    put_le(out, static_cast<uint32_t>(v.type), 4);
    switch (v.type) {
    case ValueType::FLOAT32: put_f32(out, v.f64); return;
    case ValueType::FLOAT64: put_f64(out, v.f64); return;
    case ValueType::STRING: put_string(out, v.str); return;
    case ValueType::ARRAY: break;
    default:
        put_integer(out, v.type, is_signed_type(v.type) ? static_cast<uint64_t>(v.i64) : v.u64);
        return;
    }
    put_le(out, static_cast<uint32_t>(v.array_type), 4);
    put_le(out, v.array_size(), 8);
    if (v.array_type == ValueType::STRING) {
        for (const std::string &s : v.str_array) put_string(out, s);
    } else if (v.array_type == ValueType::FLOAT32) {
        for (double d : v.float_array) put_f32(out, d);
    } else if (v.array_type == ValueType::FLOAT64) {
        for (double d : v.float_array) put_f64(out, d);
    } else {
        for (int64_t x : v.int_array) put_integer(out, v.array_type, static_cast<uint64_t>(x));
    }
}

// A write-only file with a large buffer, so that many small sink calls become few big writes. It is a new file of
// its own, `prefix` + 6 random characters (mkstemp: never an existing file, so nothing else is truncated and two
// writers of one path do not share it); path() names it.
class OutputFile {
public:
    explicit OutputFile(const std::string &prefix) : path_(prefix + "XXXXXX") {
        fd_ = make_temporary_file(path_);
        if (fd_ < 0) throw_io("cannot create a temporary file '" + path_ + "': " + std::strerror(errno));
        buffer_.resize(kWriteBufferSize);
    }
    const std::string &path() const { return path_; }
    ~OutputFile() {
        if (fd_ >= 0) ::close(fd_);
    }
    OutputFile(const OutputFile &) = delete;
    OutputFile &operator=(const OutputFile &) = delete;

    void write(const void *data, size_t n) {
        const uint8_t *p = static_cast<const uint8_t *>(data);
        if (n <= buffer_.size() - used_) {
            if (n) std::memcpy(buffer_.data() + used_, p, n);
            used_ += n;
            return;
        }
        flush_buffer();
        if (n >= buffer_.size()) {
            write_all(p, n);  // big pieces skip the copy
        } else {
            std::memcpy(buffer_.data(), p, n);
            used_ = n;
        }
    }

    void write_zeros(uint64_t n) {
        static const uint8_t zeros[256] = {};
        while (n) {
            const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof zeros));
            write(zeros, k);
            n -= k;
        }
    }

    // Flushes, fsyncs and closes; throws if any of it fails (a full disk shows up here).
    void finish() {
        flush_buffer();
        if (::fsync(fd_) != 0) throw_io("cannot sync '" + path_ + "': " + std::strerror(errno));
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) throw_io("cannot close '" + path_ + "': " + std::strerror(errno));
    }

private:
    void flush_buffer() {
        write_all(buffer_.data(), used_);
        used_ = 0;
    }

    void write_all(const uint8_t *p, size_t n) {
        while (n > 0) {
            const ssize_t k = ::write(fd_, p, std::min<size_t>(n, size_t(1) << 30));
            if (k < 0) {
                if (errno == EINTR) continue;
                throw_io("cannot write '" + path_ + "': " + std::strerror(errno));
            }
            if (k == 0) throw_io("cannot write '" + path_ + "': the write made no progress");
            p += k;
            n -= static_cast<size_t>(k);
        }
    }

    std::string path_;
    int fd_ = -1;
    std::vector<uint8_t> buffer_;
    size_t used_ = 0;
};

// Makes a completed rename durable; best effort (some file systems refuse fsync on directories).
void sync_parent_directory(const std::string &path) {
    const size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)::fsync(fd);
    ::close(fd);
}

}  // namespace

void Writer::set(const std::string &key, Value value) {
    if (key.empty()) throw_invalid_argument("GGUF key is empty");
    if (key.size() > kMaxKeyLength) {
        throw_invalid_argument("GGUF key '" + key.substr(0, 64) + "...' is longer than " + str(kMaxKeyLength) + " bytes");
    }
    check_value(key, value);
    if (key == kAlignmentKey) {
        if (value.type != ValueType::UINT32 || !is_power_of_two(value.u64)) {
            throw_invalid_argument(std::string("GGUF key '") + kAlignmentKey +
                                   "' must be a UINT32 nonzero power of two, got " + describe_type(value) + " " +
                                   str(value.u64));
        }
        alignment_ = value.u64;
        // Offsets of tensors already added follow the new alignment.
        uint64_t next = 0;
        for (TensorInfo &t : tensors_) {
            t.offset = next;
            if (!align_up(t.offset + t.n_bytes, alignment_, &next)) {
                throw_invalid_argument("GGUF data section overflows 64 bits");
            }
        }
    }
    for (auto &entry : kv_) {
        if (entry.first == key) {
            entry.second = std::move(value);
            return;
        }
    }
    kv_.emplace_back(key, std::move(value));
}

size_t Writer::add_tensor(const std::string &name, TensorType type, const std::vector<int64_t> &ne) {
    check_tensor_name(name);
    for (const TensorInfo &t : tensors_) {
        if (t.name == name) throw_invalid_argument("GGUF tensor '" + name + "' is added twice");
    }
    if (ne.empty() || ne.size() > kMaxDims) {
        throw_invalid_argument("GGUF tensor '" + name + "' has " + str(ne.size()) + " dimensions; 1 to " +
                               str(kMaxDims) + " are supported");
    }
    if (!is_supported_tensor_type(static_cast<uint32_t>(type))) {
        throw_invalid_argument("GGUF tensor '" + name + "' has unsupported type " + str(static_cast<uint32_t>(type)));
    }
    TensorInfo t;
    t.name = name;
    t.type = type;
    t.n_dims = static_cast<uint32_t>(ne.size());
    int64_t n_elements = 1;
    for (size_t d = 0; d < ne.size(); ++d) {
        t.ne[d] = ne[d];
        if (ne[d] <= 0 || __builtin_mul_overflow(n_elements, ne[d], &n_elements)) {
            throw_invalid_argument("GGUF tensor '" + name + "' has invalid shape " + shape_string(t.ne, t.n_dims) +
                                   " (dimensions must be positive and their product must fit 64 bits)");
        }
    }
    t.n_elements = static_cast<uint64_t>(n_elements);
    uint64_t next = 0;
    if (type == TensorType::Q8_0 && ne[0] % static_cast<int64_t>(kQ8Block) != 0) {
        throw_invalid_argument("GGUF tensor '" + name + "' of type Q8_0 has shape " + shape_string(t.ne, t.n_dims) +
                               ": its first dimension is not a multiple of 32");
    }
    if (!tensor_data_bytes(type, t.ne, t.n_dims, &t.n_bytes) ||
        (!tensors_.empty() && !align_up(tensors_.back().offset + tensors_.back().n_bytes, alignment_, &next))) {
        throw_invalid_argument("GGUF tensor '" + name + "' is too large");
    }
    t.offset = next;
    tensors_.push_back(std::move(t));
    return tensors_.size() - 1;
}

void Writer::write(const std::string &path, const TensorDataFn &tensor_data,
                   const std::function<void(const std::string &)> &on_temporary) const {
    if (!tensors_.empty() && !tensor_data) throw_invalid_argument("GGUF writer: no tensor data callback");
    if (const std::string why = output_path_problem(path); !why.empty()) throw_io("cannot write the model: " + why);

    std::vector<uint8_t> header;
    put_le(header, kMagic, 4);
    put_le(header, kVersion, 4);
    put_le(header, tensors_.size(), 8);
    put_le(header, kv_.size(), 8);
    for (const auto &[key, value] : kv_) {
        put_string(header, key);
        put_value(header, value);
    }
    for (const TensorInfo &t : tensors_) {
        put_string(header, t.name);
        put_le(header, t.n_dims, 4);
        for (uint32_t d = 0; d < t.n_dims; ++d) put_le(header, static_cast<uint64_t>(t.ne[d]), 8);
        put_le(header, static_cast<uint32_t>(t.type), 4);
        put_le(header, t.offset, 8);
    }
    uint64_t data_offset = 0;
    align_up(header.size(), alignment_, &data_offset);

    std::string tmp = path + ".tmp.";
    bool created = false;
    try {
        OutputFile out(tmp);
        tmp = out.path();
        created = true;
        if (on_temporary) on_temporary(tmp);
        out.write(header.data(), header.size());
        out.write_zeros(data_offset - header.size());
        for (size_t i = 0; i < tensors_.size(); ++i) {
            const TensorInfo &t = tensors_[i];
            uint64_t given = 0;
            const Sink sink = [&](const void *p, size_t n) {
                if (n == 0) return;
                if (p == nullptr) throw_invalid_argument("tensor '" + t.name + "': the data callback passed a null pointer");
                if (n > t.n_bytes - given) {
                    throw_invalid_argument("tensor '" + t.name + "': the data callback gave more than its " +
                                           str(t.n_bytes) + " bytes (" + str(given) + " + " + str(n) + ")");
                }
                out.write(p, n);
                given += n;
            };
            tensor_data(i, sink);
            if (given != t.n_bytes) {
                throw_invalid_argument("tensor '" + t.name + "': the data callback gave " + str(given) + " of its " +
                                       str(t.n_bytes) + " bytes");
            }
            uint64_t padded = 0;
            align_up(t.n_bytes, alignment_, &padded);
            out.write_zeros(padded - t.n_bytes);
        }
        out.finish();
        if (::rename(tmp.c_str(), path.c_str()) != 0) {
            throw_io("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
        }
    } catch (...) {
        if (created) ::unlink(tmp.c_str());
        throw;
    }
    sync_parent_directory(path);
}

}  // namespace seaopt::gguf
