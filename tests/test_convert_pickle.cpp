// The restricted unpickler: real state_dict pickles read, malicious ones refused by name.
#include <gtest/gtest.h>

#include "test_convert_util.h"
#include "weights-convert/byte_source.h"
#include "weights-convert/checkpoint.h"
#include "weights-convert/unpickler.h"

using namespace convert_test;
using namespace seaopt::convert;

namespace {

// A byte string from a literal, NULs included.
template <size_t N>
std::string P(const char (&s)[N]) {
    return std::string(s, N - 1);
}

const std::string kData = std::string(SEAOPT_SOURCE_DIR) + "/tests/convert_data/";

std::vector<PickledTensor> unpickle(const Bytes &b) { return unpickle_state_dict(b.data(), b.size(), "pytorch_model.bin"); }
std::vector<PickledTensor> unpickle(const std::string &s) {
    return unpickle_state_dict(reinterpret_cast<const uint8_t *>(s.data()), s.size(), "pytorch_model.bin");
}

// What tests/convert_data/make_pickles.py pickles.
void check_fixture_state_dict(const std::vector<PickledTensor> &t) {
    ASSERT_EQ(t.size(), 5u);
    EXPECT_EQ(t[0].name, "model.decoder.embed_tokens.weight");
    EXPECT_EQ(t[0].dtype, DType::F16);
    EXPECT_EQ(t[0].storage_key, "0");
    EXPECT_EQ(t[0].storage_numel, 12u);
    EXPECT_EQ(t[0].storage_offset, 0u);
    EXPECT_EQ(t[0].shape, (std::vector<uint64_t>{2, 3}));
    EXPECT_EQ(t[0].stride, (std::vector<uint64_t>{3, 1}));

    EXPECT_EQ(t[1].name, "model.decoder.layers.0.fc1.bias");
    EXPECT_EQ(t[1].storage_key, "0");  // shares the storage
    EXPECT_EQ(t[1].storage_offset, 6u);
    EXPECT_EQ(t[1].shape, (std::vector<uint64_t>{6}));

    EXPECT_EQ(t[2].name, "decoder.final_layer_norm.weight");
    EXPECT_EQ(t[2].dtype, DType::F32);
    EXPECT_EQ(t[2].storage_key, "1");
    EXPECT_EQ(t[2].shape, (std::vector<uint64_t>{2, 1, 3}));
    EXPECT_EQ(t[2].stride, (std::vector<uint64_t>{3, 3, 1}));

    EXPECT_EQ(t[3].name, "lm_head.weight");  // through torch._utils._rebuild_parameter
    EXPECT_EQ(t[3].dtype, DType::BF16);
    EXPECT_EQ(t[3].storage_key, "2");
    EXPECT_EQ(t[3].shape, (std::vector<uint64_t>{4}));

    EXPECT_EQ(t[4].name, "scalar");
    EXPECT_TRUE(t[4].shape.empty());
    EXPECT_EQ(t[4].numel(), 1u);
    EXPECT_EQ(t[4].storage_offset, 5u);
}

TEST(Pickle, ReadsProtocol2StateDict) { check_fixture_state_dict(unpickle(read_bytes(kData + "state_dict_p2.pkl"))); }

TEST(Pickle, ReadsProtocol4StateDict) { check_fixture_state_dict(unpickle(read_bytes(kData + "state_dict_p4.pkl"))); }

TEST(Pickle, ReadsTheHelperPickleWithLargeInts) {
    const uint64_t big = 5000000000ull;  // > 2^31: written with LONG1
    const std::vector<PickledTensor> t = unpickle(make_state_dict_pickle(
        {{"a", "FloatStorage", "7", big, big - 6, {2, 3}, {3, 1}}, {"b", "HalfStorage", "x", 4, 0, {4}, {1}}}));
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t[0].storage_offset, big - 6);
    EXPECT_EQ(t[0].storage_numel, big);
    EXPECT_EQ(t[0].storage_key, "7");
    EXPECT_EQ(t[1].dtype, DType::F16);
}

