// Helpers shared by the test programs.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "seaopt.h"

namespace seaopt_test {

// n token ids for tests: BOS (2), then ids in [4, 50004) from a linear congruential generator seeded with `seed`
// (the same ids on every platform).
inline std::vector<int32_t> lcg_token_ids(size_t n, uint32_t seed) {
    std::vector<int32_t> ids{2};
    while (ids.size() < n) {
        seed = seed * 1664525u + 1013904223u;
        ids.push_back(4 + (int32_t)(seed % 50000u));
    }
    return ids;
}

// A model file loaded on the CPU engine for as long as the object lives (a load failure is a test failure; m is then
// null).
struct CpuModel {
    seaopt_model *m = nullptr;
    explicit CpuModel(const std::string &path) {
        seaopt_model_params mp = seaopt_model_default_params();
        mp.device = SEAOPT_DEVICE_CPU;
        EXPECT_EQ(seaopt_model_load(path.c_str(), &mp, &m), SEAOPT_OK) << path << ": " << seaopt_last_error();
    }
    ~CpuModel() { seaopt_model_free(m); }
    CpuModel(const CpuModel &) = delete;
    CpuModel &operator=(const CpuModel &) = delete;
};

// A private temporary directory for this test program, removed when the program's tests end.
inline const std::string &temp_dir() {
    static const std::string dir = [] {
        std::string tmpl = (std::filesystem::temp_directory_path() / "seaopt-test-XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        struct Cleanup : ::testing::Environment {
            std::string path;
            explicit Cleanup(std::string p) : path(std::move(p)) {}
            void TearDown() override {
                std::error_code ignored;
                std::filesystem::remove_all(path, ignored);
            }
        };
        ::testing::AddGlobalTestEnvironment(new Cleanup(tmpl));
        return tmpl;
    }();
    return dir;
}

// Whether a writer's temporary file for `path` (path + ".tmp", or path + ".tmp.XXXXXX" as gguf::Writer and the state
// files make them) is left in its directory.
inline bool temp_file_left(const std::string &path) {
    const std::filesystem::path p(path);
    const std::string prefix = p.filename().string() + ".tmp";
    std::error_code ec;
    const std::filesystem::path dir = p.parent_path().empty() ? std::filesystem::path(".") : p.parent_path();
    for (const auto &e : std::filesystem::directory_iterator(dir, ec)) {
        if (e.path().filename().string().rfind(prefix, 0) == 0) return true;
    }
    return false;
}

// The outcome of running a program.
struct Result {
    bool exited = false;  // false: killed by a signal (a crash)
    int status = -1;      // the exit code when exited
    int signal = 0;
    std::string out, err;
};

inline std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string write_temp_file(const std::string &name, const std::string &bytes) {
    const std::string path = temp_dir() + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
}

// Runs a program (args[0] is its path) with stdout and stderr sent to files, so no pipe can fill up
// and block it; returns how it ended and what it printed. The tools' default device is "cuda" in a build with CUDA
// (an error without a usable GPU), so their tests run them with SEAOPT_ARG_DEVICE=auto (--device's env mirror; the
// GPU where there is one, as before, and the CPU elsewhere) unless the environment already sets it or the test asks
// for the tools' own default (tool_default_device: the variable removed).
inline Result run(const std::vector<std::string> &args, bool tool_default_device = false) {
    static int counter = 0;
    const std::string base = temp_dir() + "/run" + std::to_string(counter++);
    const std::string out_path = base + ".out", err_path = base + ".err";
    const pid_t pid = fork();
    if (pid == 0) {
        const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || err < 0) _exit(126);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        if (tool_default_device) {
            unsetenv("SEAOPT_ARG_DEVICE");
        } else {
            setenv("SEAOPT_ARG_DEVICE", "auto", /*overwrite=*/0);
        }
        std::vector<char *> argv;
        for (const std::string &a : args) argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    Result r;
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        ADD_FAILURE() << "could not run " << args[0];
        return r;
    }
    r.exited = WIFEXITED(status);
    r.status = r.exited ? WEXITSTATUS(status) : -1;
    r.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    r.out = read_file(out_path);
    r.err = read_file(err_path);
    return r;
}

inline std::string describe(const Result &r) {
    return "exit " + std::to_string(r.status) + " signal " + std::to_string(r.signal) + "\n--- stdout:\n" + r.out +
           "\n--- stderr:\n" + r.err;
}

}  // namespace seaopt_test
