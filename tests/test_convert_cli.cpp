// The seaopt-convert and seaopt-make-tiny-checkpoint binaries: exit codes, messages, progress
// lines, and the reproducible demo checkpoint.
#include <gtest/gtest.h>

#include "test_util.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>

#include <fcntl.h>
#include <sys/stat.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/gguf.h"
#include "test_convert_util.h"
#include "weights-convert/checkpoint.h"
#include "weights-convert/convert.h"
#include "weights-convert/safetensors.h"

using namespace convert_test;
using namespace seaopt::convert;

namespace {

const std::string kTokenizerDir = std::string(SEAOPT_SOURCE_DIR) + "/models/opt-tokenizer";

TEST(Cli, ConvertsAndReports) {
    TempDir tmp;
    TinyConfig c;
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, true), DType::F16, Layout::Safetensors, true);
    // stderr is a file, not a terminal: one progress line per ~10 %.
    const RunResult r = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "out.gguf", "--outtype", "bf16",
                                     "--name", "cli-test"},
                                    tmp.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("wrote " + tmp / "out.gguf" + ": 36 tensors"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("bf16"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("tied lm_head.weight skipped"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("100%"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\r'), std::string::npos) << "no bar redraws when stderr is not a terminal";
    const size_t lines = (size_t)std::count(r.err.begin(), r.err.end(), '\n');
    EXPECT_GE(lines, 2u);
    EXPECT_LE(lines, 12u) << r.err;
    const Bytes b = read_bytes(tmp / "out.gguf");
    const seaopt::gguf::File f = seaopt::gguf::parse(b.data(), b.size());
    EXPECT_EQ(f.get_str("general.name"), "cli-test");
    EXPECT_EQ(f.get_u32("general.file_type"), 32u);

    const RunResult quiet = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "q.gguf", "--no-progress"}, tmp.path());
    EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
    EXPECT_EQ(quiet.err, "");
}

TEST(Cli, ErrorsExitOneWithAMessage) {
    TempDir tmp;
    TinyConfig c;
    c.activation = "gelu";
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    const RunResult r = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "out.gguf"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("seaopt-convert: error: config.json: activation_function 'gelu' is not supported"),
              std::string::npos)
        << r.err;
    EXPECT_FALSE(fs::exists(tmp / "out.gguf"));
    EXPECT_FALSE(seaopt_test::temp_file_left(tmp / "out.gguf"));

    const RunResult missing = run_process({binary("seaopt-convert"), tmp / "nope", "-o", tmp / "out.gguf"}, tmp.path());
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("seaopt-convert: error: "), std::string::npos) << missing.err;

    const RunResult usage = run_process({binary("seaopt-convert"), tmp / "ck"}, tmp.path());  // no -o
    EXPECT_EQ(usage.exit_code, 1);
    EXPECT_EQ(usage.err, "seaopt-convert: error: --output is required\nRun with --help for more information.\n");
    const RunResult bad_type = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "x.gguf", "--outtype", "q4"},
                                           tmp.path());
    EXPECT_EQ(bad_type.exit_code, 1);
    EXPECT_EQ(bad_type.err.rfind("seaopt-convert: error: --outtype: q4 not in", 0), 0u) << bad_type.err;
    EXPECT_FALSE(fs::exists(tmp / "x.gguf"));
}