// A real torch.save file (torch 2.11, tests/data): the zip + pickle path end to end.
TEST(Pickle, ReadsRealTorchStateDict) {
    const std::string path = std::string(SEAOPT_TEST_DATA_DIR) + "/opt-tiny-post/bin/pytorch_model.bin";
    ASSERT_TRUE(fs::exists(path)) << path << " not found";
    FileSource src(path, "pytorch_model.bin");
    const std::vector<SourceTensor> t = list_torch_zip_file(src, 0);
    ASSERT_EQ(t.size(), 37u);
    std::map<std::string, SourceTensor> by;
    for (const SourceTensor &s : t) by[s.name] = s;
    EXPECT_EQ(by["decoder.embed_tokens.weight"].shape, (std::vector<uint64_t>{50272, 16}));
    EXPECT_EQ(by["decoder.embed_tokens.weight"].dtype, DType::F16);
    EXPECT_EQ(by["decoder.embed_positions.weight"].shape, (std::vector<uint64_t>{66, 32}));
    EXPECT_EQ(by["decoder.project_in.weight"].shape, (std::vector<uint64_t>{32, 16}));
    EXPECT_EQ(by["decoder.layers.1.fc2.weight"].shape, (std::vector<uint64_t>{32, 64}));
    EXPECT_EQ(by["lm_head.weight"].n_bytes, 50272u * 16 * 2);
    EXPECT_EQ(by["decoder.embed_tokens.weight"].offset % 64, 0u);
}

// ---- malicious and malformed pickles ------------------------------------------------------------

TEST(Pickle, RefusesOsSystem) {
    expect_error([] { unpickle(P("\x80\x02" "cos\nsystem\nX\x04\x00\x00\x00" "echo\x85R.")); },
                 {"pytorch_model.bin: pickle asks for global 'os.system', which is not allowed (only the globals a "
                  "PyTorch state_dict needs)"},
                 SEAOPT_ERR_MODEL_FORMAT);
}

TEST(Pickle, RefusesPosixSystem) {
    expect_error([] { unpickle(read_bytes(kData + "evil_posix_system.pkl")); }, {"global 'posix.system'", "not allowed"});
}

TEST(Pickle, RefusesBuiltinsEval) {
    expect_error([] { unpickle(read_bytes(kData + "evil_builtins_eval.pkl")); }, {"global 'builtins.eval'", "not allowed"});
    expect_error([] { unpickle(P("\x80\x02" "c__builtin__\neval\n")); }, {"global '__builtin__.eval'"});
}

TEST(Pickle, RefusesSubprocessPopen) {
    expect_error([] { unpickle(read_bytes(kData + "evil_subprocess_popen.pkl")); },
                 {"global 'subprocess.Popen'", "not allowed"});
}

TEST(Pickle, RefusesGlobalsNearTheWhitelist) {
    for (const char *g : {"torch._utils\n_rebuild_tensor\n", "torch\nload\n", "collections\ndefaultdict\n",
                          "torch._utils\n_rebuild_device_tensor_from_numpy\n", "torch.storage\n_load_from_bytes\n"}) {
        expect_error([&] { unpickle(P("\x80\x02" "c") + g + "."); }, {"pickle asks for global", "not allowed"});
    }
    // STACK_GLOBAL goes through the same whitelist.
    expect_error([] { unpickle(P("\x80\x04\x8c\x02os\x8c\x06system\x93.")); }, {"global 'os.system'"});
}

TEST(Pickle, RefusesInstObjNewobj) {
    expect_error([] { unpickle(P("\x80\x02(X\x04\x00\x00\x00" "echoios\nsystem\n.")); },
                 {"pickle opcode INST (0x69) is not allowed"});
    expect_error([] { unpickle(P("\x80\x02(ccollections\nOrderedDict\no.")); },
                 {"pickle opcode OBJ (0x6f) is not allowed"});
    expect_error([] { unpickle(P("\x80\x02" "ccollections\nOrderedDict\n)\x81.")); },
                 {"pickle opcode NEWOBJ (0x81) is not allowed"});
    expect_error([] { unpickle(P("\x80\x02" "ccollections\nOrderedDict\n)}\x92.")); },
                 {"pickle opcode NEWOBJ_EX (0x92) is not allowed"});
    expect_error([] { unpickle(P("\x80\x02P0\n.")); }, {"pickle opcode PERSID"});
    expect_error([] { unpickle(P("\x80\x02\x82\x01.")); }, {"pickle opcode EXT1"});
}

