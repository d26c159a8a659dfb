// GGUF v3 reader and writer (model/gguf.h). The reader is fed handcrafted hostile files, one per
// check it makes (anchors.md E2/E4: the llama.cpp advisories it must be immune to), every
// truncation of a valid file, and a mutation sweep over a header; each must fail cleanly with
// SEAOPT_ERR_MODEL_FORMAT and a telling message, never crash or allocate by a hostile count.
#include <gtest/gtest.h>

#include "test_util.h"
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "model/gguf.h"

// ---- allocation watch ---------------------------------------------------------------------------
// The test binary replaces the global operator new to record the largest single request while a
// watch is active, so "a hostile count must not cause a huge allocation" is checked directly
// rather than only by luck (a 2^62-element reserve would otherwise just throw bad_alloc).
namespace {
std::atomic<bool> g_watching{false};
std::atomic<size_t> g_largest_allocation{0};

void *counted_alloc(size_t n) {
    if (g_watching.load(std::memory_order_relaxed)) {
        size_t prev = g_largest_allocation.load(std::memory_order_relaxed);
        while (n > prev && !g_largest_allocation.compare_exchange_weak(prev, n)) {
        }
    }
    void *p = std::malloc(n ? n : 1);
    if (!p) throw std::bad_alloc();
    return p;
}
}  // namespace

void *operator new(size_t n) { return counted_alloc(n); }
void *operator new[](size_t n) { return counted_alloc(n); }
void operator delete(void *p) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete(void *p, size_t) noexcept { std::free(p); }
void operator delete[](void *p, size_t) noexcept { std::free(p); }

namespace {

namespace gguf = seaopt::gguf;
using gguf::TensorType;
using gguf::Value;
using gguf::ValueType;

struct AllocationWatch {
    AllocationWatch() {
        g_largest_allocation = 0;
        g_watching = true;
    }
    ~AllocationWatch() { g_watching = false; }
    size_t largest() const { return g_largest_allocation.load(); }
};

// No parse of a small hostile buffer below needs more than this in one allocation.
constexpr size_t kSmallInputAllocationLimit = 64 * 1024;

// ---- byte building ---------------------------------------------------------------------------

constexpr uint32_t kTypeU32 = 4, kTypeI32 = 5, kTypeBool = 7, kTypeString = 8, kTypeArray = 9, kTypeU64 = 10;
constexpr uint32_t kF32 = 0, kF16 = 1;

struct Bytes {
    std::vector<uint8_t> b;

    Bytes &u8(uint8_t v) {
        b.push_back(v);
        return *this;
    }
    Bytes &le(uint64_t v, int n) {
        for (int i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
        return *this;
    }
    Bytes &u32(uint32_t v) { return le(v, 4); }
    Bytes &u64(uint64_t v) { return le(v, 8); }
    Bytes &i64(int64_t v) { return le(static_cast<uint64_t>(v), 8); }
    Bytes &raw(const std::string &s) {
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    Bytes &str(const std::string &s) { return u64(s.size()).raw(s); }
    Bytes &append(const Bytes &o) {
        b.insert(b.end(), o.b.begin(), o.b.end());
        return *this;
    }
    Bytes &pad(size_t alignment) {
        while (b.size() % alignment) b.push_back(0);
        return *this;
    }
    Bytes &zeros(size_t n) {
        b.insert(b.end(), n, 0);
        return *this;
    }

    Bytes &header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        return raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
    }
    Bytes &kv_u32(const std::string &key, uint32_t v) { return str(key).u32(kTypeU32).u32(v); }
    Bytes &kv_str(const std::string &key, const std::string &v) { return str(key).u32(kTypeString).str(v); }
    Bytes &tensor(const std::string &name, const std::vector<int64_t> &ne, uint32_t type, uint64_t offset) {
        str(name).u32(static_cast<uint32_t>(ne.size()));
        for (int64_t d : ne) i64(d);
        return u32(type).u64(offset);
    }
};

// A whole file: header, the encoded metadata entries and tensor infos, padding to `alignment`,
// then `data_bytes` zero bytes of tensor data.
std::vector<uint8_t> build(uint64_t n_kv, const Bytes &kvs, uint64_t n_tensors, const Bytes &infos, size_t data_bytes,
                           size_t alignment = 32) {
    Bytes f;
    f.header(n_tensors, n_kv).append(kvs).append(infos).pad(alignment).zeros(data_bytes);
    return f.b;
}

// A tensor-less file with just these metadata entries.
std::vector<uint8_t> build_kv(uint64_t n_kv, const Bytes &kvs) { return build(n_kv, kvs, 0, Bytes{}, 0); }

// A file with one metadata entry and these tensor infos.
std::vector<uint8_t> build_tensors(uint64_t n_tensors, const Bytes &infos, size_t data_bytes) {
    return build(1, Bytes{}.kv_str("general.architecture", "opt"), n_tensors, infos, data_bytes);
}

void expect_parses(const std::vector<uint8_t> &bytes) {
    try {
        gguf::parse(bytes.data(), bytes.size());
    } catch (const std::exception &e) {
        ADD_FAILURE() << "a valid control file was refused: " << e.what();
    }
}

// parse() must throw seaopt::Error(SEAOPT_ERR_MODEL_FORMAT) whose message contains `needle`,
// with no large allocation on the way.
void expect_format_error(const std::vector<uint8_t> &bytes, const std::string &needle) {
    size_t largest = 0;
    try {
        AllocationWatch watch;
        try {
            gguf::parse(bytes.data(), bytes.size());
        } catch (...) {
            largest = watch.largest();
            throw;
        }
        ADD_FAILURE() << "parsed without error; expected an error mentioning \"" << needle << "\"";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), SEAOPT_ERR_MODEL_FORMAT) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
            << "message \"" << e.what() << "\" does not mention \"" << needle << "\"";
    } catch (const std::exception &e) {
        ADD_FAILURE() << "threw a non-seaopt exception: " << e.what();
    }
    EXPECT_LT(largest, kSmallInputAllocationLimit) << "largest single allocation while parsing";
}

template <typename Fn>
void expect_error_code(seaopt_status code, const std::string &needle, Fn &&fn) {
    try {
        fn();
        ADD_FAILURE() << "no error; expected one mentioning \"" << needle << "\"";
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
            << "message \"" << e.what() << "\" does not mention \"" << needle << "\"";
    }
}

// ---- files ------------------------------------------------------------------------------------

std::string g_temp_dir;  // created on first use, removed when the test program ends

const std::string &temp_dir() {
    if (g_temp_dir.empty()) {
        std::string t = ::testing::TempDir() + "seaopt-gguf-XXXXXX";
        if (!mkdtemp(t.data())) throw std::runtime_error("mkdtemp failed");
        g_temp_dir = t;
    }
    return g_temp_dir;
}

