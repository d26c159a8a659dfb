// Reads the fixture scripts' cases files (tests/data/tokenizer-hf/cases.jsonl.gz, tests/data/tokenizer-added/...):
// gzip-compressed to keep tests/data small (3.0 + 1.4 MB of JSON lines are 0.5 + 0.2 MB compressed). zlib's gzread
// passes an uncompressed file through as it is, so the larger case files the scripts write on the GPU machine
// (SEAOPT_TOKENIZER_CASES=FILE.jsonl) read the same way.
#pragma once

#include <zlib.h>

#include <stdexcept>
#include <string>
#include <vector>

// Every non-empty line of `path` (gzip or plain); throws where it cannot be read.
inline std::vector<std::string> read_case_lines(const std::string &path) {
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) throw std::runtime_error("cannot open " + path);
    std::string text;
    char buf[1 << 16];
    int n = 0;
    while ((n = gzread(f, buf, sizeof buf)) > 0) text.append(buf, (size_t)n);
    int err = Z_OK;
    const char *msg = n < 0 ? gzerror(f, &err) : nullptr;
    const std::string why = msg ? msg : "";
    gzclose(f);
    if (n < 0) throw std::runtime_error("cannot read " + path + ": " + why);
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        if (end > start) lines.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return lines;
}
