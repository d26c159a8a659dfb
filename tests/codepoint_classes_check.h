// Checks a classification of every Unicode scalar value against a run-length file made by the fixture scripts
// with Hugging Face's tokenizer (tests/data/tokenizer-hf/codepoint_classes.txt,
// tests/data/tokenizer-added/word_space_classes.txt): lines "first last bits" in hex, '#' comments, the runs covering
// every scalar value in order (the surrogates' gap inside a run).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

// classify(c) -> the bits the file gives c; the first 20 differences are named in the failure.
template <typename Classify>
void expect_codepoint_classes(const std::string &path, Classify classify) {
    std::ifstream in(path);
    ASSERT_TRUE(in) << path;
    uint32_t expected_next = 0, n_checked = 0, n_wrong = 0;
    std::string first_wrong;
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        uint32_t first = 0, last = 0, bits = 0;
        ASSERT_EQ(std::sscanf(line.c_str(), "%x %x %x", &first, &last, &bits), 3) << line;
        ASSERT_EQ(first, expected_next) << "the runs must cover every scalar value in order";
        for (uint32_t c = first; c <= last; ++c) {
            if (c >= 0xD800 && c <= 0xDFFF) continue;  // surrogates: not scalar values, not in the file
            ++n_checked;
            const unsigned got = classify(c);
            if (got != bits && n_wrong++ < 20) {
                char buf[64];
                std::snprintf(buf, sizeof buf, " U+%04X (got %u, HF %u)", c, got, bits);
                first_wrong += buf;
            }
        }
        expected_next = last + 1;
    }
    EXPECT_EQ(expected_next, 0x110000u);
    EXPECT_EQ(n_checked, 1112064u);
    EXPECT_EQ(n_wrong, 0u) << "first differences:" << first_wrong;
}