// Command-line errors as the other tools report them (tools/common/cli.h): "PROGRAM: error: ...", exit 1 (CLI11's
// own codes were 105-109); --help exits 0.
TEST(Cli, CommandLineErrorsAsTheOtherTools) {
    TempDir tmp;
    struct Case {
        std::vector<std::string> args;
        std::string error;  // the start of stderr
    };
    const std::string convert = binary("seaopt-convert"), quantize = binary("seaopt-quantize"),
                      make = binary("seaopt-make-tiny-checkpoint");
    const std::vector<Case> cases = {
        {{convert}, "seaopt-convert: error: HF_DIR is required"},
        {{convert, tmp.path(), "-o", tmp / "x.gguf", "--bogus"}, "seaopt-convert: error: The following argument"},
        {{convert, tmp.path(), "-o", tmp / "x.gguf", "--sea-k", "0", "--sea", "s"}, "seaopt-convert: error: --sea-k: "},
        {{quantize}, "seaopt-quantize: error: INPUT is required"},
        {{quantize, tmp / "none.gguf", tmp / "q.gguf", "q8_0"}, "seaopt-quantize: error: INPUT: File does not exist"},
        {{quantize, convert, tmp / "q.gguf", "q4_0"}, "seaopt-quantize: error: TYPE: q4_0 not in"},
        {{make, "--tokenizer-dir", kTokenizerDir}, "seaopt-make-tiny-checkpoint: error: --out is required"},
        {{make, "--out", tmp / "m", "--tokenizer-dir", kTokenizerDir, "--hidden", "0"},
         "seaopt-make-tiny-checkpoint: error: --hidden: "},
        // An unsigned option took "-1" as 2^64 - 1.
        {{make, "--out", tmp / "m", "--tokenizer-dir", kTokenizerDir, "--seed", "-1"},
         "seaopt-make-tiny-checkpoint: error: --seed: must be an integer in [0, 18446744073709551615], got '-1'"},
        {{make, "--out", tmp / "m", "--tokenizer-dir", kTokenizerDir, "--seed", "18446744073709551616"},
         "seaopt-make-tiny-checkpoint: error: --seed: must be an integer in [0, 18446744073709551615], got "},
    };
    for (const Case &c : cases) {
        SCOPED_TRACE(c.args.size() > 1 ? c.args[0] + " " + c.args[1] : c.args[0]);
        const RunResult r = run_process(c.args, tmp.path());
        EXPECT_EQ(r.exit_code, 1) << r.err;
        EXPECT_EQ(r.err.rfind(c.error, 0), 0u) << r.err;
        EXPECT_NE(r.err.find("\nRun with --help for more information.\n"), std::string::npos) << r.err;
        EXPECT_EQ(r.out, "");
    }
    for (const std::string &tool : {convert, quantize, make}) {
        SCOPED_TRACE(tool);
        const RunResult help = run_process({tool, "--help"}, tmp.path());
        EXPECT_EQ(help.exit_code, 0) << help.err;
        EXPECT_NE(help.out.find("Usage: " + fs::path(tool).filename().string()), std::string::npos) << help.out;
        EXPECT_EQ(help.err, "");
    }
}

// The binary refuses to write over its input (it used to exit 0 with the checkpoint's weights replaced by the GGUF)
// and a --name that is not UTF-8.
TEST(Cli, RefusesOutputOverTheCheckpointAndANameNotUtf8) {
    TempDir tmp;
    TinyConfig c;
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    const Bytes weights = read_bytes(tmp / "ck/model.safetensors");
    RunResult r = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "ck/model.safetensors"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.err, "seaopt-convert: error: the output " + tmp / "ck/model.safetensors" + " is the input file " +
                         tmp / "ck/model.safetensors" + "; write to another path\n");
    EXPECT_TRUE(read_bytes(tmp / "ck/model.safetensors") == weights);

    r = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "n.gguf", "--name", "\xFF\xFE"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("seaopt-convert: error: the model name is not valid UTF-8 (byte 0 is 0xFF)"), std::string::npos)
        << r.err;
    EXPECT_FALSE(fs::exists(tmp / "n.gguf"));
}