struct RemoveTempDir : ::testing::Environment {
    void TearDown() override {
        if (!g_temp_dir.empty()) std::filesystem::remove_all(g_temp_dir);
    }
};
const ::testing::Environment *const g_remove_temp_dir = ::testing::AddGlobalTestEnvironment(new RemoveTempDir);

bool exists(const std::string &path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

std::vector<uint8_t> read_all(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_all(const std::string &path, const std::vector<uint8_t> &bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Known, tensor-specific contents: byte j of tensor i.
uint8_t pattern(size_t i, uint64_t j) { return static_cast<uint8_t>(i * 31 + j * 7 + 1); }

// Feeds each tensor its pattern bytes, in uneven pieces so the sink is called several times.
void pattern_data(size_t i, const gguf::Writer::Sink &sink, uint64_t n_bytes) {
    std::vector<uint8_t> bytes(n_bytes);
    for (uint64_t j = 0; j < n_bytes; ++j) bytes[j] = pattern(i, j);
    const size_t first = std::min<size_t>(bytes.size(), 3);
    sink(bytes.data(), first);
    sink(bytes.data() + first, 0);
    sink(bytes.data() + first, bytes.size() - first);
}

void write_with_patterns(const gguf::Writer &w, const std::string &path) {
    w.write(path, [&](size_t i, const gguf::Writer::Sink &sink) { pattern_data(i, sink, w.tensors()[i].n_bytes); });
}

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

Value make(ValueType t) {
    Value v;
    v.type = t;
    return v;
}

Value make_array(ValueType elem) {
    Value v;
    v.type = ValueType::ARRAY;
    v.array_type = elem;
    return v;
}

// A small valid writer-made file: a few keys of several kinds and three tensors.
std::vector<uint8_t> small_valid_file() {
    gguf::Writer w;
    w.set("general.architecture", Value::make_str("opt"));
    w.set("general.alignment", Value::make_u32(32));
    w.set("opt.block_count", Value::make_u32(2));
    w.set("opt.attention.layer_norm_epsilon", Value::make_f32(1e-5f));
    w.set("opt.do_layer_norm_before", Value::make_bool(true));
    w.set("tokenizer.ggml.tokens", Value::make_str_array({"a", "bc", ""}));
    w.set("tokenizer.ggml.token_type", Value::make_i32_array({1, 2, 3}));
    w.add_tensor("token_embd.weight", TensorType::F16, {4, 3});
    w.add_tensor("blk.0.attn_q.bias", TensorType::F32, {5});
    w.add_tensor("output_norm.weight", TensorType::BF16, {3});
    const std::string path = temp_dir() + "/small.gguf";
    write_with_patterns(w, path);
    return read_all(path);
}

// ==== round trip ================================================================================

TEST(GgufRoundTrip, EveryValueTypeAndTensorType) {
    gguf::Writer w;
    Value u8 = make(ValueType::UINT8);
    u8.u64 = 200;
    Value i8 = make(ValueType::INT8);
    i8.i64 = -100;
    Value u16 = make(ValueType::UINT16);
    u16.u64 = 60000;
    Value i16 = make(ValueType::INT16);
    i16.i64 = -30000;
    Value i64 = make(ValueType::INT64);
    i64.i64 = std::numeric_limits<int64_t>::min() + 7;
    Value f64 = make(ValueType::FLOAT64);
    f64.f64 = 3.141592653589793;
    Value f32_array = make_array(ValueType::FLOAT32);
    f32_array.float_array = {0.5, -2.25, 1e30, 0.0};
    Value bool_array = make_array(ValueType::BOOL);
    bool_array.int_array = {1, 0, 1};
    Value u8_array = make_array(ValueType::UINT8);
    u8_array.int_array = {0, 255, 7};
    Value u64_array = make_array(ValueType::UINT64);
    u64_array.int_array = {0, -1, std::numeric_limits<int64_t>::max()};  // -1 is UINT64_MAX's bit pattern
    Value f64_array = make_array(ValueType::FLOAT64);
    f64_array.float_array = {1.0 / 3.0, -1e300};

    const std::vector<std::pair<std::string, Value>> kv = {
        {"general.architecture", Value::make_str("opt")},
        {"general.alignment", Value::make_u32(32)},
        {"t.uint8", u8},
        {"t.int8", i8},
        {"t.uint16", u16},
        {"t.int16", i16},
        {"t.uint32", Value::make_u32(4000000000u)},
        {"t.int32", Value::make_i32(-2000000000)},
        {"t.float32", Value::make_f32(1.5f)},
        {"t.bool_true", Value::make_bool(true)},
        {"t.bool_false", Value::make_bool(false)},
        {"t.string", Value::make_str("h\xc3\xa9llo, world")},
        {"t.string_empty", Value::make_str("")},
        {"t.uint64", Value::make_u64((uint64_t(1) << 63) + 5)},
        {"t.int64", i64},
        {"t.float64", f64},
        {"t.array.string", Value::make_str_array({"a", "", "ccc", std::string(300, 'x')})},
        {"t.array.int32", Value::make_i32_array({1, -2, std::numeric_limits<int32_t>::max(),
                                                 std::numeric_limits<int32_t>::min()})},
        {"t.array.int32_empty", Value::make_i32_array({})},
        {"t.array.float32", f32_array},
        {"t.array.bool", bool_array},
        {"t.array.uint8", u8_array},
        {"t.array.uint64", u64_array},
        {"t.array.float64", f64_array},
    };
    for (const auto &[k, v] : kv) w.set(k, v);

    struct Spec {
        std::string name;
        TensorType type;
        std::vector<int64_t> ne;
    };
    const std::vector<Spec> specs = {
        {"f32.a", TensorType::F32, {3}},          {"f16.a", TensorType::F16, {5, 2}},
        {"bf16.a", TensorType::BF16, {2, 3, 4}},  {"f32.b", TensorType::F32, {1, 2, 3, 4}},
        {"f16.b", TensorType::F16, {7}},          {"bf16.b", TensorType::BF16, {33}},
        {"f32.c", TensorType::F32, {8, 4}},       {"f16.c", TensorType::F16, {16}},
        {"bf16.c", TensorType::BF16, {1}},        {"q8.a", TensorType::Q8_0, {64, 3}},
        {"q8.b", TensorType::Q8_0, {32}},
    };
    for (size_t i = 0; i < specs.size(); ++i) EXPECT_EQ(w.add_tensor(specs[i].name, specs[i].type, specs[i].ne), i);

    const std::string path = temp_dir() + "/roundtrip.gguf";
    write_with_patterns(w, path);
    EXPECT_FALSE(seaopt_test::temp_file_left(path));

    gguf::MappedFile mf(path);
    const gguf::File f = gguf::parse(mf.data(), mf.size());
    EXPECT_EQ(f.version, 3u);
    EXPECT_EQ(f.alignment, 32u);

    // Metadata: same keys, same order, same values.
    ASSERT_EQ(f.kv.size(), kv.size());
    for (size_t i = 0; i < kv.size(); ++i) {
        const auto &[key, want] = kv[i];
        SCOPED_TRACE(key);
        EXPECT_EQ(f.kv[i].first, key);
        const Value *got = f.find(key);
        ASSERT_NE(got, nullptr);
        EXPECT_EQ(got, &f.kv[i].second);
        EXPECT_EQ(got->type, want.type);
        switch (want.type) {
        case ValueType::UINT8: case ValueType::UINT16: case ValueType::UINT32: case ValueType::UINT64:
        case ValueType::BOOL:
            EXPECT_EQ(got->u64, want.u64);
            break;
        case ValueType::INT8: case ValueType::INT16: case ValueType::INT32: case ValueType::INT64:
            EXPECT_EQ(got->i64, want.i64);
            break;
        case ValueType::FLOAT32:
            EXPECT_EQ(static_cast<float>(got->f64), static_cast<float>(want.f64));
            break;
        case ValueType::FLOAT64:
            EXPECT_EQ(got->f64, want.f64);
            break;
        case ValueType::STRING:
            EXPECT_EQ(got->str, want.str);
            break;
        case ValueType::ARRAY:
            EXPECT_EQ(got->array_type, want.array_type);
            EXPECT_EQ(got->array_size(), want.array_size());
            EXPECT_EQ(got->str_array, want.str_array);
            EXPECT_EQ(got->int_array, want.int_array);
            if (want.array_type == ValueType::FLOAT32) {
                ASSERT_EQ(got->float_array.size(), want.float_array.size());
                for (size_t j = 0; j < want.float_array.size(); ++j) {
                    EXPECT_EQ(static_cast<float>(got->float_array[j]), static_cast<float>(want.float_array[j]));
                }
            } else {
                EXPECT_EQ(got->float_array, want.float_array);
            }
            break;
        }
    }
    EXPECT_EQ(f.find("t.absent"), nullptr);
    EXPECT_EQ(f.get_u32("t.uint32"), 4000000000u);
    EXPECT_EQ(f.get_f32("t.float32"), 1.5f);
    EXPECT_TRUE(f.get_bool("t.bool_true"));
    EXPECT_FALSE(f.get_bool("t.bool_false"));
    EXPECT_EQ(f.get_str("general.architecture"), "opt");
    EXPECT_EQ(f.get_str_array("t.array.string").size(), 4u);

    // Tensors: names, shapes, types, offsets computed here independently, and the data bytes.
    ASSERT_EQ(f.tensors.size(), specs.size());
    EXPECT_EQ(f.data_offset % 32, 0u);
    uint64_t expected_offset = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
        const gguf::TensorInfo &t = f.tensors[i];
        SCOPED_TRACE(specs[i].name);
        EXPECT_EQ(t.name, specs[i].name);
        EXPECT_EQ(f.find_tensor(specs[i].name), &t);
        EXPECT_EQ(t.type, specs[i].type);
        ASSERT_EQ(t.n_dims, specs[i].ne.size());
        uint64_t n = 1;
        for (size_t d = 0; d < gguf::kMaxDims; ++d) {
            const int64_t want = d < specs[i].ne.size() ? specs[i].ne[d] : 1;
            EXPECT_EQ(t.ne[d], want);
            n *= static_cast<uint64_t>(want);
        }
        EXPECT_EQ(t.n_elements, n);
        const uint64_t want_bytes = specs[i].type == TensorType::Q8_0 ? n / 32 * 34
                                    : n * (specs[i].type == TensorType::F32 ? 4 : 2);
        EXPECT_EQ(t.n_bytes, want_bytes);
        EXPECT_EQ(t.offset, expected_offset);
        EXPECT_EQ(w.tensors()[i].offset, expected_offset);
        for (uint64_t j = 0; j < t.n_bytes; ++j) {
            ASSERT_EQ(mf.data()[f.data_offset + t.offset + j], pattern(i, j)) << "byte " << j;
        }
        // Padding between tensors is zero.
        for (uint64_t j = t.offset + t.n_bytes; j < round_up(t.offset + t.n_bytes, 32); ++j) {
            ASSERT_EQ(mf.data()[f.data_offset + j], 0) << "padding byte " << j;
        }
        expected_offset = round_up(t.offset + t.n_bytes, 32);
    }
    EXPECT_EQ(f.find_tensor("absent.weight"), nullptr);
    EXPECT_EQ(mf.size(), f.data_offset + expected_offset);
}

// The writer checked against the spec by hand: every byte of a one-key, one-tensor file.
TEST(GgufRoundTrip, ByteExactTinyFile) {
    gguf::Writer w;
    w.set("a", Value::make_str("xy"));
    w.add_tensor("t", TensorType::F32, {2});
    const std::string path = temp_dir() + "/tiny.gguf";
    w.write(path, [](size_t, const gguf::Writer::Sink &sink) {
        const float data[2] = {1.0f, 2.0f};
        sink(data, sizeof data);
    });
    std::vector<uint8_t> expected = {
        'G', 'G', 'U', 'F',                        // magic
        3, 0, 0, 0,                                // version 3
        1, 0, 0, 0, 0, 0, 0, 0,                    // tensor_count
        1, 0, 0, 0, 0, 0, 0, 0,                    // metadata_kv_count
        1, 0, 0, 0, 0, 0, 0, 0, 'a',               // key "a"
        8, 0, 0, 0,                                // value type STRING
        2, 0, 0, 0, 0, 0, 0, 0, 'x', 'y',          // value "xy"
        1, 0, 0, 0, 0, 0, 0, 0, 't',               // tensor name "t"
        1, 0, 0, 0,                                // n_dims
        2, 0, 0, 0, 0, 0, 0, 0,                    // ne[0] = 2
        0, 0, 0, 0,                                // type F32
        0, 0, 0, 0, 0, 0, 0, 0,                    // offset 0
    };
    ASSERT_EQ(expected.size(), 80u);
    expected.resize(96, 0);  // padding to the 32-byte alignment
    const std::vector<uint8_t> data = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40};  // 1.0f, 2.0f
    expected.insert(expected.end(), data.begin(), data.end());
    expected.resize(128, 0);  // the last tensor padded to the alignment too
    EXPECT_EQ(read_all(path), expected);

    // Without a general.alignment from the caller, none is written (and the default 32 applies).
    const std::vector<uint8_t> bytes = read_all(path);
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    EXPECT_EQ(f.find("general.alignment"), nullptr);
    EXPECT_EQ(f.alignment, 32u);
    EXPECT_EQ(f.data_offset, 96u);
}

TEST(GgufRoundTrip, HandBuiltFileParses) {
    // The builder used by the corruption tests makes valid files when nothing is corrupted.
    Bytes infos;
    infos.tensor("a", {4}, kF32, 0).tensor("b", {2, 4}, kF16, 32);
    const std::vector<uint8_t> bytes =
        build(2, Bytes{}.kv_str("general.architecture", "opt").kv_u32("general.alignment", 32), 2, infos, 64);
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    ASSERT_EQ(f.tensors.size(), 2u);
    EXPECT_EQ(f.tensors[1].offset, 32u);
    EXPECT_EQ(f.tensors[1].n_bytes, 16u);
    EXPECT_EQ(f.get_u32("general.alignment"), 32u);
}

TEST(GgufRoundTrip, SetReplacesKeyInPlaceAndAlignmentMovesOffsets) {
    gguf::Writer w;
    w.set("k.a", Value::make_u32(1));
    w.set("k.b", Value::make_u32(2));
    w.add_tensor("x", TensorType::F32, {3});
    w.add_tensor("y", TensorType::F16, {5});
    EXPECT_EQ(w.tensors()[1].offset, 32u);
    w.set("general.alignment", Value::make_u32(64));
    w.set("k.a", Value::make_u32(3));
    EXPECT_EQ(w.tensors()[1].offset, 64u);
    w.add_tensor("z", TensorType::BF16, {40});
    EXPECT_EQ(w.tensors()[2].offset, 128u);
    const std::string path = temp_dir() + "/align64.gguf";
    write_with_patterns(w, path);
    const std::vector<uint8_t> bytes = read_all(path);
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    ASSERT_EQ(f.kv.size(), 3u);
    EXPECT_EQ(f.kv[0].first, "k.a");
    EXPECT_EQ(f.get_u32("k.a"), 3u);
    EXPECT_EQ(f.kv[1].first, "k.b");
    EXPECT_EQ(f.alignment, 64u);
    EXPECT_EQ(f.data_offset % 64, 0u);
    EXPECT_EQ(f.tensors[2].offset, 128u);
    EXPECT_EQ(bytes[f.data_offset + 128], pattern(2, 0));
    EXPECT_EQ(bytes.size(), f.data_offset + 256);  // z: 80 bytes at 128, padded to 64
}

// ==== File lookups and typed getters =============================================================

TEST(GgufFile, TypedGettersNameKeyAndTypes) {
    const std::vector<uint8_t> bytes = small_valid_file();
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    expect_error_code(SEAOPT_ERR_MODEL_FORMAT, "key general.architecture: expected UINT32, found STRING",
                      [&] { f.get_u32("general.architecture"); });
    expect_error_code(SEAOPT_ERR_MODEL_FORMAT, "key opt.block_count: expected FLOAT32, found UINT32",
                      [&] { f.get_f32("opt.block_count"); });
    expect_error_code(SEAOPT_ERR_MODEL_FORMAT, "expected BOOL", [&] { f.get_bool("opt.block_count"); });
    expect_error_code(SEAOPT_ERR_MODEL_FORMAT, "expected STRING, found ARRAY of STRING",
                      [&] { f.get_str("tokenizer.ggml.tokens"); });
    expect_error_code(SEAOPT_ERR_MODEL_FORMAT, "expected ARRAY of STRING, found ARRAY of INT32",
                      [&] { f.get_str_array("tokenizer.ggml.token_type"); });
    expect_error_code(SEAOPT_ERR_MODEL_FORMAT, "opt.vocab_size is missing", [&] { f.get_u32("opt.vocab_size"); });
    EXPECT_EQ(f.get_str_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "bc", ""}));
    EXPECT_EQ(f.find("tokenizer.ggml.token_type")->int_array, (std::vector<int64_t>{1, 2, 3}));
}