TEST(Pickle, RefusesUnknownOpcode) {
    expect_error([] { unpickle(P("\x80\x02\xff.")); }, {"unknown pickle opcode 0xff", "byte 2"});
    expect_error([] { unpickle(P("\x80\x09}.")); }, {"unknown pickle protocol 9"});
}

TEST(Pickle, RefusesTruncatedStreams) {
    const Bytes good = read_bytes(kData + "state_dict_p2.pkl");
    for (size_t cut = 0; cut < good.size(); ++cut) {
        const Bytes b(good.begin(), good.begin() + (ptrdiff_t)cut);
        expect_error([&] { unpickle(b); }, {"pytorch_model.bin"}, SEAOPT_ERR_MODEL_FORMAT);
    }
    expect_error([&] { unpickle(Bytes(good.begin(), good.end() - 1)); }, {"without STOP"});
}

TEST(Pickle, RefusesDeepMarksAndHugeMemo) {
    expect_error([] { unpickle("\x80\x02" + std::string(100000, '(')); }, {"MARK nesting deeper than 256"});
    expect_error([] { unpickle(P("\x80\x02}r\xff\xff\xff\xff.")); }, {"memo index 4294967295 is too large"});
    expect_error([] { unpickle(P("\x80\x02}q\x00h\x05.")); }, {"memo index 5 was never stored"});
    expect_error([] { unpickle(P("\x80\x02.")); }, {"stack underflow"});
    expect_error([] { unpickle(P("\x80\x02u.")); }, {"no MARK"});
}

TEST(Pickle, RefusesLengthsPastTheEnd) {
    expect_error([] { unpickle(P("\x80\x02X\xff\xff\xff\x7f" "abc")); }, {"truncated pickle"});
    expect_error([] { unpickle(P("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff" "abc")); },
                 {"truncated pickle"});
    expect_error([] { unpickle(P("\x80\x02T\xff\xff\xff\xff" "abc")); }, {"negative length"});
    expect_error([] { unpickle(P("\x80\x02\x8a\x09" "123456789.")); }, {"integer of 9 bytes"});
    expect_error([] { unpickle(std::string("\x80\x02" "c" + std::string(1000, 'a'))); }, {"GLOBAL argument"});
}

TEST(Pickle, RefusesDeepNestingAndCycles) {
    // [[[[...]]]] built through the memo, so the stack stays small.
    std::string deep = P("\x80\x02]q\x00" "0");
    for (int i = 0; i < 100; ++i) deep += P("]h\x00" "aq\x00" "0");
    deep += "}.";
    expect_error([&] { unpickle(deep); }, {"nested more than 32 levels"});
    expect_error([] { unpickle(P("\x80\x02]q\x00h\x00" "a.")); }, {"contains itself"});
    // A list put into a tuple, then changed through the memo.
    expect_error([] { unpickle(P("\x80\x02]q\x00\x85h\x00K\x01" "a.")); }, {"after it was nested"});
}

TEST(Pickle, BoundsObjectCount) {
    expect_error([] { unpickle("\x80\x02" + std::string(kPickleMaxObjects + 10, 'N') + "."); }, {"objects"});
}

TEST(Pickle, RefusesWhatIsNotAStateDict) {
    expect_error([] { unpickle(P("\x80\x02].")); }, {"holds a list, not a state_dict"});
    expect_error([] { unpickle(P("\x80\x02}X\x01\x00\x00\x00" "aK\x01s.")); },
                 {"entry 'a' is a int, not a tensor"});
    expect_error([] { unpickle(P("\x80\x02}K\x01K\x01s.")); }, {"key 0 is a int"});
    expect_error([] { unpickle(P("\x80\x02" "ctorch\nHalfStorage\n)R.")); }, {"not callable"});
    expect_error([] { unpickle(P("\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R.")); },
                 {"OrderedDict is called with arguments"});
    expect_error([] { unpickle(P("\x80\x02K\x01}b.")); }, {"BUILD on a int"});
    // Two tensors under one name.
    const PickleTensorSpec t{"w", "HalfStorage", "0", 4, 0, {4}, {1}};
    expect_error([&] { unpickle(make_state_dict_pickle({t, t})); }, {"key 'w' twice"});
}

