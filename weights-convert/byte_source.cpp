#include "weights-convert/byte_source.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/error.h"

namespace seaopt::convert {
namespace {

[[noreturn]] void throw_truncated(const std::string &name, uint64_t offset, size_t n, uint64_t size) {
    throw_model_format(name + ": truncated: needs bytes [" + std::to_string(offset) + ", " +
                       std::to_string(offset + (uint64_t)n) + ") but has only " + std::to_string(size) + " bytes");
}

}  // namespace

std::vector<uint8_t> ByteSource::read_vec(uint64_t offset, size_t n) const {
    if (offset > size() || n > size() - offset) throw_truncated(name(), offset, n, size());
    std::vector<uint8_t> v(n);
    if (n) read(offset, v.data(), n);
    return v;
}

void MemorySource::read(uint64_t offset, void *dst, size_t n) const {
    if (offset > size_ || n > size_ - offset) throw_truncated(name_, offset, n, size_);
    if (n) std::memcpy(dst, data_ + offset, n);
}

FileSource::FileSource(const std::string &path, std::string name)
    : path_(path), name_(name.empty() ? path : std::move(name)) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw_io("cannot open " + path + ": " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
        const int e = errno;
        ::close(fd_);
        throw_io("cannot stat " + path + ": " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd_);
        throw_io(path + " is not a regular file");
    }
    size_ = (uint64_t)st.st_size;
}

FileSource::~FileSource() {
    if (fd_ >= 0) ::close(fd_);
}

void FileSource::read(uint64_t offset, void *dst, size_t n) const {
    if (offset > size_ || n > size_ - offset) throw_truncated(name_, offset, n, size_);
    uint8_t *p = static_cast<uint8_t *>(dst);
    while (n > 0) {
        const ssize_t got = ::pread(fd_, p, n, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw_io("cannot read " + path_ + ": " + std::strerror(errno));
        }
        if (got == 0) throw_io("cannot read " + path_ + ": the file shrank while being read");
        p += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
}

}  // namespace seaopt::convert