TEST(GgufFile, LookupsWorkWithoutAnIndex) {
    // A File filled by hand (no index) or edited after parsing still answers correctly.
    gguf::File f;
    f.kv.emplace_back("a", Value::make_u32(1));
    gguf::TensorInfo t;
    t.name = "w";
    f.tensors.push_back(t);
    EXPECT_EQ(f.get_u32("a"), 1u);
    EXPECT_EQ(f.find_tensor("w"), &f.tensors[0]);
    EXPECT_EQ(f.find_tensor("v"), nullptr);

    const std::vector<uint8_t> bytes = small_valid_file();
    gguf::File g = gguf::parse(bytes.data(), bytes.size());
    g.tensors[0].name = "renamed";
    g.kv[0].first = "renamed.key";
    EXPECT_EQ(g.find_tensor("renamed"), &g.tensors[0]);
    EXPECT_EQ(g.find_tensor("token_embd.weight"), nullptr);
    EXPECT_EQ(g.find("renamed.key"), &g.kv[0].second);
    EXPECT_EQ(g.find("general.architecture"), nullptr);
}

TEST(GgufFile, NamesAndSizes) {
    EXPECT_STREQ(gguf::value_type_name(ValueType::FLOAT64), "FLOAT64");
    EXPECT_STREQ(gguf::value_type_name(ValueType::ARRAY), "ARRAY");
    EXPECT_STREQ(gguf::tensor_type_name(TensorType::BF16), "BF16");
    EXPECT_STREQ(gguf::tensor_type_name(TensorType::Q8_0), "Q8_0");
    const int64_t ne[2] = {64, 3};
    uint64_t bytes = 0;
    ASSERT_TRUE(gguf::tensor_data_bytes(TensorType::F32, ne, 2, &bytes));
    EXPECT_EQ(bytes, 768u);
    ASSERT_TRUE(gguf::tensor_data_bytes(TensorType::F16, ne, 2, &bytes));
    EXPECT_EQ(bytes, 384u);
    ASSERT_TRUE(gguf::tensor_data_bytes(TensorType::BF16, ne, 2, &bytes));
    EXPECT_EQ(bytes, 384u);
    ASSERT_TRUE(gguf::tensor_data_bytes(TensorType::Q8_0, ne, 2, &bytes));
    EXPECT_EQ(bytes, 6u * 34u);  // 2 blocks a row, 3 rows
    const int64_t odd[2] = {48, 3};
    EXPECT_FALSE(gguf::tensor_data_bytes(TensorType::Q8_0, odd, 2, &bytes));
    const int64_t huge[2] = {int64_t(1) << 62, 8};
    EXPECT_FALSE(gguf::tensor_data_bytes(TensorType::F32, huge, 2, &bytes));
    EXPECT_EQ(Value::make_str_array({"a", "b"}).array_size(), 2u);
    EXPECT_EQ(Value::make_i32_array({1, 2, 3}).array_size(), 3u);
    EXPECT_EQ(Value::make_u32(5).array_size(), 0u);
}

