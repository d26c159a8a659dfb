// seaopt-convert readers: safetensors and zip headers from hostile bytes, and config.json.
#include <gtest/gtest.h>

#include "test_convert_util.h"
#include "weights-convert/byte_source.h"
#include "weights-convert/checkpoint.h"
#include "weights-convert/hf_config.h"
#include "weights-convert/hf_added_tokens.h"
#include "weights-convert/safetensors.h"
#include "weights-convert/zip_reader.h"

using namespace convert_test;
using namespace seaopt::convert;

namespace {

// ---- safetensors ------------------------------------------------------------------------------

// A safetensors file from a header text and a data buffer of `data_size` bytes.
Bytes safetensors_bytes(const std::string &header, size_t data_size, uint64_t declared_len = UINT64_MAX) {
    Bytes b;
    put64(b, declared_len == UINT64_MAX ? header.size() : declared_len);
    put_str(b, header);
    b.resize(b.size() + data_size, 0xAB);
    return b;
}

std::vector<SafetensorsTensor> parse_st(const Bytes &b) {
    MemorySource src(b.data(), b.size(), "model.safetensors");
    return read_safetensors_header(src);
}

TEST(Safetensors, RoundTripThroughWriter) {
    TempDir dir;
    const std::vector<float> a = random_values(6, 1), c = random_values(4, 2);
    write_safetensors(dir / "m.safetensors",
                      {{"a", DType::F32, {2, 3}, encode(a, DType::F32)},
                       {"b", DType::F16, {0}, {}},  // empty tensors are valid
                       {"c", DType::BF16, {4}, encode(c, DType::BF16)},
                       {"d", DType::F16, {}, encode({1.5f}, DType::F16)}});
    const Bytes file = read_bytes(dir / "m.safetensors");
    EXPECT_EQ(((file[0] | (file[1] << 8)) + 8) % 8, 0) << "data starts 8-byte aligned";
    const std::vector<SafetensorsTensor> t = parse_st(file);
    ASSERT_EQ(t.size(), 4u);
    std::map<std::string, SafetensorsTensor> by;
    for (const auto &x : t) by[x.name] = x;
    EXPECT_EQ(by["a"].dtype, DType::F32);
    EXPECT_EQ(by["a"].shape, (std::vector<uint64_t>{2, 3}));
    EXPECT_EQ(by["a"].n_bytes, 24u);
    EXPECT_EQ(decode(&file[by["a"].offset], 6, DType::F32), a);
    EXPECT_EQ(by["b"].n_bytes, 0u);
    EXPECT_EQ(by["c"].dtype, DType::BF16);
    EXPECT_EQ(by["c"].shape, (std::vector<uint64_t>{4}));
    const std::vector<float> c_back = decode(&file[by["c"].offset], 4, DType::BF16);
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(c_back[i], seaopt::bf16_to_f32(seaopt::f32_to_bf16(c[i])));
    EXPECT_TRUE(by["d"].shape.empty());
    EXPECT_EQ(decode(&file[by["d"].offset], 1, DType::F16)[0], 1.5f);
}

TEST(Safetensors, MetadataIsIgnoredAndPaddingAccepted) {
    const auto t = parse_st(safetensors_bytes(
        R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}     )", 4));
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].name, "w");
}

