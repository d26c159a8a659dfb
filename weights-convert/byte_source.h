// Random access to the bytes of an input file, so that the readers can be pure functions over a
// byte range (tests hand them memory; the converter hands them a file read with pread, never a
// whole-file buffer or an mmap, so a 10 GB shard costs no memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace seaopt::convert {

class ByteSource {
public:
    virtual ~ByteSource() = default;
    virtual uint64_t size() const = 0;
    // Reads exactly n bytes at `offset`. A range past the end throws SEAOPT_ERR_MODEL_FORMAT
    // ("<name>: truncated ..."); a failing read throws SEAOPT_ERR_IO.
    virtual void read(uint64_t offset, void *dst, size_t n) const = 0;
    // What the messages call this input, e.g. "pytorch_model.bin".
    virtual const std::string &name() const = 0;

    // Convenience: n bytes at offset as a vector (callers bound n first).
    std::vector<uint8_t> read_vec(uint64_t offset, size_t n) const;
};

// Bytes in memory (not owned: the caller keeps them alive).
class MemorySource : public ByteSource {
public:
    MemorySource(const void *data, size_t size, std::string name)
        : data_(static_cast<const uint8_t *>(data)), size_(size), name_(std::move(name)) {}
    uint64_t size() const override { return size_; }
    void read(uint64_t offset, void *dst, size_t n) const override;
    const std::string &name() const override { return name_; }

private:
    const uint8_t *data_;
    size_t size_;
    std::string name_;
};

// A file opened read-only and read with pread. Throws SEAOPT_ERR_IO with the path and strerror.
class FileSource : public ByteSource {
public:
    explicit FileSource(const std::string &path, std::string name = "");
    ~FileSource() override;
    FileSource(const FileSource &) = delete;
    FileSource &operator=(const FileSource &) = delete;
    uint64_t size() const override { return size_; }
    void read(uint64_t offset, void *dst, size_t n) const override;
    const std::string &name() const override { return name_; }
    const std::string &path() const { return path_; }

private:
    int fd_ = -1;
    uint64_t size_ = 0;
    std::string path_;
    std::string name_;
};

// Checked arithmetic for sizes from untrusted files: false on overflow.
inline bool checked_add(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }

}  // namespace seaopt::convert