// ==== header ====================================================================================

TEST(GgufCorrupt, BadMagic) {
    std::vector<uint8_t> bytes = small_valid_file();
    bytes[3] = 'X';
    expect_format_error(bytes, "magic");
    expect_format_error({'G', 'G', 'U'}, "not a GGUF file");
    expect_format_error({}, "empty");
}

TEST(GgufCorrupt, OldVersionsAreRefusedWithAHint) {
    for (uint32_t version : {1u, 2u}) {
        Bytes b;
        b.header(0, 0, version);
        expect_format_error(b.b, "GGUF version " + std::to_string(version) +
                                     " is not supported; re-convert the model");
    }
}

TEST(GgufCorrupt, FutureVersionIsRefused) {
    Bytes b;
    b.header(0, 0, 4);
    expect_format_error(b.b, "version 4 is newer");
    Bytes big_endian;
    big_endian.header(0, 0, 0x03000000u);
    expect_format_error(big_endian.b, "big-endian");
    Bytes zero;
    zero.header(0, 0, 0);
    expect_format_error(zero.b, "version 0");
    Bytes v3;
    v3.header(0, 0, 3);
    expect_parses(v3.b);
}

TEST(GgufCorrupt, HugeTensorCountDoesNotAllocate) {
    Bytes b;
    b.header(uint64_t(1) << 62, 0).zeros(64);
    expect_format_error(b.b, "tensor count");
    Bytes all_ones;
    all_ones.header(~uint64_t(0), 0).zeros(64);
    expect_format_error(all_ones.b, "tensor count");
    // Under the cap but more than the remaining bytes can hold.
    Bytes many;
    many.header(1000, 0).zeros(64);
    expect_format_error(many.b, "truncated");
}