// From an audit of the tools: an output that exists and is not a regular file (here a FIFO; /dev/null for root) was
// replaced by the rename of the finished temporary file. Refused before any work, the FIFO left as it was.
TEST(Cli, RefusesAnOutputThatIsNotARegularFile) {
    TempDir tmp;
    TinyConfig c;
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    ASSERT_EQ(::mkfifo((tmp / "fifo").c_str(), 0644), 0);
    RunResult r = run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "fifo", "--no-progress"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("exists and is not a regular file"), std::string::npos) << r.err;
    ASSERT_EQ(run_process({binary("seaopt-convert"), tmp / "ck", "-o", tmp / "m.gguf", "--no-progress"}, tmp.path())
                  .exit_code,
              0);
    r = run_process({binary("seaopt-quantize"), tmp / "m.gguf", tmp / "fifo", "q8_0"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("exists and is not a regular file"), std::string::npos) << r.err;
    r = run_process({binary("seaopt-quantize"), tmp / "m.gguf", tmp.path(), "q8_0"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("is a directory"), std::string::npos) << r.err;
    r = run_process({binary("seaopt-make-tiny-checkpoint"), "--out", tmp / "t", "--tokenizer-dir", kTokenizerDir,
                     "--sea", tmp / "fifo"},
                    tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("exists and is not a regular file"), std::string::npos) << r.err;
    struct stat st;
    ASSERT_EQ(::stat((tmp / "fifo").c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    for (const auto &e : fs::directory_iterator(tmp.path())) {
        EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
    }
}

// A NaN or infinite weight, or one that f16 cannot hold, would make a model that loads and answers NaN: refused.
TEST(Cli, RefusesNonFiniteWeights) {
    TempDir tmp;
    TinyConfig c;
    std::vector<HfTensor> tensors = make_hf_tensors(c, false);
    tensors[0].values[5] = std::nanf("");
    write_hf_checkpoint(tmp / "nan", c.to_json(), tensors, DType::F32, Layout::Safetensors, true);
    RunResult r =
        run_process({binary("seaopt-convert"), tmp / "nan", "-o", tmp / "a.gguf", "--no-progress"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find(tensors[0].name + "' has a non-finite value (nan) at element 5"), std::string::npos)
        << r.err;
    EXPECT_FALSE(fs::exists(tmp / "a.gguf"));
    tensors = make_hf_tensors(c, false);
    tensors[1].values[3] = 1e6f;  // fine in f32, infinite in f16
    write_hf_checkpoint(tmp / "big", c.to_json(), tensors, DType::F32, Layout::Safetensors, true);
    r = run_process({binary("seaopt-convert"), tmp / "big", "-o", tmp / "b.gguf", "--no-progress"}, tmp.path());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("at element 3 that f16 cannot hold: convert with --outtype f32"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(tmp / "b.gguf"));
    r = run_process({binary("seaopt-convert"), tmp / "big", "-o", tmp / "b.gguf", "--no-progress", "--outtype", "f32"},
                    tmp.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

// ---- signals: an interrupted tool leaves neither its temporary file nor an output ------------------------

// A tool run as a child process that is ended by a signal in the middle of writing `output`.
class Interrupted {
public:
    // stderr_full: the child's stderr is a pipe that is already full, so that the child stops at its first progress
    // line, which it prints while writing (the temporary file open), and stays there until the signal.
    Interrupted(const std::vector<std::string> &argv, const std::string &dir, bool stderr_full) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, (dir + "/child.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (stderr_full) {
            int fds[2];
            if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
            read_fd_ = fds[0];
            fcntl(fds[1], F_SETFL, O_NONBLOCK);
            static const char fill[4096] = {};
            while (write(fds[1], fill, sizeof fill) > 0 || errno == EINTR) {
            }
            fcntl(fds[1], F_SETFL, 0);  // the child's writes block
            posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
            write_fd_ = fds[1];
        } else {
            posix_spawn_file_actions_addopen(&fa, 2, (dir + "/child.err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        }
        std::vector<char *> args;
        for (const std::string &a : argv) args.push_back(const_cast<char *>(a.c_str()));
        args.push_back(nullptr);
        const int rc = posix_spawn(&pid_, argv[0].c_str(), &fa, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (write_fd_ >= 0) close(write_fd_);
        if (rc != 0) throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(rc));
    }
    ~Interrupted() {
        if (pid_ > 0 && !reaped_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        if (read_fd_ >= 0) close(read_fd_);
    }

    // Waits until a temporary file of `output` exists (true), or the child has ended first (false).
    bool wait_for_temporary(const std::string &output) {
        for (int i = 0; i < 60000; ++i) {
            if (seaopt_test::temp_file_left(output)) return true;
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                reaped_ = true;
                return false;
            }
            usleep(500);
        }
        return false;
    }

    // Sends `sig` and returns the signal that ended the child (0 if it exited, -1 if it did not end within 20 s).
    int interrupt(int sig) {
        kill(pid_, sig);
        for (int i = 0; i < 40000; ++i) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                reaped_ = true;
                return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
            }
            usleep(500);
        }
        return -1;
    }

private:
    pid_t pid_ = -1;
    int read_fd_ = -1, write_fd_ = -1;
    bool reaped_ = false;
};

TEST(Signals, InterruptedConvertRemovesItsTemporaryFile) {
    TempDir tmp;
    TinyConfig c;
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    const std::string out = tmp / "out.gguf";
    Interrupted child({binary("seaopt-convert"), tmp / "ck", "-o", out}, tmp.path(), /*stderr_full=*/true);
    ASSERT_TRUE(child.wait_for_temporary(out)) << "seaopt-convert ended before it started writing";
    EXPECT_EQ(child.interrupt(SIGINT), SIGINT) << "it must still end by the signal";
    EXPECT_FALSE(seaopt_test::temp_file_left(out)) << "the temporary file was left behind";
    EXPECT_FALSE(fs::exists(out));
}

TEST(Signals, TerminatedQuantizeRemovesItsTemporaryFile) {
    TempDir tmp;
    TinyConfig c;
    c.hidden = c.proj = 32;  // q8_0's blocks of 32
    write_hf_checkpoint(tmp / "ck", c.to_json(), make_hf_tensors(c, false), DType::F16, Layout::Safetensors, true);
    ConvertOptions o;
    o.input_dir = tmp / "ck";
    o.output_path = tmp / "f16.gguf";
    convert_checkpoint(o);
    const std::string out = tmp / "q8.gguf";
    Interrupted child({binary("seaopt-quantize"), tmp / "f16.gguf", out, "q8_0"}, tmp.path(), /*stderr_full=*/true);
    ASSERT_TRUE(child.wait_for_temporary(out)) << "seaopt-quantize ended before it started writing";
    EXPECT_EQ(child.interrupt(SIGTERM), SIGTERM);
    EXPECT_FALSE(seaopt_test::temp_file_left(out)) << "the temporary file was left behind";
    EXPECT_FALSE(fs::exists(out));
}

// No progress lines here: a checkpoint whose weights take about a second to write (hidden 1024) is interrupted as
// soon as its temporary file appears.
TEST(Signals, InterruptedTinyCheckpointRemovesItsTemporaryFile) {
    TempDir tmp;
    const std::string out = tmp / "ck/model.safetensors";
    Interrupted child({binary("seaopt-make-tiny-checkpoint"), "--out", tmp / "ck", "--tokenizer-dir", kTokenizerDir,
                       "--hidden", "1024", "--heads", "16", "--ffn", "1024", "--layers", "1"},
                      tmp.path(), /*stderr_full=*/false);
    ASSERT_TRUE(child.wait_for_temporary(out)) << "seaopt-make-tiny-checkpoint ended before it started writing";
    EXPECT_EQ(child.interrupt(SIGINT), SIGINT);
    EXPECT_FALSE(seaopt_test::temp_file_left(out)) << "the temporary file was left behind";
    EXPECT_FALSE(fs::exists(out));
}

double mean_of(const std::vector<float> &v) {
    double s = 0;
    for (float x : v) s += x;
    return s / (double)v.size();
}
double std_of(const std::vector<float> &v) {
    const double m = mean_of(v);
    double s = 0;
    for (float x : v) s += (x - m) * (x - m);
    return std::sqrt(s / (double)v.size());
}

TEST(Cli, TinyCheckpointIsReproducibleAndConverts) {
    TempDir tmp;
    auto make = [&](const std::string &dir, const char *seed) {
        const RunResult r = run_process({binary("seaopt-make-tiny-checkpoint"), "--out", dir, "--tokenizer-dir",
                                         kTokenizerDir, "--seed", seed},
                                        tmp.path());
        ASSERT_EQ(r.exit_code, 0) << r.err;
    };
    make(tmp / "a", "1");
    make(tmp / "b", "1");
    make(tmp / "c", "2");
    EXPECT_TRUE(read_bytes(tmp / "a/model.safetensors") == read_bytes(tmp / "b/model.safetensors"));
    EXPECT_FALSE(read_bytes(tmp / "a/model.safetensors") == read_bytes(tmp / "c/model.safetensors"));
    EXPECT_TRUE(read_bytes(tmp / "a/vocab.json") == read_bytes(kTokenizerDir + "/vocab.json"));
    EXPECT_TRUE(read_bytes(tmp / "a/merges.txt") == read_bytes(kTokenizerDir + "/merges.txt"));
    for (const char *f : {"model.safetensors", "config.json", "vocab.json", "merges.txt"}) {
        EXPECT_FALSE(seaopt_test::temp_file_left(tmp / (std::string("a/") + f))) << f;
    }

    const nlohmann::json cfg = nlohmann::json::parse(read_bytes(tmp / "a/config.json"));
    EXPECT_EQ(cfg["vocab_size"], 50272);
    EXPECT_EQ(cfg["hidden_size"], 64);
    EXPECT_EQ(cfg["num_attention_heads"], 4);
    EXPECT_EQ(cfg["num_hidden_layers"], 2);
    EXPECT_EQ(cfg["ffn_dim"], 256);
    EXPECT_EQ(cfg["max_position_embeddings"], 2048);
    EXPECT_EQ(cfg["word_embed_proj_dim"], 64);
    EXPECT_EQ(cfg["do_layer_norm_before"], true);
    EXPECT_EQ(cfg["model_type"], "opt");
    EXPECT_EQ(cfg["activation_function"], "relu");
    EXPECT_EQ(cfg["torch_dtype"], "float16");

    // F16, "model.decoder." names, no lm_head, and the promised distributions.
    seaopt::convert::FileSource st(tmp / "a/model.safetensors", "model.safetensors");
    const std::vector<SourceTensor> tensors = list_safetensors_file(st, 0);
    EXPECT_EQ(tensors.size(), 4u + 2 * 16);
    const Bytes file = read_bytes(tmp / "a/model.safetensors");
    for (const SourceTensor &t : tensors) {
        SCOPED_TRACE(t.name);
        EXPECT_EQ(t.dtype, DType::F16);
        EXPECT_EQ(t.name.rfind("model.decoder.", 0), 0u);
        const std::vector<float> v = decode(file.data() + t.offset, t.n_bytes / 2, DType::F16);
        const double m = mean_of(v), s = std_of(v);
        if (t.name.find("embed_") != std::string::npos) {
            EXPECT_NEAR(m, 0.0, 0.05);
            EXPECT_NEAR(s, 1.0, 0.05);
        } else if (t.name.find("layer_norm.weight") != std::string::npos) {
            EXPECT_NEAR(m, 1.0, 0.06);
            EXPECT_NEAR(s, 0.1, 0.04);
        } else if (t.name.find(".bias") != std::string::npos) {
            EXPECT_NEAR(m, 0.0, 0.06);
            EXPECT_NEAR(s, 0.1, 0.04);
        } else {
            EXPECT_NEAR(s, 1.0 / std::sqrt((double)t.shape[1]), 0.02);
        }
    }

    const RunResult r = run_process({binary("seaopt-convert"), tmp / "a", "-o", tmp / "tiny.gguf", "--outtype", "f16",
                                     "--no-progress"},
                                    tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Bytes g = read_bytes(tmp / "tiny.gguf");
    const seaopt::gguf::File f = seaopt::gguf::parse(g.data(), g.size());
    EXPECT_EQ(f.tensors.size(), 36u);
    EXPECT_EQ(f.get_u32("opt.context_length"), 2048u);
}

// --token-embedding-std scales the token embedding alone (the GPU tests' models whose greedy continuations wander);
// out-of-range values are refused.
TEST(Cli, TinyCheckpointTokenEmbeddingStd) {
    TempDir tmp;
    const RunResult r = run_process({binary("seaopt-make-tiny-checkpoint"), "--out", tmp / "s", "--tokenizer-dir",
                                     kTokenizerDir, "--seed", "1", "--token-embedding-std", "0.05"},
                                    tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    seaopt::convert::FileSource st(tmp / "s/model.safetensors", "model.safetensors");
    const Bytes file = read_bytes(tmp / "s/model.safetensors");
    int seen = 0;
    for (const SourceTensor &t : list_safetensors_file(st, 0)) {
        if (t.name.find("embed_") == std::string::npos) continue;
        SCOPED_TRACE(t.name);
        const double s = std_of(decode(file.data() + t.offset, t.n_bytes / 2, DType::F16));
        if (t.name.find("embed_tokens") != std::string::npos) {
            EXPECT_NEAR(s, 0.05, 0.002);
        } else {
            EXPECT_NEAR(s, 1.0, 0.02);  // the positional embedding keeps N(0,1)
        }
        ++seen;
    }
    EXPECT_EQ(seen, 2);
    for (const char *bad : {"0", "-1", "abc", "nan", "-nan"}) {  // NaN passed CLI::Range: an all-NaN embedding
        const RunResult b = run_process({binary("seaopt-make-tiny-checkpoint"), "--out", tmp / "b", "--tokenizer-dir",
                                         kTokenizerDir, "--token-embedding-std", bad},
                                        tmp.path());
        EXPECT_EQ(b.exit_code, 1) << bad;
        EXPECT_FALSE(fs::exists(tmp / "b/model.safetensors")) << bad;
    }
    for (const char *width : {"0", "1", "3"}) {  // K/4 = 0: a division by zero (SIGFPE) before the range check
        const RunResult b = run_process({binary("seaopt-make-tiny-checkpoint"), "--out", tmp / "w", "--tokenizer-dir",
                                         kTokenizerDir, "--sea", tmp / "w.pt", "--sea-width", width},
                                        tmp.path());
        EXPECT_EQ(b.exit_code, 1) << width << ": " << b.err;
        EXPECT_NE(b.err.find("--sea-width"), std::string::npos) << b.err;
    }
}

}  // namespace
