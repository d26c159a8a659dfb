// Helpers shared by the test programs.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace seaopt_test {

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

}  // namespace seaopt_test