TEST(GgufCorrupt, HugeKeyValueCountDoesNotAllocate) {
    Bytes b;
    b.header(0, uint64_t(1) << 62).zeros(64);
    expect_format_error(b.b, "key-value count");
    Bytes many;
    many.header(0, 1000).zeros(64);
    expect_format_error(many.b, "truncated");
}

// ==== metadata ==================================================================================

TEST(GgufCorrupt, HugeKeyLength) {
    expect_format_error(build_kv(1, Bytes{}.u64(uint64_t(1) << 62).zeros(40)), "claims a length of 4611686018427387904");
    expect_format_error(build_kv(1, Bytes{}.u64(100).raw("abc").u32(kTypeU32).u32(1)), "truncated");
}

TEST(GgufCorrupt, EmptyKey) {
    expect_format_error(build_kv(1, Bytes{}.kv_u32("", 1)), "metadata key #0 at offset 24 is empty");
}

TEST(GgufCorrupt, DuplicateKey) {
    expect_format_error(build_kv(3, Bytes{}.kv_u32("a.b", 1).kv_u32("c", 2).kv_u32("a.b", 3)),
                        "duplicate metadata key 'a.b'");
}

TEST(GgufCorrupt, BadValueType) {
    for (uint32_t type : {13u, 0xFFFFFFFFu, 0x80000000u}) {
        expect_format_error(build_kv(1, Bytes{}.str("k").u32(type).u32(0)),
                            "key 'k' has an invalid value type " + std::to_string(type));
    }
}

TEST(GgufCorrupt, BadBool) {
    expect_format_error(build_kv(1, Bytes{}.str("k").u32(kTypeBool).u8(2)), "must be 0 or 1");
    expect_parses(build_kv(1, Bytes{}.str("k").u32(kTypeBool).u8(1)));
}

TEST(GgufCorrupt, NestedArray) {
    expect_format_error(build_kv(1, Bytes{}.str("k").u32(kTypeArray).u32(kTypeArray).u64(1).u32(kTypeU32).u64(1).u32(7)),
                        "nested arrays are not supported");
}

TEST(GgufCorrupt, BadArrayElementType) {
    expect_format_error(build_kv(1, Bytes{}.str("k").u32(kTypeArray).u32(13).u64(0)), "invalid element type 13");
}

TEST(GgufCorrupt, HugeArrayCount) {
    for (uint32_t elem : {kTypeU32, kTypeString, 0u /* UINT8 */}) {
        expect_format_error(build_kv(1, Bytes{}.str("k").u32(kTypeArray).u32(elem).u64(uint64_t(1) << 62).zeros(64)),
                            "claims 4611686018427387904 elements");
    }
    // Under the cap but more than the remaining bytes can hold: refused before reserving.
    expect_format_error(build_kv(1, Bytes{}.str("k").u32(kTypeArray).u32(kTypeU64).u64(1000000).zeros(64)),
                        "truncated");
    expect_format_error(build_kv(1, Bytes{}.str("tokens").u32(kTypeArray).u32(kTypeString).u64(1000000).zeros(64)),
                        "array of key 'tokens' claims 1000000 STRING elements");
}

TEST(GgufCorrupt, HugeOrPastTheEndStringLength) {
    expect_format_error(build_kv(1, Bytes{}.str("k").u32(kTypeString).u64(uint64_t(1) << 63)),
                        "string value of key 'k' at offset 37 claims a length of 9223372036854775808 bytes");
    expect_format_error(build_kv(1, Bytes{}.str("k").u32(kTypeString).u64(100).raw("short")), "truncated");
    // Strings inside arrays too.
    expect_format_error(build_kv(1, Bytes{}.str("k").u32(kTypeArray).u32(kTypeString).u64(2).str("a").u64(~uint64_t(0))),
                        "array string of key 'k'");
}

TEST(GgufCorrupt, BadAlignment) {
    expect_format_error(build_kv(1, Bytes{}.kv_u32("general.alignment", 0)), "nonzero power of two");
    expect_format_error(build_kv(1, Bytes{}.kv_u32("general.alignment", 3)), "is 3; the alignment must be a nonzero power of two");
    expect_format_error(build_kv(1, Bytes{}.kv_u32("general.alignment", 0x80000001u)), "power of two");
    expect_format_error(build_kv(1, Bytes{}.str("general.alignment").u32(kTypeU64).u64(32)),
                        "'general.alignment' must be UINT32, found UINT64");
    expect_format_error(build_kv(1, Bytes{}.kv_str("general.alignment", "32")), "must be UINT32, found STRING");
    expect_parses(build_kv(1, Bytes{}.kv_u32("general.alignment", 64)));
}

// ==== tensor infos ==============================================================================

TEST(GgufCorrupt, TensorNameLength) {
    const std::string name63(63, 'n'), name64(64, 'n');
    expect_parses(build_tensors(1, Bytes{}.tensor(name63, {8}, kF32, 0), 32));
    expect_format_error(build_tensors(1, Bytes{}.tensor(name64, {8}, kF32, 0), 32),
                        "has a name of 64 bytes; tensor names must be shorter than 64 bytes");
    expect_format_error(build_tensors(1, Bytes{}.tensor("", {8}, kF32, 0), 32), "tensor #0 at offset");
    expect_format_error(build_tensors(1, Bytes{}.tensor("", {8}, kF32, 0), 32), "has an empty name");
    expect_format_error(build_tensors(1, Bytes{}.u64(uint64_t(1) << 62).zeros(40), 0), "name of 4611686018427387904 bytes");
}