TEST(Safetensors, FileTooShort) {
    const Bytes b = {1, 2, 3};
    expect_error([&] { parse_st(b); }, {"model.safetensors", "too short"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Safetensors, HeaderLengthPastEndOfFile) {
    const Bytes b = safetensors_bytes("{}", 0, 1000);
    expect_error([&] { parse_st(b); }, {"header length 1000", "past the end of the file"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Safetensors, HeaderLengthOver100MB) {
    const Bytes b = safetensors_bytes("{}", 0, 100000001);
    expect_error([&] { parse_st(b); }, {"header length 100000001", "100 MB"}, SEAOPT_ERR_MODEL_FORMAT);
    const Bytes huge = safetensors_bytes("{}", 0, UINT64_MAX - 1);
    expect_error([&] { parse_st(huge); }, {"100 MB"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Safetensors, HeaderNotJson) {
    expect_error([&] { parse_st(safetensors_bytes("{\"a\": {\"dtype\": \"F16\",", 0)); }, {"not valid JSON"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_st(safetensors_bytes("{} trailing", 0)); }, {"not valid JSON"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_st(safetensors_bytes("hello", 0)); }, {"does not start with '{'"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Safetensors, HeaderNotAnObjectOfTensors) {
    expect_error([&] { parse_st(safetensors_bytes("[1, 2, 3]", 0)); }, {"does not start with '{'"});
    expect_error([&] { parse_st(safetensors_bytes(R"({"w": 5})", 0)); }, {"entry 'w'", "not an object"});
    expect_error([&] { parse_st(safetensors_bytes(R"({"w": {"dtype": "F16", "shape": [1]}})", 0)); },
                 {"'w'", "data_offsets"});
    expect_error([&] { parse_st(safetensors_bytes(R"({"w": {"shape": [1], "data_offsets": [0, 2]}})", 2)); },
                 {"'w'", "no dtype"});
    expect_error([&] { parse_st(safetensors_bytes(R"({"w": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 2]}})", 2)); },
                 {"'w'", "negative"});
    expect_error([&] { parse_st(safetensors_bytes(R"({"w": {"dtype": "F16", "shape": [1.5], "data_offsets": [0, 2]}})", 2)); },
                 {"'w'", "fraction"});
    expect_error([&] { parse_st(safetensors_bytes(R"({"w": {"dtype": "F16", "shape": [[1]], "data_offsets": [0, 2]}})", 2)); },
                 {"'w'", "shape"});
    expect_error([&] { parse_st(safetensors_bytes(R"({"w": {"dtype": "F16", "shape": [1], "data_offsets": [0, 1, 2]}})", 2)); },
                 {"'w'", "[begin, end]"});
    expect_error([&] { parse_st(safetensors_bytes(R"({"__metadata__": {"a": {"b": "c"}}})", 0)); }, {"__metadata__"});
}

TEST(Safetensors, DuplicateKeys) {
    expect_error(
        [&] {
            parse_st(safetensors_bytes(R"({"w":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},)"
                                       R"("w":{"dtype":"F16","shape":[1],"data_offsets":[2,4]}})",
                                       4));
        },
        {"duplicate key 'w'"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error(
        [&] { parse_st(safetensors_bytes(R"({"w":{"dtype":"F16","dtype":"F32","shape":[1],"data_offsets":[0,2]}})", 4)); },
        {"duplicate key 'dtype'"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Safetensors, BadDtype) {
    expect_error([&] { parse_st(safetensors_bytes(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8)); },
                 {"'w'", "unsupported dtype I64"}, SEAOPT_ERR_UNSUPPORTED);
    expect_error([&] { parse_st(safetensors_bytes(R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,8]}})", 8)); },
                 {"'w'", "unknown dtype 'Q7'"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_st(safetensors_bytes(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,8]}})", 8)); },
                 {"'w'", "dtype"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Safetensors, OffsetsOverlap) {
    expect_error(
        [&] {
            parse_st(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                       12));
        },
        {"'a' and 'b' overlap"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Safetensors, OffsetsPastEnd) {
    expect_error([&] { parse_st(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 7)); },
                 {"'a'", "past the end of the data"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error(
        [&] { parse_st(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})", 7)); },
        {"'a'", "past the end"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_st(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)); },
                 {"'a'", "begin after end"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Safetensors, OffsetsNotMatchingShape) {
    expect_error([&] { parse_st(safetensors_bytes(R"({"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}})", 8)); },
                 {"'a'", "8 bytes", "[2, 3]", "needs 12"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Safetensors, ShapeProductOverflow) {
    expect_error(
        [&] {
            parse_st(safetensors_bytes(
                R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}})", 8));
        },
        {"'a'", "overflows"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error(
        [&] { parse_st(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 4)); },
        {"more than 8 dimensions"}, SEAOPT_ERR_MODEL_FORMAT);
}

// Random corruption of a valid file: every outcome is a clean result or a seaopt::Error.
TEST(Safetensors, MutatedHeadersNeverCrash) {
    const Bytes good = safetensors_bytes(R"({"__metadata__":{"k":"v"},"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},)"
                                         R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]}})",
                                         14);
    std::mt19937 rng(42);
    int errors = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        Bytes b = good;
        const int n_flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < n_flips; ++k) b[rng() % b.size()] = (uint8_t)rng();
        if (rng() % 8 == 0) b.resize(rng() % b.size());
        try {
            for (const auto &t : parse_st(b)) ASSERT_LE(t.offset + t.n_bytes, b.size());
        } catch (const seaopt::Error &) {
            ++errors;
        }
    }
    EXPECT_GT(errors, 1000);
}

// ---- zip -------------------------------------------------------------------------------------------

ZipIndex parse_zip(const Bytes &b) {
    MemorySource src(b.data(), b.size(), "pytorch_model.bin");
    return read_zip_index(src);
}

std::vector<ZipSpec> sample_entries() {
    return {{"archive/data.pkl", {0x80, 0x02, '}', '.'}},
            {"archive/byteorder", {'l', 'i', 't', 't', 'l', 'e'}},
            {"archive/data/0", Bytes(100, 7)},
            {"archive/empty", {}}};
}

void check_sample(const Bytes &zip, const ZipIndex &index) {
    const std::vector<ZipSpec> want = sample_entries();
    ASSERT_EQ(index.entries.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        const ZipEntry *e = index.find(want[i].name);
        ASSERT_NE(e, nullptr) << want[i].name;
        EXPECT_EQ(e->size, want[i].data.size());
        ASSERT_LE(e->data_offset + e->size, zip.size());
        EXPECT_EQ(Bytes(zip.begin() + (ptrdiff_t)e->data_offset, zip.begin() + (ptrdiff_t)(e->data_offset + e->size)),
                  want[i].data);
    }
    EXPECT_EQ(index.find("nope"), nullptr);
}

TEST(Zip, ReadsStoredEntries) {
    for (bool descriptor : {true, false}) {
        for (size_t align : {1, 64}) {
            ZipOptions opt;
            opt.data_descriptor = descriptor;
            opt.align = align;
            const Bytes zip = make_zip(sample_entries(), opt);
            check_sample(zip, parse_zip(zip));
            if (align == 64) {
                EXPECT_EQ(parse_zip(zip).find("archive/data/0")->data_offset % 64, 0u);
            }
        }
    }
}

TEST(Zip, ReadsZip64Records) {
    ZipOptions opt;
    opt.zip64 = true;
    const Bytes zip = make_zip(sample_entries(), opt);
    check_sample(zip, parse_zip(zip));
    // With the ZIP64 locator removed the 32-bit EOCD says 0xFFFFFFFF: that must not be trusted.
    Bytes broken = zip;
    const size_t locator = broken.size() - 22 - 20;
    ASSERT_EQ(broken[locator], 0x50);
    broken[locator] = 0;
    expect_error([&] { parse_zip(broken); }, {"pytorch_model.bin"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Zip, ReadsRealTorchArchive) {
    const std::string path = std::string(SEAOPT_TEST_DATA_DIR) + "/opt-tiny-post/bin/pytorch_model.bin";
    ASSERT_TRUE(fs::exists(path)) << path << " not found";
    FileSource src(path, "pytorch_model.bin");
    const ZipIndex index = read_zip_index(src);
    const ZipEntry *pkl = index.find("pytorch_model/data.pkl");
    ASSERT_NE(pkl, nullptr);
    uint8_t head[2];
    src.read(pkl->data_offset, head, 2);
    EXPECT_EQ(head[0], 0x80);
    EXPECT_EQ(head[1], 2);
    const ZipEntry *d0 = index.find("pytorch_model/data/0");
    ASSERT_NE(d0, nullptr);
    EXPECT_EQ(d0->size, 50272u * 16 * 2);
    EXPECT_EQ(d0->data_offset % 64, 0u);
}

TEST(Zip, Truncated) {
    const Bytes zip = make_zip(sample_entries());
    for (size_t cut : {zip.size() - 1, zip.size() - 22, zip.size() / 2, (size_t)40, (size_t)4}) {
        const Bytes b(zip.begin(), zip.begin() + (ptrdiff_t)cut);
        expect_error([&] { parse_zip(b); }, {"pytorch_model.bin"}, SEAOPT_ERR_MODEL_FORMAT);
    }
    expect_error([&] { parse_zip(Bytes()); }, {"not a zip archive"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Zip, BadEndRecord) {
    const Bytes zip = make_zip(sample_entries());
    const size_t eocd = zip.size() - 22;
    {
        Bytes b = zip;
        b[eocd + 16] ^= 0x40;  // central directory offset
        expect_error([&] { parse_zip(b); }, {"central directory"}, SEAOPT_ERR_MODEL_FORMAT);
    }
    {
        Bytes b = zip;
        b[eocd + 10] = 0xF0;  // total entries: more than the directory holds
        b[eocd + 8] = 0xF0;
        expect_error([&] { parse_zip(b); }, {"entries"}, SEAOPT_ERR_MODEL_FORMAT);
    }
    {
        Bytes b = zip;
        b[eocd + 4] = 1;  // disk number
        expect_error([&] { parse_zip(b); }, {"multi-disk"}, SEAOPT_ERR_UNSUPPORTED);
    }
    {
        Bytes b = zip;
        b[eocd + 20] = 5;  // comment length past the end: no valid EOCD
        expect_error([&] { parse_zip(b); }, {"end-of-central-directory"}, SEAOPT_ERR_MODEL_FORMAT);
    }
}

TEST(Zip, CompressedEntryRefused) {
    std::vector<ZipSpec> e = sample_entries();
    e[2].method = 8;
    expect_error([&] { parse_zip(make_zip(e)); }, {"'archive/data/0'", "compressed", "deflate", "stored"},
                 SEAOPT_ERR_UNSUPPORTED);
}

TEST(Zip, OffsetsPastEnd) {
    const Bytes zip = make_zip(sample_entries());
    const ZipIndex index = parse_zip(zip);
    // Find the central directory entry of archive/data/0 and grow its size past the entries area.
    const std::string name = "archive/data/0";
    size_t cd = 0;
    for (size_t i = 0; i + 46 < zip.size(); ++i) {
        if (zip[i] == 0x50 && zip[i + 1] == 0x4b && zip[i + 2] == 1 && zip[i + 3] == 2 &&
            std::string(zip.begin() + (ptrdiff_t)i + 46, zip.begin() + (ptrdiff_t)(i + 46 + name.size())) == name) {
            cd = i;
        }
    }
    ASSERT_NE(cd, 0u);
    {
        Bytes b = zip;
        for (size_t k : {20, 24}) b[cd + k + 2] = 0x7F;  // sizes += 0x7F0000
        expect_error([&] { parse_zip(b); }, {"'archive/data/0'", "runs past"}, SEAOPT_ERR_MODEL_FORMAT);
    }
    {
        Bytes b = zip;
        b[cd + 42 + 3] = 0x7F;  // local header offset far past the end
        expect_error([&] { parse_zip(b); }, {"'archive/data/0'", "local header offset"}, SEAOPT_ERR_MODEL_FORMAT);
    }
    {
        Bytes b = zip;
        b[cd + 42] += 1;  // local header offset off by one: no signature there
        expect_error([&] { parse_zip(b); }, {"'archive/data/0'", "local header"}, SEAOPT_ERR_MODEL_FORMAT);
    }
    {
        Bytes b = zip;
        b[cd + 28] = 0xFF;  // name length past the directory
        expect_error([&] { parse_zip(b); }, {"truncated"}, SEAOPT_ERR_MODEL_FORMAT);
    }
}

TEST(Zip, DuplicateNamesRefused) {
    std::vector<ZipSpec> e = sample_entries();
    e[1].name = e[0].name;
    expect_error([&] { parse_zip(make_zip(e)); }, {"appears twice"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Zip, LegacyTorchFileRefused) {
    // torch < 1.6: a bare pickle stream starting with PROTO 2 and torch's magic number.
    const Bytes legacy = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
    expect_error([&] { parse_zip(legacy); },
                 {"legacy PyTorch serialization is not supported; re-save with torch>=1.6 or convert to safetensors"},
                 SEAOPT_ERR_UNSUPPORTED);
    const Bytes text(300, 'x');
    expect_error([&] { parse_zip(text); }, {"not a zip archive"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Zip, MutatedArchivesNeverCrash) {
    ZipOptions opt;
    opt.zip64 = true;
    const Bytes good = make_zip(sample_entries(), opt);
    std::mt19937 rng(7);
    for (int iter = 0; iter < 3000; ++iter) {
        Bytes b = good;
        // Corrupt the directory area mostly (the data is opaque to the reader).
        for (int k = 0; k < 1 + (int)(rng() % 3); ++k) {
            const size_t at = rng() % 2 ? b.size() - 1 - rng() % std::min<size_t>(b.size(), 300) : rng() % b.size();
            b[at] = (uint8_t)rng();
        }
        try {
            const ZipIndex index = parse_zip(b);
            for (const ZipEntry &e : index.entries) ASSERT_LE(e.data_offset + e.size, b.size());
        } catch (const seaopt::Error &) {
        }
    }
}

// ---- config.json ---------------------------------------------------------------------------------

// The published configs (values from the Hugging Face hub config.json files).
struct FamilyMember {
    const char *name;
    uint32_t hidden, heads, layers, ffn, proj;
    bool pre_ln;
};
const FamilyMember kFamily[] = {
    {"opt-125m", 768, 12, 12, 3072, 768, true},     {"opt-350m", 1024, 16, 24, 4096, 512, false},
    {"opt-1.3b", 2048, 32, 24, 8192, 2048, true},   {"opt-2.7b", 2560, 32, 32, 10240, 2560, true},
    {"opt-6.7b", 4096, 32, 32, 16384, 4096, true},  {"opt-13b", 5120, 40, 40, 20480, 5120, true},
};

nlohmann::json family_config(const FamilyMember &m) {
    return {{"_name_or_path", std::string("facebook/") + m.name},
            {"_remove_final_layer_norm", false},
            {"activation_dropout", 0.0},
            {"activation_function", "relu"},
            {"architectures", {"OPTForCausalLM"}},
            {"attention_dropout", 0.0},
            {"bos_token_id", 2},
            {"do_layer_norm_before", m.pre_ln},
            {"dropout", 0.1},
            {"eos_token_id", 2},
            {"ffn_dim", m.ffn},
            {"hidden_size", m.hidden},
            {"init_std", 0.02},
            {"layerdrop", 0.0},
            {"max_position_embeddings", 2048},
            {"model_type", "opt"},
            {"num_attention_heads", m.heads},
            {"num_hidden_layers", m.layers},
            {"pad_token_id", 1},
            {"prefix", "</s>"},
            {"torch_dtype", "float16"},
            {"transformers_version", "4.21.0.dev0"},
            {"use_cache", true},
            {"vocab_size", 50272},
            {"word_embed_proj_dim", m.proj}};
}

TEST(HfConfig, AcceptsTheOptFamily) {
    for (const FamilyMember &m : kFamily) {
        SCOPED_TRACE(m.name);
        const HfOptConfig c = parse_hf_config(family_config(m).dump());
        EXPECT_EQ(c.hp.n_vocab, 50272u);
        EXPECT_EQ(c.hp.n_ctx_train, 2048u);
        EXPECT_EQ(c.hp.n_embd, m.hidden);
        EXPECT_EQ(c.hp.n_head, m.heads);
        EXPECT_EQ(c.hp.n_layer, m.layers);
        EXPECT_EQ(c.hp.n_ff, m.ffn);
        EXPECT_EQ(c.hp.n_embd_proj, m.proj);
        EXPECT_EQ(c.hp.pre_ln, m.pre_ln);
        EXPECT_EQ(c.hp.has_proj(), m.proj != m.hidden);
        EXPECT_EQ(c.hp.pos_offset, 2u);
        EXPECT_EQ(c.hp.n_pos_rows(), 2050u);
        EXPECT_FLOAT_EQ(c.hp.ln_eps, 1e-5f);
        EXPECT_TRUE(c.tie_word_embeddings);
    }
}

TEST(HfConfig, Defaults) {
    nlohmann::json j = family_config(kFamily[0]);
    for (const char *k : {"word_embed_proj_dim", "do_layer_norm_before", "tie_word_embeddings", "model_type",
                          "activation_function", "enable_bias", "layer_norm_elementwise_affine", "_remove_final_layer_norm"}) {
        j.erase(k);
    }
    const HfOptConfig c = parse_hf_config(j.dump());
    EXPECT_EQ(c.hp.n_embd_proj, 768u);
    EXPECT_TRUE(c.hp.pre_ln);
    EXPECT_TRUE(c.tie_word_embeddings);
    j["tie_word_embeddings"] = false;
    EXPECT_FALSE(parse_hf_config(j.dump()).tie_word_embeddings);
}

TEST(HfConfig, UnsupportedValuesNamed) {
    auto with = [](const char *key, nlohmann::json v) {
        nlohmann::json j = family_config(kFamily[0]);
        j[key] = std::move(v);
        return j.dump();
    };
    expect_error([&] { parse_hf_config(with("activation_function", "gelu")); },
                 {"config.json: activation_function 'gelu' is not supported (OPT uses 'relu')"}, SEAOPT_ERR_UNSUPPORTED);
    expect_error([&] { parse_hf_config(with("model_type", "gpt2")); }, {"model_type 'gpt2'"}, SEAOPT_ERR_UNSUPPORTED);
    expect_error([&] { parse_hf_config(with("enable_bias", false)); }, {"enable_bias false"}, SEAOPT_ERR_UNSUPPORTED);
    expect_error([&] { parse_hf_config(with("layer_norm_elementwise_affine", false)); },
                 {"layer_norm_elementwise_affine false"}, SEAOPT_ERR_UNSUPPORTED);
    expect_error([&] { parse_hf_config(with("_remove_final_layer_norm", true)); }, {"_remove_final_layer_norm true"},
                 SEAOPT_ERR_UNSUPPORTED);
    expect_error([&] { parse_hf_config(with("num_attention_heads", 7)); },
                 {"hidden_size 768 is not a multiple of num_attention_heads 7"});
    expect_error([&] { parse_hf_config(with("hidden_size", 1 << 20)); }, {"hidden_size", "limit"}, SEAOPT_ERR_UNSUPPORTED);
    expect_error([&] { parse_hf_config(with("num_hidden_layers", 100000)); }, {"num_hidden_layers"}, SEAOPT_ERR_UNSUPPORTED);
}

TEST(HfConfig, MalformedValuesNamed) {
    auto with = [](const char *key, nlohmann::json v) {
        nlohmann::json j = family_config(kFamily[0]);
        j[key] = std::move(v);
        return j.dump();
    };
    expect_error([&] { parse_hf_config(with("hidden_size", "768")); }, {"hidden_size", "a string"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_config(with("hidden_size", 768.5)); }, {"hidden_size"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_config(with("hidden_size", 0)); }, {"hidden_size", "positive"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_config(with("ffn_dim", -4)); }, {"ffn_dim", "positive"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_config(with("do_layer_norm_before", 1)); }, {"do_layer_norm_before", "true or false"},
                 SEAOPT_ERR_MODEL_FORMAT);
    nlohmann::json j = family_config(kFamily[0]);
    j.erase("vocab_size");
    expect_error([&] { parse_hf_config(j.dump()); }, {"required key 'vocab_size' is missing"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_config("{\"vocab_size\": 1, \"vocab_size\": 2}"); }, {"duplicate key 'vocab_size'"});
    expect_error([&] { parse_hf_config("[1]"); }, {"not a JSON object"});
    expect_error([&] { parse_hf_config("{"); }, {"not valid JSON"});
    expect_error([&] { parse_hf_config(std::string(10000, '[')); }, {"nested more than"});
}

// The special ids generation uses: an integer, a list (the first), null or negative (absent); outside the
// vocabulary or not an integer is refused.
TEST(HfConfig, SpecialTokenIds) {
    auto parsed = [](const char *key, nlohmann::json v) {
        nlohmann::json j = family_config(kFamily[0]);
        j[key] = std::move(v);
        return parse_hf_config(j.dump());
    };
    const HfOptConfig plain = parse_hf_config(family_config(kFamily[0]).dump());
    EXPECT_EQ(plain.bos_token_id.id, 2);
    EXPECT_EQ(plain.eos_token_id.id, 2);
    EXPECT_EQ(plain.pad_token_id.id, 1);
    EXPECT_FALSE(plain.eos_token_id.from_list);
    EXPECT_EQ(parsed("eos_token_id", 50118).eos_token_id.id, 50118);
    const HfOptConfig listed = parsed("eos_token_id", nlohmann::json::array({50118, 2}));
    EXPECT_EQ(listed.eos_token_id.id, 50118);
    EXPECT_TRUE(listed.eos_token_id.from_list);
    EXPECT_FALSE(parsed("eos_token_id", nlohmann::json::array({7})).eos_token_id.from_list);
    EXPECT_EQ(parsed("eos_token_id", nlohmann::json::array()).eos_token_id.id, -1);
    EXPECT_EQ(parsed("pad_token_id", nullptr).pad_token_id.id, -1);
    EXPECT_EQ(parsed("pad_token_id", -1).pad_token_id.id, -1);
    nlohmann::json j = family_config(kFamily[0]);
    j.erase("bos_token_id");
    EXPECT_EQ(parse_hf_config(j.dump()).bos_token_id.id, -1);
    expect_error([&] { parsed("eos_token_id", 50272); }, {"eos_token_id 50272 is outside the vocabulary (vocab_size 50272)"},
                 SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parsed("bos_token_id", 1ull << 40); }, {"bos_token_id (too large) is outside the vocabulary"},
                 SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parsed("eos_token_id", "2"); }, {"eos_token_id is a string", "expected a token id"},
                 SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parsed("eos_token_id", nlohmann::json::array({2, 2.5})); }, {"eos_token_id [2,2.5] holds", "expected token ids"},
                 SEAOPT_ERR_MODEL_FORMAT);
}

// tokenizer_config.json / special_tokens_map.json: the tokens Hugging Face treats as special.
TEST(HfAddedTokens, ReadsOptsFilesAndAppliesThem) {
    using seaopt::convert::apply_hf_added_tokens;
    using seaopt::convert::HfAddedTokens;
    using seaopt::convert::parse_hf_added_tokens;
    // facebook/opt-350m's tokenizer_config.json (AddedToken objects) and a newer one with added_tokens_decoder.
    const std::string opt_config = R"({"errors": "replace", "unk_token": {"content": "</s>", "single_word": false,
        "lstrip": false, "rstrip": false, "normalized": true, "__type": "AddedToken"}, "bos_token": {"content": "</s>",
        "__type": "AddedToken"}, "eos_token": {"content": "</s>"}, "pad_token": {"content": "<pad>"},
        "add_prefix_space": false, "add_bos_token": true, "model_max_length": 1000000000000000019884624838656,
        "special_tokens_map_file": null, "name_or_path": "patrickvonplaten/opt-30b", "chat_template": "{{ x }}"})";
    const HfAddedTokens st = parse_hf_added_tokens(opt_config, R"({"bos_token": "</s>", "pad_token": "<pad>"})");
    ASSERT_TRUE(st.found);
    ASSERT_EQ(st.tokens.size(), 2u);
    EXPECT_EQ(st.tokens[0].content, "</s>");
    EXPECT_EQ(st.tokens[1].content, "<pad>");
    EXPECT_TRUE(st.tokens[0].special && st.tokens[1].special);
    // The first object that names a token gives its options: bos_token's bare one, with AddedToken's defaults for a
    // special token (none), before unk_token's (normalized).
    EXPECT_TRUE(st.tokens[0].flags_given);
    EXPECT_EQ(st.tokens[0].flags, 0u);
    EXPECT_EQ(st.tokens[1].flags, 0u);
    const HfAddedTokens unk_first = parse_hf_added_tokens(R"({"unk_token": {"content": "</s>", "normalized": true,
        "lstrip": true}, "bos_token": "</s>", "pad_token": "<pad>"})", "");
    EXPECT_EQ(unk_first.tokens[0].flags, (uint32_t)(seaopt::kAddedNormalized | seaopt::kAddedLstrip));
    EXPECT_FALSE(unk_first.tokens[1].flags_given);
    EXPECT_EQ(st.unk, "</s>");
    EXPECT_FALSE(parse_hf_added_tokens("", "").found);

    seaopt::TokenizerData tok = seaopt::load_hf_tokenizer(std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer/vocab.json",
                                                          std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer/merges.txt",
                                                          50272);
    const auto type = [&](size_t id) { return (seaopt::TokenType)tok.token_types[id]; };
    EXPECT_TRUE(apply_hf_added_tokens(st, tok).empty());
    for (size_t id : {1, 2}) EXPECT_EQ(type(id), seaopt::TokenType::CONTROL) << id;
    EXPECT_TRUE(tok.added_flags.empty());  // no options
    for (size_t id : {0, 3, 50264}) EXPECT_EQ(type(id), seaopt::TokenType::NORMAL) << id;
    EXPECT_EQ(type(50270), seaopt::TokenType::UNUSED);
    EXPECT_EQ(tok.unk_id, 2);

    // A fine-tune's added special token in a padding row, "<mask>" made special, a non-special added token, unk "<unk>".
    const std::string tuned = R"({"added_tokens_decoder": {
        "2": {"content": "</s>", "special": true}, "50265": {"content": "<|turn|>", "special": true},
        "50264": {"content": "<mask>", "special": true}, "50266": {"content": "<plain>", "special": false}},
        "additional_special_tokens": ["<|turn|>"], "unk_token": "<unk>", "mask_token": null})";
    const std::vector<std::string> notes = apply_hf_added_tokens(parse_hf_added_tokens(tuned, ""), tok);
    EXPECT_EQ(tok.tokens[50265], "<|turn|>");
    for (size_t id : {2, 3, 50264, 50265}) EXPECT_EQ(type(id), seaopt::TokenType::CONTROL) << id;  // unk_token is special
    EXPECT_EQ(type(50266), seaopt::TokenType::USER_DEFINED);
    EXPECT_EQ(type(1), seaopt::TokenType::NORMAL);  // '<pad>' is not listed here
    EXPECT_EQ(tok.unk_id, 3);
    ASSERT_EQ(notes.size(), 2u);
    EXPECT_NE(notes[0].find("special token '<|turn|>' has id 50265"), std::string::npos) << notes[0];
    EXPECT_NE(notes[1].find("added token '<plain>' has id 50266"), std::string::npos) << notes[1];
    const seaopt::Tokenizer t(tok);
    EXPECT_EQ(t.encode("a<|turn|>b<mask>", false, true), std::vector<int32_t>({102, 50265, 428, 50264}));
    // The non-special added token is split out without parse_special too; the special ones are text then.
    EXPECT_EQ(t.encode("a<plain>b", false, false), std::vector<int32_t>({102, 50266, 428}));
    EXPECT_EQ(t.decode({50265, 50266, 102}, true), "<plain>a");

    // Inconsistent or malformed files.
    expect_error([&] { apply_hf_added_tokens(parse_hf_added_tokens(R"({"added_tokens_decoder": {"7": {"content": "</s>",
                     "special": true}}})", ""), tok); },
                 {"give '</s>' the id 7, but the vocabulary has it at 2"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { apply_hf_added_tokens(parse_hf_added_tokens(R"({"added_tokens_decoder": {"50272": {"content": "<x>",
                     "special": true}}})", ""), tok); },
                 {"give '<x>' the id 50272, but the model has 50272 embedding rows"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { apply_hf_added_tokens(parse_hf_added_tokens(R"({"added_tokens_decoder": {"5": {"content": "<x>",
                     "special": true}}})", ""), tok); },
                 {"give '<x>' the id 5, which the vocabulary gives to 'Ġthe'"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_added_tokens(R"({"eos_token": 2})", ""); }, {"tokenizer_config.json's eos_token is an integer"},
                 SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_added_tokens("", R"({"pad_token": ""})"); }, {"special_tokens_map.json's pad_token is an empty token"},
                 SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_added_tokens(R"({"added_tokens_decoder": {"x1": {"content": "a"}}})", ""); },
                 {"added_tokens_decoder entry 'x1' is not a token id"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_added_tokens(R"({"added_tokens_decoder": {"1": {"content": "a", "special": "yes"}}})", ""); },
                 {"\"special\" is a string, not true or false"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_added_tokens(R"({"additional_special_tokens": "<x>"})", ""); },
                 {"additional_special_tokens is a string, not an array"}, SEAOPT_ERR_MODEL_FORMAT);
    {
        nlohmann::json many = {{"additional_special_tokens", nlohmann::json::array()}};
        for (int i = 0; i < 4097; ++i) many["additional_special_tokens"].push_back("<x" + std::to_string(i) + ">");
        expect_error([&] { apply_hf_added_tokens(parse_hf_added_tokens(many.dump(), ""), tok); },
                     {"name 4097 added tokens; seaopt supports at most 4096"}, SEAOPT_ERR_MODEL_FORMAT);
    }
    expect_error([&] { parse_hf_added_tokens("[1]", ""); }, {"tokenizer_config.json: is an array, not a JSON object"},
                 SEAOPT_ERR_MODEL_FORMAT);
    expect_error([&] { parse_hf_added_tokens(R"({"a": 1, "a": 2})", ""); }, {"tokenizer_config.json"}, SEAOPT_ERR_MODEL_FORMAT);
}

// ---- tensor planning -----------------------------------------------------------------------------

std::vector<SourceTensor> sources_for(const TinyConfig &c, bool lm_head, bool model_prefix) {
    std::vector<SourceTensor> out;
    for (const HfTensor &t : make_hf_tensors(c, lm_head)) {
        SourceTensor s;
        s.name = stored_name(t.name, model_prefix);
        s.shape = t.shape;
        s.dtype = DType::F16;
        out.push_back(s);
    }
    return out;
}

HfOptConfig config_of(const TinyConfig &c) { return parse_hf_config(c.to_json().dump()); }

TEST(TensorPlan, NamingVariantsMapToGguf) {
    for (bool prefix : {true, false}) {
        for (bool lm_head : {true, false}) {
            TinyConfig c;
            const std::vector<SourceTensor> src = sources_for(c, lm_head, prefix);
            const TensorPlan plan = plan_tensors(src, config_of(c));
            EXPECT_EQ(plan.n_skipped_tied_lm_head, lm_head ? 1u : 0u);
            ASSERT_EQ(plan.tensors.size(), 2 + 2 + 2 * 16u);
            std::map<std::string, std::string> m;
            for (const PlannedTensor &p : plan.tensors) m[p.expected.gguf_name] = canonical_hf_name(p.source->name);
            EXPECT_EQ(m["token_embd.weight"], "decoder.embed_tokens.weight");
            EXPECT_EQ(m["position_embd.weight"], "decoder.embed_positions.weight");
            EXPECT_EQ(m["output_norm.weight"], "decoder.final_layer_norm.weight");
            EXPECT_EQ(m["output_norm.bias"], "decoder.final_layer_norm.bias");
            EXPECT_EQ(m["blk.1.attn_q.weight"], "decoder.layers.1.self_attn.q_proj.weight");
            EXPECT_EQ(m["blk.1.attn_k.bias"], "decoder.layers.1.self_attn.k_proj.bias");
            EXPECT_EQ(m["blk.1.attn_v.weight"], "decoder.layers.1.self_attn.v_proj.weight");
            EXPECT_EQ(m["blk.0.attn_output.weight"], "decoder.layers.0.self_attn.out_proj.weight");
            EXPECT_EQ(m["blk.0.attn_norm.bias"], "decoder.layers.0.self_attn_layer_norm.bias");
            EXPECT_EQ(m["blk.0.ffn_norm.weight"], "decoder.layers.0.final_layer_norm.weight");
            EXPECT_EQ(m["blk.0.ffn_up.weight"], "decoder.layers.0.fc1.weight");
            EXPECT_EQ(m["blk.0.ffn_down.bias"], "decoder.layers.0.fc2.bias");
            EXPECT_EQ(m.count("output.weight"), 0u);
        }
    }
}

TEST(TensorPlan, PostLnWithProjections) {
    TinyConfig c;
    c.pre_ln = false;
    c.proj = 8;
    const std::vector<SourceTensor> src = sources_for(c, false, false);
    const TensorPlan plan = plan_tensors(src, config_of(c));
    std::map<std::string, std::vector<int64_t>> ne;
    for (const PlannedTensor &p : plan.tensors) ne[p.expected.gguf_name] = p.expected.ne;
    EXPECT_EQ(ne["proj_in.weight"], (std::vector<int64_t>{8, 16}));
    EXPECT_EQ(ne["proj_out.weight"], (std::vector<int64_t>{16, 8}));
    EXPECT_EQ(ne["token_embd.weight"], (std::vector<int64_t>{8, 50272}));
    EXPECT_EQ(ne["position_embd.weight"], (std::vector<int64_t>{16, 10}));
    EXPECT_EQ(ne["blk.0.ffn_up.weight"], (std::vector<int64_t>{16, 32}));
    EXPECT_EQ(ne["blk.0.ffn_down.weight"], (std::vector<int64_t>{32, 16}));
    EXPECT_EQ(ne.count("output_norm.weight"), 0u);
}

TEST(TensorPlan, UntiedNeedsLmHead) {
    TinyConfig c;
    c.tie = false;
    const std::vector<SourceTensor> src = sources_for(c, true, true);  // the plan points into it
    const TensorPlan plan = plan_tensors(src, config_of(c));
    bool found = false;
    for (const PlannedTensor &p : plan.tensors) {
        if (p.expected.gguf_name == "output.weight") {
            found = true;
            EXPECT_EQ(p.source->name, "lm_head.weight");
            EXPECT_EQ(p.expected.ne, (std::vector<int64_t>{16, 50272}));
        }
    }
    EXPECT_TRUE(found);
    expect_error([&] { plan_tensors(sources_for(c, false, true), config_of(c)); },
                 {"missing", "'lm_head.weight' (output.weight)"}, SEAOPT_ERR_MODEL_FORMAT);
}

TEST(TensorPlan, MissingExtraMisshapedDuplicate) {
    TinyConfig c;
    std::vector<SourceTensor> src = sources_for(c, false, true);
    {
        std::vector<SourceTensor> s = src;
        s.erase(s.begin() + 3);  // decoder.final_layer_norm.bias
        expect_error([&] { plan_tensors(s, config_of(c)); }, {"1 tensor(s) missing", "'decoder.final_layer_norm.bias'"},
                     SEAOPT_ERR_MODEL_FORMAT);
    }
    {
        std::vector<SourceTensor> s = src;
        s.push_back(s[0]);
        s.back().name = "model.decoder.layers.2.fc1.weight";  // a layer the config does not have
        expect_error([&] { plan_tensors(s, config_of(c)); }, {"unexpected", "'model.decoder.layers.2.fc1.weight'"},
                     SEAOPT_ERR_MODEL_FORMAT);
    }
    {
        std::vector<SourceTensor> s = src;
        for (SourceTensor &t : s) {
            if (t.name == "model.decoder.layers.0.fc1.weight") t.shape = {16, 32};
        }
        expect_error([&] { plan_tensors(s, config_of(c)); },
                     {"'model.decoder.layers.0.fc1.weight' has shape [16, 32], expected [32, 16] (blk.0.ffn_up.weight)"},
                     SEAOPT_ERR_MODEL_FORMAT);
    }
    {
        std::vector<SourceTensor> s = src;
        s.push_back(s[0]);
        s.back().name = "decoder.embed_tokens.weight";
        expect_error([&] { plan_tensors(s, config_of(c)); },
                     {"twice", "'model.decoder.embed_tokens.weight' and 'decoder.embed_tokens.weight'"});
    }
    {
        TinyConfig post = c;
        post.proj = 8;  // needs project_in/out, which the pre-LN checkpoint lacks; embed shape differs too
        expect_error([&] { plan_tensors(src, config_of(post)); },
                     {"missing", "decoder.project_in.weight", "wrong shape", "embed_tokens"});
    }
}

}  // namespace
