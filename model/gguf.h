// GGUF v3 reader and streaming writer (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
//
// The reader is a pure function over bytes (gguf::parse) that trusts nothing: every count is
// bounded before allocation and against the remaining bytes, all size arithmetic is overflow
// checked, and the first problem is reported in plain words as seaopt::Error(SEAOPT_ERR_MODEL_FORMAT).
// Past it, the header is trusted; tensor data is referenced, not copied.
//
// Dimension order is GGUF's: ne[0] is the fastest-varying (innermost) dimension, so a PyTorch
// weight of shape [out, in] is stored with ne = {in, out}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace seaopt::gguf {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
constexpr size_t kMaxNameLength = 64;          // as GGML_MAX_NAME, NUL included: names are < 64 bytes
constexpr uint64_t kMaxStringLength = 1u << 20;  // no key or string value we read is longer than 1 MiB

enum class ValueType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// The unquantized types and ggml's Q8_0 (blocks of 32 consecutive elements of ne[0]: an fp16 scale d, then 32
// int8 q; element = q * d): seaopt writes and reads nothing else.
// (model/q8_0.h has the block's constants and arithmetic.)
enum class TensorType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };

const char *value_type_name(ValueType t);
const char *tensor_type_name(TensorType t);
// The data size of a tensor of this type and shape (ne[0] innermost). False where a block type's ne[0] is not a
// multiple of its block (Q8_0: 32) or the size overflows 64 bits.
bool tensor_data_bytes(TensorType t, const int64_t *ne, uint32_t n_dims, uint64_t *n_bytes);

// One metadata value. Scalars live in the member matching their category; arrays of arrays are
// rejected by the reader (seaopt never writes them).
struct Value {
    ValueType type = ValueType::UINT32;
    ValueType array_type = ValueType::UINT32;  // element type when type == ARRAY
    uint64_t u64 = 0;                          // UINT8/16/32/64 and BOOL (0/1)
    int64_t i64 = 0;                           // INT8/16/32/64
    double f64 = 0;                            // FLOAT32/64
    std::string str;                           // STRING
    std::vector<std::string> str_array;        // ARRAY of STRING
    std::vector<int64_t> int_array;            // ARRAY of any integer type or BOOL
    std::vector<double> float_array;           // ARRAY of FLOAT32/64

    static Value make_u32(uint32_t v);
    static Value make_i32(int32_t v);
    static Value make_u64(uint64_t v);
    static Value make_f32(float v);
    static Value make_bool(bool v);
    static Value make_str(std::string v);
    static Value make_str_array(std::vector<std::string> v);
    static Value make_i32_array(std::vector<int32_t> v);
    size_t array_size() const;  // element count for arrays, 0 otherwise
};

struct TensorInfo {
    std::string name;
    uint32_t n_dims = 0;
    int64_t ne[kMaxDims] = {1, 1, 1, 1};  // unused dims are 1
    TensorType type = TensorType::F32;
    uint64_t offset = 0;  // relative to the start of the data section
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;
};

// A parsed file header. Tensor data is at bytes [data_offset + t.offset, ... + t.n_bytes) of the
// buffer that was parsed; parse() has checked that every such range lies inside it.
struct File {
    uint32_t version = 0;
    uint64_t alignment = kDefaultAlignment;
    uint64_t data_offset = 0;  // absolute offset of the data section
    std::vector<std::pair<std::string, Value>> kv;  // in file order
    std::vector<TensorInfo> tensors;                // in file order
    // Name -> position indexes built by parse(). find()/find_tensor() verify each hit and fall
    // back to a scan, so a File filled or edited by hand still answers correctly.
    std::unordered_map<std::string, size_t> key_index;
    std::unordered_map<std::string, size_t> tensor_index;

    const Value *find(const std::string &key) const;           // nullptr if absent
    const TensorInfo *find_tensor(const std::string &name) const;  // nullptr if absent

    // Typed getters for required keys. They throw SEAOPT_ERR_MODEL_FORMAT naming the key if it is
    // missing or has another type ("key opt.block_count: expected UINT32, found STRING").
    uint32_t get_u32(const std::string &key) const;
    float get_f32(const std::string &key) const;
    bool get_bool(const std::string &key) const;
    const std::string &get_str(const std::string &key) const;
    const std::vector<std::string> &get_str_array(const std::string &key) const;
};

// Parses and validates a GGUF buffer: magic, version (3; 1 and 2 and future versions are refused),
// counts, key and name lengths, duplicate keys and tensor names, value types, alignment (a power
// of two), n_dims in [1, 4], every ne > 0, element count and byte size without overflow, tensor
// types (F32/F16/BF16/Q8_0 only; a Q8_0 tensor's ne[0] a multiple of 32), offsets aligned, in order, non-overlapping, and inside the buffer.
File parse(const uint8_t *data, size_t size);

// A read-only memory map of a whole file (throws SEAOPT_ERR_IO with the path and strerror).
class MappedFile {
public:
    explicit MappedFile(const std::string &path);
    ~MappedFile();
    MappedFile(const MappedFile &) = delete;
    MappedFile &operator=(const MappedFile &) = delete;
    const uint8_t *data() const { return data_; }
    size_t size() const { return size_; }

private:
    const uint8_t *data_ = nullptr;
    size_t size_ = 0;
};

// Streaming writer. Declare all metadata and tensor infos first, then write(): the header goes out,
// then for each tensor in declaration order the callback is asked for its bytes, which it passes in
// one or more pieces to `sink` (so a converter never holds more than one chunk). The writer checks
// that each tensor gets exactly its byte size, pads to the alignment, writes to a new temporary file of its own beside
// the target (`path + ".tmp.XXXXXX"`, mkstemp: never an existing file), flushes, and renames it onto `path` only on
// success; on any error the temporary file is removed. on_temporary, if given, is called with that file's name right
// after it is created (a tool removes it when a signal ends the process: weights-convert/interrupt_cleanup.h).
class Writer {
public:
    using Sink = std::function<void(const void *data, size_t n)>;
    using TensorDataFn = std::function<void(size_t tensor_index, const Sink &sink)>;

    void set(const std::string &key, Value value);  // replaces an existing key of the same name
    // ne in GGUF order (innermost first), 1 to 4 dims.
    size_t add_tensor(const std::string &name, TensorType type, const std::vector<int64_t> &ne);
    const std::vector<TensorInfo> &tensors() const { return tensors_; }
    void write(const std::string &path, const TensorDataFn &tensor_data,
               const std::function<void(const std::string &)> &on_temporary = {}) const;

private:
    std::vector<std::pair<std::string, Value>> kv_;
    std::vector<TensorInfo> tensors_;
    uint64_t alignment_ = kDefaultAlignment;
};

}  // namespace seaopt::gguf