TEST(GgufCorrupt, DuplicateTensorName) {
    expect_format_error(build_tensors(2, Bytes{}.tensor("w", {8}, kF32, 0).tensor("w", {8}, kF32, 32), 64),
                        "duplicate tensor name 'w'");
}

TEST(GgufCorrupt, DimensionCount) {
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {}, kF32, 0), 32), "tensor 'w' has 0 dimensions");
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {1, 1, 1, 1, 8}, kF32, 0), 32),
                        "tensor 'w' has 5 dimensions");
    expect_format_error(build_tensors(1, Bytes{}.str("w").u32(0xFFFFFFFFu).zeros(64), 0), "4294967295 dimensions");
    expect_parses(build_tensors(1, Bytes{}.tensor("w", {1, 1, 1, 8}, kF32, 0), 32));
}

TEST(GgufCorrupt, ZeroDimension) {
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {8, 0}, kF32, 0), 32),
                        "tensor 'w' has shape {8, 0}: dimension 1 is 0; every dimension must be positive");
}

TEST(GgufCorrupt, NegativeDimension) {
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {-3}, kF32, 0), 32), "dimension 0 is -3");
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {4, std::numeric_limits<int64_t>::min()}, kF32, 0), 32),
                        "dimension 1 is -9223372036854775808");
}

TEST(GgufCorrupt, ElementCountOverflow) {
    const int64_t max = std::numeric_limits<int64_t>::max();
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {max, 2}, kF32, 0), 32), "element count overflows");
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {1 << 16, 1 << 16, 1 << 16, 1 << 16}, kF32, 0), 32),
                        "element count overflows");
    // The element count fits, the byte size does not.
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {int64_t(1) << 61, 2}, kF32, 0), 32), "byte size overflows");
    // Both fit, but the end rounded up to the alignment does not.
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {max / 2}, kF32, 0), 32), "bytes overflows 64 bits");
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {max}, kF16, 0), 32), "bytes overflows 64 bits");
    // Everything fits in the data section's own terms, but data_offset + offset + size passes 2^64.
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {(int64_t(1) << 62) - 16}, kF32, 0), 32),
                        "tensor 'w' data at data offset 0 (18446744073709551552 bytes) lies beyond the end of the file");
    // And plainly far past the end.
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {1 << 20}, kF32, 0), 32), "lies beyond the end of the file");
}

TEST(GgufCorrupt, UnsupportedTensorType) {
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {32}, 2, 0), 32), "tensor 'w' has tensor type 2 (Q4_0)");
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {32}, 3, 0), 32), "type 3 (Q4_1)");
    // Q8_0 is read, in whole blocks of 32 along the first dimension only.
    expect_parses(build_tensors(1, Bytes{}.tensor("w", {32, 2}, 8 /* Q8_0 */, 0), 96));  // 68 bytes, padded to 32
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {32, 2}, 8, 0), 64), "truncated");
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {48, 2}, 8, 0), 32),
                        "tensor 'w' has type Q8_0 and shape {48, 2}: its first dimension 48 is not a multiple of the Q8_0 "
                        "block size 32");
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {2, 32}, 8, 0), 32), "not a multiple of the Q8_0 block size");
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {32}, 999, 0), 32), "tensor type 999 at offset");
    expect_format_error(build_tensors(1, Bytes{}.tensor("w", {32}, 0xFFFFFFFFu, 0), 32), "4294967295");
    expect_parses(build_tensors(1, Bytes{}.tensor("w", {16}, 30 /* BF16 */, 0), 32));
}

TEST(GgufCorrupt, MisalignedOffset) {
    expect_format_error(build_tensors(2, Bytes{}.tensor("a", {4}, kF32, 0).tensor("b", {4}, kF32, 16), 64),
                        "tensor 'b' has data offset 16, which is not a multiple of the alignment 32");
}

TEST(GgufCorrupt, OverlappingOrOutOfOrderOffsets) {
    // b starts inside a.
    expect_format_error(build_tensors(2, Bytes{}.tensor("a", {16}, kF32, 0).tensor("b", {4}, kF32, 32), 96),
                        "tensor 'b' has data offset 32, which overlaps or precedes tensor 'a'");
    // b and a swapped: b claims offset 0 after a.
    expect_format_error(build_tensors(2, Bytes{}.tensor("a", {4}, kF32, 32).tensor("b", {4}, kF32, 0), 64),
                        "first tensor but has data offset 32");
    expect_format_error(
        build_tensors(3, Bytes{}.tensor("a", {4}, kF32, 0).tensor("b", {4}, kF32, 32).tensor("c", {4}, kF32, 0), 96),
        "tensor 'c' has data offset 0, which overlaps or precedes tensor 'b'");
    // A gap is refused too (the canonical layout has none).
    expect_format_error(build_tensors(2, Bytes{}.tensor("a", {4}, kF32, 0).tensor("b", {4}, kF32, 64), 96),
                        "leaving a gap after tensor 'a'; expected offset 32");
    // An offset so large that offset + size overflows.
    expect_format_error(build_tensors(1, Bytes{}.tensor("a", {64}, kF32, ~uint64_t(31)), 32), "first tensor");
}

TEST(GgufCorrupt, TensorDataPastEndOfFile) {
    // Header intact, data 16 bytes short.
    const std::vector<uint8_t> bytes =
        build_tensors(2, Bytes{}.tensor("a", {4}, kF32, 0).tensor("blk.3.attn_q.weight", {8}, kF32, 32), 48);
    expect_format_error(bytes, "tensor 'blk.3.attn_q.weight' data [");
    expect_format_error(bytes, "lies beyond the end of the file (size " + std::to_string(bytes.size()) +
                                   "): the file is truncated or corrupt");
    // The data is whole but the last tensor's padding is cut.
    expect_format_error(build_tensors(1, Bytes{}.tensor("a", {4}, kF32, 0), 20), "data section should end at offset");
    expect_parses(build_tensors(1, Bytes{}.tensor("a", {4}, kF32, 0), 32));
    // Nor may bytes follow the padded data section.
    expect_format_error(build_tensors(1, Bytes{}.tensor("a", {4}, kF32, 0), 48), "16 bytes follow the data section");
}

// general.alignment changed from 32 to 16 (or 1) in a written file: the data section would start 16 bytes earlier
// and every tensor would be read shifted; the bytes left after it give it away.
TEST(GgufCorrupt, AlignmentChangedAfterWriting) {
    gguf::Writer w;
    w.set("general.alignment", Value::make_u32(32));
    w.set("a", Value::make_str("x"));  // the header then ends at byte 112: data at 128, or at 112 with 16, 8 or 1
    w.add_tensor("t", TensorType::F32, {8});
    const std::string path = temp_dir() + "/align.gguf";
    w.write(path, [](size_t, const gguf::Writer::Sink &sink) {
        const float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        sink(data, sizeof data);
    });
    const std::vector<uint8_t> bytes = read_all(path);
    expect_parses(bytes);
    const std::string key = "general.alignment";
    const auto at = std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
    ASSERT_NE(at, bytes.end());
    const size_t value_at = (size_t)(at - bytes.begin()) + key.size() + 4;  // after the key and its value type
    for (const uint32_t alignment : {16u, 8u, 1u}) {
        std::vector<uint8_t> changed = bytes;
        std::memcpy(changed.data() + value_at, &alignment, 4);
        SCOPED_TRACE(alignment);
        expect_format_error(changed, "16 bytes follow the data section");
    }
}

