#include "tools/common/files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace seaopt_tools {

bool read_file_bytes(const std::string &path, std::string &out, std::string &error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = "cannot open " + path + ": " + std::strerror(errno);
        return false;
    }
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) {
        error = "cannot read " + path;
        return false;
    }
    return true;
}

}  // namespace seaopt_tools
