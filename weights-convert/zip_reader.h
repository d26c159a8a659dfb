// A minimal reader for the zip container of modern torch.save files (PyTorch >= 1.6).
//
// torch writes every entry *stored* (uncompressed) and aligned, with a ZIP64 end record, so the
// reader needs only: the end-of-central-directory record (and its ZIP64 form: OPT-13B shards are
// about 10 GB), the central directory, and each entry's local header (to find where its data
// starts). Compressed or encrypted entries, multi-disk archives and anything inconsistent are
// refused with seaopt::Error(SEAOPT_ERR_MODEL_FORMAT / SEAOPT_ERR_UNSUPPORTED); every offset and
// size is bounds and overflow checked. Only the directory is read; entry data stays in the file.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "weights-convert/byte_source.h"

namespace seaopt::convert {

inline constexpr uint64_t kZipMaxCentralDirectory = 64ull << 20;  // torch archives have a few KB
inline constexpr uint64_t kZipMaxEntries = 1u << 20;

struct ZipEntry {
    std::string name;
    uint64_t data_offset = 0;  // absolute offset of the entry's first data byte
    uint64_t size = 0;         // bytes (stored: compressed size == uncompressed size)
};

struct ZipIndex {
    std::vector<ZipEntry> entries;  // central directory order, names unique
    std::unordered_map<std::string, size_t> by_name;  // name -> index in entries
    const ZipEntry *find(const std::string &name) const;  // nullptr if absent
};

// Reads the central directory and every local header. A file that is not a zip but looks like a
// pre-1.6 torch.save pickle gets the "legacy PyTorch serialization" error.
ZipIndex read_zip_index(const ByteSource &src);

}  // namespace seaopt::convert