// ==== sweeps ====================================================================================

TEST(GgufCorrupt, EveryTruncationFailsCleanly) {
    const std::vector<uint8_t> bytes = small_valid_file();
    expect_parses(bytes);
    for (size_t keep = 0; keep < bytes.size(); ++keep) {
        SCOPED_TRACE("kept " + std::to_string(keep) + " of " + std::to_string(bytes.size()) + " bytes");
        // A fresh buffer of exactly `keep` bytes, so ASan catches any read past it.
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep));
        expect_format_error(cut, keep == 0 ? "empty" : "");
        if (::testing::Test::HasFailure()) break;
    }
}

// Whatever parse() accepts must honour its contract.
void check_parsed_invariants(const gguf::File &f, size_t size) {
    EXPECT_EQ(f.data_offset % f.alignment, 0u);
    for (const gguf::TensorInfo &t : f.tensors) {
        EXPECT_GE(t.n_dims, 1u);
        EXPECT_LE(t.n_dims, gguf::kMaxDims);
        EXPECT_LT(t.name.size(), gguf::kMaxNameLength);
        EXPECT_FALSE(t.name.empty());
        EXPECT_LE(f.data_offset + t.offset + t.n_bytes, size);
        uint64_t bytes = 0;
        EXPECT_TRUE(gguf::tensor_data_bytes(t.type, t.ne, t.n_dims, &bytes));
        EXPECT_EQ(t.n_bytes, bytes);
    }
}

// Parses one mutated buffer: it must parse (and then satisfy the contract) or throw seaopt::Error.
// Returns whether it parsed.
bool parse_mutant(const std::vector<uint8_t> &m, const std::string &what) {
    try {
        AllocationWatch watch;
        try {
            check_parsed_invariants(gguf::parse(m.data(), m.size()), m.size());
        } catch (...) {
            EXPECT_LT(watch.largest(), kSmallInputAllocationLimit) << what;
            throw;
        }
        EXPECT_LT(watch.largest(), kSmallInputAllocationLimit) << what;
        return true;
    } catch (const seaopt::Error &e) {
        EXPECT_EQ(e.code(), SEAOPT_ERR_MODEL_FORMAT) << what << ": " << e.what();
    } catch (const std::exception &e) {
        ADD_FAILURE() << what << ": threw a non-seaopt exception: " << e.what();
    } catch (...) {
        ADD_FAILURE() << what << ": threw something that is not an exception";
    }
    return false;
}

TEST(GgufFuzz, EveryHeaderByteMutated) {
    const std::vector<uint8_t> bytes = small_valid_file();
    const gguf::File f = gguf::parse(bytes.data(), bytes.size());
    size_t parsed_count = 0, refused_count = 0;
    for (size_t pos = 0; pos < f.data_offset; ++pos) {
        const uint8_t orig = bytes[pos];
        for (uint8_t v : {uint8_t(0x00), uint8_t(0xFF), uint8_t(0x7F), uint8_t(0x80), uint8_t(orig ^ 0x01),
                          uint8_t(orig ^ 0x40), uint8_t(orig + 1), uint8_t(orig - 1)}) {
            if (v == orig) continue;
            std::vector<uint8_t> m = bytes;
            m[pos] = v;
            if (parse_mutant(m, "byte " + std::to_string(pos) + " set to " + std::to_string(v))) {
                ++parsed_count;
            } else {
                ++refused_count;
            }
        }
        if (::testing::Test::HasFailure()) break;
    }
    // Both outcomes occur: many corruptions are caught, some (a key's letters, padding) are harmless.
    EXPECT_GT(refused_count, 0u);
    EXPECT_GT(parsed_count, 0u);
    ::testing::Test::RecordProperty("refused", static_cast<int>(refused_count));
    ::testing::Test::RecordProperty("parsed", static_cast<int>(parsed_count));
}

TEST(GgufFuzz, RandomMultiByteMutations) {
    const std::vector<uint8_t> bytes = small_valid_file();
    std::mt19937_64 rng(12345);
    for (int iter = 0; iter < 20000; ++iter) {
        std::vector<uint8_t> m = bytes;
        const int n_changes = 1 + static_cast<int>(rng() % 4);
        for (int c = 0; c < n_changes; ++c) m[rng() % m.size()] = static_cast<uint8_t>(rng());
        if (rng() % 4 == 0) m.resize(rng() % m.size());
        parse_mutant(m, "iteration " + std::to_string(iter));
        if (::testing::Test::HasFailure()) break;
    }
}

// ==== Writer ====================================================================================

gguf::Writer two_tensor_writer() {
    gguf::Writer w;
    w.set("general.architecture", Value::make_str("opt"));
    w.add_tensor("a.weight", TensorType::F32, {4});
    w.add_tensor("b.weight", TensorType::F16, {8, 2});
    return w;
}

TEST(GgufWriter, TooFewBytesThrowsAndLeavesNoFile) {
    const gguf::Writer w = two_tensor_writer();
    const std::string path = temp_dir() + "/too-few.gguf";
    expect_error_code(SEAOPT_ERR_INVALID_ARGUMENT, "tensor 'b.weight': the data callback gave 31 of its 32 bytes", [&] {
        w.write(path, [&](size_t i, const gguf::Writer::Sink &sink) {
            std::vector<uint8_t> data(w.tensors()[i].n_bytes - (i == 1 ? 1 : 0), 7);
            sink(data.data(), data.size());
        });
    });
    EXPECT_FALSE(exists(path));
    EXPECT_FALSE(seaopt_test::temp_file_left(path));
}

TEST(GgufWriter, TooManyBytesThrowsAndLeavesNoFile) {
    const gguf::Writer w = two_tensor_writer();
    const std::string path = temp_dir() + "/too-many.gguf";
    expect_error_code(SEAOPT_ERR_INVALID_ARGUMENT, "tensor 'a.weight': the data callback gave more than its 16 bytes",
                      [&] {
                          w.write(path, [&](size_t i, const gguf::Writer::Sink &sink) {
                              std::vector<uint8_t> data(w.tensors()[i].n_bytes, 7);
                              sink(data.data(), data.size());
                              sink(data.data(), 1);
                          });
                      });
    EXPECT_FALSE(exists(path));
    EXPECT_FALSE(seaopt_test::temp_file_left(path));
}

