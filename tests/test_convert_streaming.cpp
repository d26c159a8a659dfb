// seaopt-convert streams: a checkpoint of ~280 MB of F32 weights converts with a peak resident set
// far below its size (the converter reads bounded chunks with pread, never the whole file).
#include <gtest/gtest.h>

#include <sys/resource.h>

#include "model/gguf.h"
#include "test_convert_util.h"
#include "weights-convert/checkpoint.h"
#include "weights-convert/hf_config.h"

using namespace convert_test;
using namespace seaopt::convert;

namespace {

constexpr long kMaxRssKb = 120 * 1024;

// A cheap deterministic value for element i of tensor t (exactly representable in f16).
float pattern(size_t t, uint64_t i) { return (float)(int)((i * 2654435761u + t * 40503u) % 2001u - 1000) / 1024.0f; }

TEST(Streaming, LargeCheckpointWithBoundedMemory) {
    TempDir tmp;
    TinyConfig c;
    c.hidden = 768;
    c.heads = 12;
    c.proj = 768;
    c.layers = 2;
    c.ffn = 8192;
    c.max_pos = 2048;
    const std::string dir = tmp / "big";
    fs::create_directories(dir);
    write_text(dir + "/config.json", c.to_json().dump(2));
    copy_tokenizer(dir);

    // The tensor list of this config, written as F32 by streaming (this process stays small too).
    std::vector<SafetensorsWriteSpec> specs;
    for (const auto &[name, shape] : hf_tensor_shapes(c, false)) specs.push_back({"model." + name, DType::F32, shape});
    uint64_t total_bytes = 0;
    for (const SafetensorsWriteSpec &s : specs) {
        uint64_t n = 4;
        for (uint64_t d : s.shape) n *= d;
        total_bytes += n;
    }
    ASSERT_GE(total_bytes, 200ull << 20) << "the checkpoint must be large for this test to mean anything";
    write_safetensors(dir + "/model.safetensors", specs, [&](size_t t, const ByteSink &sink) {
        uint64_t n = 1;
        for (uint64_t d : specs[t].shape) n *= d;
        std::vector<float> chunk;
        for (uint64_t i = 0; i < n; i += 65536) {
            const uint64_t k = std::min<uint64_t>(65536, n - i);
            chunk.resize(k);
            for (uint64_t j = 0; j < k; ++j) chunk[j] = pattern(t, i + j);
            sink(chunk.data(), k * 4);
        }
    });

    // The child's ru_maxrss starts from this process's high-water mark (exec inherits it), so
    // this process must stay small: it generated the file in chunks.
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    ASSERT_LT(self.ru_maxrss, kMaxRssKb / 2) << "the test process itself is too large to measure the child";
    const RunResult r = run_process({binary("seaopt-convert"), dir, "-o", tmp / "big.gguf", "--outtype", "f16"}, tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::printf("[ INFO     ] converted %.0f MiB of F32 weights; seaopt-convert peak RSS %.1f MiB\n",
                (double)total_bytes / (1 << 20), (double)r.max_rss_kb / 1024.0);
    EXPECT_LT(r.max_rss_kb, kMaxRssKb) << "peak RSS " << r.max_rss_kb << " kB";

    // Spot-check values across the file, including the end of the largest tensors.
    seaopt::gguf::MappedFile mapped(tmp / "big.gguf");
    const seaopt::gguf::File f = seaopt::gguf::parse(mapped.data(), mapped.size());
    ASSERT_EQ(f.tensors.size(), specs.size());
    std::map<std::string, size_t> spec_of_hf;  // canonical HF name -> index in specs (the pattern's t)
    for (size_t t = 0; t < specs.size(); ++t) spec_of_hf[canonical_hf_name(specs[t].name)] = t;
    const auto expected = expected_opt_tensors(parse_hf_config(c.to_json().dump()).hp, false);
    ASSERT_EQ(expected.size(), specs.size());
    for (const ExpectedTensor &e : expected) {
        const seaopt::gguf::TensorInfo *found = f.find_tensor(e.gguf_name);
        ASSERT_NE(found, nullptr) << e.gguf_name;
        const seaopt::gguf::TensorInfo &info = *found;
        const size_t t = spec_of_hf.at(e.hf_name);
        const uint8_t *base = mapped.data() + f.data_offset + info.offset;
        for (uint64_t i : {(uint64_t)0, info.n_elements / 2, info.n_elements - 1}) {
            uint16_t h;
            std::memcpy(&h, base + 2 * i, 2);
            ASSERT_EQ(h, seaopt::f32_to_f16(pattern(t, i))) << info.name << " element " << i;
        }
    }
}

}  // namespace
