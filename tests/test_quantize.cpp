// seaopt-quantize (weights-convert/quantize.h): the f16 GGUF of a checkpoint quantized afterwards equals, byte for
// byte, `seaopt-convert --outtype q8_0` of the same (f16) checkpoint, whose Q8_0 blocks test_convert_e2e checks
// against the source values; what it refuses; the tool's arguments.
#include <gtest/gtest.h>

#include "model/gguf.h"
#include "model/opt_format.h"
#include "seaopt.h"
#include "test_convert_util.h"
#include "test_util.h"
#include "weights-convert/convert.h"
#include "weights-convert/quantize.h"

using namespace convert_test;
using namespace seaopt::convert;
namespace gguf = seaopt::gguf;

namespace {

std::string convert(const std::string &dir, const std::string &out, bool q8_0) {
    ConvertOptions o;
    o.input_dir = dir;
    o.output_path = out;
    o.q8_0 = q8_0;
    o.name = "same";
    convert_checkpoint(o);
    return out;
}

TEST(Quantize, EqualsConvertingToQ8_0) {
    TempDir tmp;
    TinyConfig c;
    c.hidden = c.proj = 32;
    c.ffn = 64;
    for (bool lm_head : {false, true}) {
        SCOPED_TRACE(lm_head ? "untied lm_head" : "tied");
        write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, lm_head, 5), DType::F16, Layout::Safetensors,
                            true);
        const std::string f16 = convert(tmp / "ck", tmp / "f16.gguf", false);
        const std::string direct = convert(tmp / "ck", tmp / "direct.gguf", true);
        const QuantizeResult r = quantize_gguf_q8_0(f16, tmp / "quantized.gguf");
        EXPECT_EQ(r.n_quantized, 6u * c.layers);
        EXPECT_LT(r.bytes_out, r.bytes_in);
        const Bytes a = read_bytes(direct), b = read_bytes(tmp / "quantized.gguf");
        ASSERT_EQ(a.size(), b.size());
        EXPECT_TRUE(a == b) << "seaopt-quantize and seaopt-convert --outtype q8_0 wrote different files";
        fs::remove_all(tmp / "ck");
    }
}

TEST(Quantize, Refusals) {
    TempDir tmp;
    TinyConfig c;  // hidden 16: not whole blocks
    write_hf_checkpoint(tmp / "ck16", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    const std::string narrow = convert(tmp / "ck16", tmp / "narrow.gguf", false);
    expect_error([&] { quantize_gguf_q8_0(narrow, tmp / "out.gguf"); }, {"multiples of 32", "this model has 16 and 32"},
                 SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_FALSE(fs::exists(tmp / "out.gguf"));

    c.hidden = c.proj = 32;
    c.ffn = 64;
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    const std::string q8 = convert(tmp / "ck", tmp / "q8.gguf", true);
    expect_error([&] { quantize_gguf_q8_0(q8, tmp / "out.gguf"); }, {"is already q8_0"}, SEAOPT_ERR_INVALID_ARGUMENT);
    const std::string f16 = convert(tmp / "ck", tmp / "f16.gguf", false);
    const Bytes before = read_bytes(f16);
    expect_error([&] { quantize_gguf_q8_0(f16, f16); }, {"is the input file"}, SEAOPT_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(read_bytes(f16) == before);
    // An input named like the writer's temporary files once were (OUT.tmp, opened with O_TRUNC, which destroyed
    // it): the writer now makes a new file of its own, so the input is untouched and the output written.
    fs::copy_file(f16, tmp / "m.gguf.tmp");
    quantize_gguf_q8_0(tmp / "m.gguf.tmp", tmp / "m.gguf");
    EXPECT_TRUE(read_bytes(tmp / "m.gguf.tmp") == before);
    EXPECT_TRUE(read_bytes(tmp / "m.gguf") == read_bytes(q8));
    // A damaged input is refused by the loader's checks, and no output is left.
    Bytes cut = before;
    cut.resize(cut.size() / 2);
    write_bytes(tmp / "cut.gguf", cut);
    expect_error([&] { quantize_gguf_q8_0(tmp / "cut.gguf", tmp / "out.gguf"); }, {"cut.gguf"}, SEAOPT_ERR_MODEL_FORMAT);
    EXPECT_FALSE(fs::exists(tmp / "out.gguf"));
    EXPECT_FALSE(seaopt_test::temp_file_left(tmp / "out.gguf"));
}

TEST(Quantize, Tool) {
    TempDir tmp;
    TinyConfig c;
    c.hidden = c.proj = 32;
    c.ffn = 64;
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    const std::string f16 = convert(tmp / "ck", tmp / "f16.gguf", false);
    const std::string exe = std::string(SEAOPT_BINARY_DIR) + "/bin/seaopt-quantize";
    seaopt_test::Result r = seaopt_test::run({exe, f16, tmp / "q.gguf", "Q8_0", "--no-progress"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("12 quantized to q8_0"), std::string::npos) << r.out;
    EXPECT_TRUE(read_bytes(tmp / "q.gguf") == read_bytes(convert(tmp / "ck", tmp / "direct.gguf", true)));
    r = seaopt_test::run({exe, f16, tmp / "q4.gguf", "q4_0"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("q4_0"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(tmp / "q4.gguf"));
}

}  // namespace