TEST(GgufWriter, ExistingTargetIsUntouchedOnFailure) {
    const gguf::Writer w = two_tensor_writer();
    const std::string path = temp_dir() + "/existing.gguf";
    const std::vector<uint8_t> old = {'o', 'l', 'd'};
    write_all(path, old);
    EXPECT_THROW(w.write(path, [](size_t, const gguf::Writer::Sink &) {}), seaopt::Error);
    EXPECT_EQ(read_all(path), old);
    EXPECT_FALSE(seaopt_test::temp_file_left(path));

    // A callback's own exception propagates unchanged, with the same cleanup.
    EXPECT_THROW(w.write(path, [](size_t, const gguf::Writer::Sink &) { throw std::runtime_error("source read failed"); }),
                 std::runtime_error);
    EXPECT_EQ(read_all(path), old);
    EXPECT_FALSE(seaopt_test::temp_file_left(path));

    // And a successful write replaces it.
    write_with_patterns(w, path);
    const std::vector<uint8_t> now = read_all(path);
    EXPECT_EQ(gguf::parse(now.data(), now.size()).tensors.size(), 2u);
}

TEST(GgufWriter, UnwritablePathIsAnIoError) {
    const gguf::Writer w = two_tensor_writer();
    expect_error_code(SEAOPT_ERR_IO, "no-such-dir", [&] {
        write_with_patterns(w, temp_dir() + "/no-such-dir/x.gguf");
    });
}

TEST(GgufWriter, RefusesBadTensorDeclarations) {
    gguf::Writer w;
    w.add_tensor("ok", TensorType::F32, {1});
    const auto bad = [&](const std::string &name, std::vector<int64_t> ne, const std::string &needle) {
        expect_error_code(SEAOPT_ERR_INVALID_ARGUMENT, needle, [&] { w.add_tensor(name, TensorType::F32, ne); });
    };
    bad(std::string(64, 'n'), {1}, "shorter than 64 bytes");
    bad("", {1}, "empty");
    bad("ok", {1}, "added twice");
    bad("x", {}, "0 dimensions");
    bad("x", {1, 1, 1, 1, 1}, "5 dimensions");
    bad("x", {4, 0}, "invalid shape {4, 0}");
    bad("x", {-1}, "invalid shape {-1}");
    bad("x", {std::numeric_limits<int64_t>::max(), 2}, "invalid shape");
    bad("x", {int64_t(1) << 62}, "too large");
    expect_error_code(SEAOPT_ERR_INVALID_ARGUMENT, "unsupported type 2",
                      [&] { w.add_tensor("q", static_cast<TensorType>(2), {32}); });
    EXPECT_EQ(w.tensors().size(), 1u);
    EXPECT_EQ(w.add_tensor(std::string(63, 'n'), TensorType::F32, {1}), 1u);
}

TEST(GgufWriter, RefusesValuesItCannotEncode) {
    gguf::Writer w;
    const auto bad = [&](const std::string &key, const Value &v, const std::string &needle) {
        expect_error_code(SEAOPT_ERR_INVALID_ARGUMENT, needle, [&] { w.set(key, v); });
    };
    Value u8 = make(ValueType::UINT8);
    u8.u64 = 256;
    bad("k", u8, "value 256 does not fit UINT8");
    Value i16 = make(ValueType::INT16);
    i16.i64 = -40000;
    bad("k", i16, "does not fit INT16");
    Value b = make(ValueType::BOOL);
    b.u64 = 2;
    bad("k", b, "does not fit BOOL");
    Value nested = make_array(ValueType::ARRAY);
    bad("k", nested, "nested arrays");
    Value u16s = make_array(ValueType::UINT16);
    u16s.int_array = {1, -1};
    bad("k", u16s, "element 1 = -1 does not fit UINT16");
    bad("", Value::make_u32(1), "empty");
    bad("general.alignment", Value::make_u32(48), "power of two");
    bad("general.alignment", Value::make_u64(32), "UINT32");
    EXPECT_TRUE(w.tensors().empty());
}

TEST(GgufWriter, StreamsManyPiecesAcrossTheBuffer) {
    // More data than the writer's buffer, in pieces of awkward sizes, both below and above it.
    gguf::Writer w;
    w.add_tensor("big", TensorType::F32, {3 * 1024 * 1024 + 5});  // ~12 MiB
    w.add_tensor("small", TensorType::F16, {3});
    const std::string path = temp_dir() + "/big.gguf";
    w.write(path, [&](size_t i, const gguf::Writer::Sink &sink) {
        const uint64_t n = w.tensors()[i].n_bytes;
        std::vector<uint8_t> data(n);
        for (uint64_t j = 0; j < n; ++j) data[j] = pattern(i, j);
        const size_t pieces[] = {1, 4095, 5 << 20, 17, 7 << 20};
        uint64_t at = 0;
        for (size_t k = 0; at < n; k = (k + 1) % 5) {
            const size_t len = static_cast<size_t>(std::min<uint64_t>(pieces[k], n - at));
            sink(data.data() + at, len);
            at += len;
        }
    });
    gguf::MappedFile mf(path);
    const gguf::File f = gguf::parse(mf.data(), mf.size());
    ASSERT_EQ(f.tensors.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
        const gguf::TensorInfo &t = f.tensors[i];
        const uint8_t *p = mf.data() + f.data_offset + t.offset;
        bool same = true;
        for (uint64_t j = 0; j < t.n_bytes && same; ++j) same = p[j] == pattern(i, j);
        EXPECT_TRUE(same) << t.name;
    }
}

// ==== MappedFile ================================================================================

TEST(GgufMappedFile, MissingFileIsAnIoError) {
    const std::string path = temp_dir() + "/does-not-exist.gguf";
    expect_error_code(SEAOPT_ERR_IO, "does-not-exist.gguf", [&] { gguf::MappedFile mf(path); });
    expect_error_code(SEAOPT_ERR_IO, "No such file", [&] { gguf::MappedFile mf(path); });
    expect_error_code(SEAOPT_ERR_IO, "directory", [&] { gguf::MappedFile mf(temp_dir()); });
}

TEST(GgufMappedFile, EmptyFileMapsToNothingAndParseRefusesIt) {
    const std::string path = temp_dir() + "/empty.gguf";
    write_all(path, {});
    gguf::MappedFile mf(path);
    EXPECT_EQ(mf.size(), 0u);
    expect_error_code(SEAOPT_ERR_MODEL_FORMAT, "empty", [&] { gguf::parse(mf.data(), mf.size()); });
}

TEST(GgufAllocationWatch, SeesLargeAllocations) {
    // The no-huge-allocation checks above are only as good as this watch.
    AllocationWatch watch;
    std::vector<uint8_t> v;
    v.reserve(kSmallInputAllocationLimit * 4);
    EXPECT_GE(watch.largest(), kSmallInputAllocationLimit * 4);
}

}  // namespace