TEST(Pickle, RefusesBadTensors) {
    expect_error([] { unpickle(make_state_dict_pickle({{"w", "HalfStorage", "0", 6, 0, {2, 3}, {1, 2}}})); },
                 {"not contiguous"}, SEAOPT_ERR_UNSUPPORTED);
    expect_error([] { unpickle(make_state_dict_pickle({{"w", "HalfStorage", "0", 5, 0, {2, 3}, {3, 1}}})); },
                 {"run past the end of storage '0' (5 elements)"}, SEAOPT_ERR_MODEL_FORMAT);
    expect_error([] { unpickle(make_state_dict_pickle({{"w", "HalfStorage", "0", 10, 5, {2, 3}, {3, 1}}})); },
                 {"run past the end of storage"});
    expect_error([] { unpickle(make_state_dict_pickle({{"w", "LongStorage", "0", 6, 0, {6}, {1}}})); },
                 {"torch.LongStorage"}, SEAOPT_ERR_UNSUPPORTED);
    expect_error([] { unpickle(make_state_dict_pickle({{"w", "HalfStorage", "0", 6, 0, {2, 3}, {3}}})); },
                 {"different lengths"});
    expect_error(
        [] {
            unpickle(make_state_dict_pickle(
                {{"w", "HalfStorage", "0", 6, 0, {1ull << 40, 1ull << 40}, {1ull << 40, 1}}}));
        },
        {"overflows"});
}

// Random corruption of a real state_dict pickle: a clean result or a seaopt::Error, never a crash.
TEST(Pickle, MutatedPicklesNeverCrash) {
    const Bytes good = read_bytes(kData + "state_dict_p2.pkl");
    std::mt19937 rng(1234);
    int ok = 0;
    for (int iter = 0; iter < 5000; ++iter) {
        Bytes b = good;
        for (int k = 0; k < 1 + (int)(rng() % 3); ++k) b[rng() % b.size()] = (uint8_t)rng();
        try {
            unpickle(b);
            ++ok;
        } catch (const seaopt::Error &) {
        }
    }
    EXPECT_LT(ok, 5000);
}

// The whole .bin path (zip directory, data.pkl, storage bounds) on corrupted archives.
TEST(Pickle, MutatedTorchArchivesNeverCrash) {
    std::vector<BinTensor> tensors;
    for (int i = 0; i < 4; ++i) {
        tensors.push_back({"model.decoder.t" + std::to_string(i), i % 2 ? DType::F16 : DType::F32, {3, (uint64_t)i + 1},
                           encode(random_values(3 * (i + 1), i), i % 2 ? DType::F16 : DType::F32)});
    }
    const Bytes good = make_torch_bin(tensors, "archive", true);
    {
        MemorySource src(good.data(), good.size(), "pytorch_model.bin");
        const std::vector<SourceTensor> t = list_torch_zip_file(src, 0);
        ASSERT_EQ(t.size(), 4u);
        EXPECT_EQ(t[3].shape, (std::vector<uint64_t>{3, 4}));
        EXPECT_EQ(decode(good.data() + t[3].offset, 12, DType::F16), decode(tensors[3].data.data(), 12, DType::F16));
    }
    std::mt19937 rng(99);
    for (int iter = 0; iter < 5000; ++iter) {
        Bytes b = good;
        for (int k = 0; k < 1 + (int)(rng() % 3); ++k) b[rng() % b.size()] = (uint8_t)rng();
        try {
            MemorySource src(b.data(), b.size(), "pytorch_model.bin");
            for (const SourceTensor &t : list_torch_zip_file(src, 0)) ASSERT_LE(t.offset + t.n_bytes, b.size());
        } catch (const seaopt::Error &) {
        }
    }
}

}  // namespace
