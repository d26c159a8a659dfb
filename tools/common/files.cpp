#include "tools/common/files.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <new>
#include <fstream>
#include <iterator>

namespace seaopt_tools {

bool read_file_bytes(const std::string &path, std::string &out, std::string &error) {
    // A directory opens as a stream on Linux and throws on the first read; pipes and FIFOs (-f <(cmd)) are read.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        error = "cannot read " + path + ": it is a directory";
        return false;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = "cannot open " + path + ": " + std::strerror(errno);
        return false;
    }
    try {
        out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } catch (const std::bad_alloc &) {
        out.clear();
        out.shrink_to_fit();
        error = "cannot read " + path + ": out of memory";
        return false;
    }
    if (in.bad()) {
        error = "cannot read " + path;
        return false;
    }
    return true;
}

}  // namespace seaopt_tools
