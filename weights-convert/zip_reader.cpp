#include "weights-convert/zip_reader.h"

#include <algorithm>
#include <cstring>

#include "engine/error.h"

namespace seaopt::convert {
namespace {

constexpr uint32_t kSigLocal = 0x04034b50;
constexpr uint32_t kSigCentral = 0x02014b50;
constexpr uint32_t kSigEocd = 0x06054b50;
constexpr uint32_t kSigZip64Eocd = 0x06064b50;
constexpr uint32_t kSigZip64Locator = 0x07064b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EocdSize = 56;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
constexpr size_t kMaxComment = 0xFFFF;

uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

std::string printable(const std::string &s) {
    std::string out;
    for (unsigned char c : s.substr(0, 200)) {
        if (c >= 0x20 && c < 0x7f) {
            out += (char)c;
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out;
}

const char *method_name(uint16_t m) {
    switch (m) {
    case 8: return "deflate";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "lzma";
    case 93: return "zstd";
    case 95: return "xz";
    default: return "unknown";
    }
}

[[noreturn]] void throw_legacy(const std::string &what) {
    throw_unsupported(what + ": legacy PyTorch serialization is not supported; re-save with torch>=1.6 or convert "
                             "to safetensors");
}

struct EndRecord {
    uint64_t n_entries = 0;
    uint64_t cd_size = 0;
    uint64_t cd_offset = 0;
    uint64_t cd_limit = 0;  // the central directory must end at or before this offset
};

EndRecord read_end_record(const ByteSource &src) {
    const std::string &what = src.name();
    const uint64_t size = src.size();
    const size_t tail_len = (size_t)std::min<uint64_t>(size, kEocdSize + kMaxComment);
    const std::vector<uint8_t> tail = src.read_vec(size - tail_len, tail_len);

    // The last EOCD signature whose comment length reaches exactly the end of the file.
    size_t found = SIZE_MAX;
    if (tail_len >= kEocdSize) {
        for (size_t i = tail_len - kEocdSize + 1; i-- > 0;) {
            if (le32(&tail[i]) == kSigEocd && i + kEocdSize + le16(&tail[i + 20]) == tail_len) {
                found = i;
                break;
            }
        }
    }
    if (found == SIZE_MAX) {
        uint8_t head[4] = {0, 0, 0, 0};
        if (size >= 2) src.read(0, head, std::min<uint64_t>(size, 4));
        if (head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) throw_legacy(what);  // a bare pickle (torch < 1.6)
        if (size >= 262) {
            uint8_t ustar[5];
            src.read(257, ustar, 5);
            if (std::memcmp(ustar, "ustar", 5) == 0) throw_legacy(what);  // torch's tar format (< 0.4)
        }
        if (size >= 4 && le32(head) == kSigLocal) {
            throw_model_format(what + ": zip archive is truncated (no end-of-central-directory record)");
        }
        throw_model_format(what + ": not a zip archive (no end-of-central-directory record)");
    }

    const uint64_t eocd_pos = size - tail_len + found;
    const uint8_t *e = &tail[found];
    const uint16_t disk = le16(e + 4), cd_disk = le16(e + 6);
    const uint16_t entries_disk = le16(e + 8), entries_total = le16(e + 10);
    EndRecord r;
    r.n_entries = entries_total;
    r.cd_size = le32(e + 12);
    r.cd_offset = le32(e + 16);
    r.cd_limit = eocd_pos;
    bool multi_disk = (disk != 0 && disk != 0xFFFF) || (cd_disk != 0 && cd_disk != 0xFFFF) ||
                      entries_disk != entries_total;

    // ZIP64: a locator right before the EOCD points at the ZIP64 end record, whose 64-bit counts
    // and offsets replace the 16/32-bit ones.
    if (eocd_pos >= kZip64LocatorSize) {
        uint8_t loc[kZip64LocatorSize];
        src.read(eocd_pos - kZip64LocatorSize, loc, kZip64LocatorSize);
        if (le32(loc) == kSigZip64Locator) {
            const uint32_t z64_disk = le32(loc + 4);
            const uint64_t z64_offset = le64(loc + 8);
            const uint32_t total_disks = le32(loc + 16);
            if (z64_disk != 0 || total_disks > 1) {
                throw_unsupported(what + ": multi-disk (split) zip archives are not supported");
            }
            const uint64_t locator_pos = eocd_pos - kZip64LocatorSize;
            if (z64_offset > locator_pos || locator_pos - z64_offset < kZip64EocdSize) {
                throw_model_format(what + ": ZIP64 end record offset " + std::to_string(z64_offset) +
                                   " is outside the file");
            }
            uint8_t z[kZip64EocdSize];
            src.read(z64_offset, z, kZip64EocdSize);
            if (le32(z) != kSigZip64Eocd) {
                throw_model_format(what + ": bad ZIP64 end-of-central-directory signature at offset " +
                                   std::to_string(z64_offset));
            }
            const uint64_t rec_size = le64(z + 4);
            if (rec_size < kZip64EocdSize - 12 || rec_size > locator_pos - z64_offset - 12) {
                throw_model_format(what + ": ZIP64 end record has an impossible size " + std::to_string(rec_size));
            }
            const uint32_t d = le32(z + 16), cd_d = le32(z + 20);
            const uint64_t n_disk = le64(z + 24), n_total = le64(z + 32);
            multi_disk = d != 0 || cd_d != 0 || n_disk != n_total;
            r.n_entries = n_total;
            r.cd_size = le64(z + 40);
            r.cd_offset = le64(z + 48);
            r.cd_limit = z64_offset;
        }
    }
    if (multi_disk) throw_unsupported(what + ": multi-disk (split) zip archives are not supported");

    uint64_t cd_end;
    if (!checked_add(r.cd_offset, r.cd_size, &cd_end) || cd_end > r.cd_limit) {
        throw_model_format(what + ": central directory [" + std::to_string(r.cd_offset) + " + " +
                           std::to_string(r.cd_size) + "] is past its end record at offset " +
                           std::to_string(r.cd_limit));
    }
    if (r.cd_size > kZipMaxCentralDirectory) {
        throw_model_format(what + ": central directory of " + std::to_string(r.cd_size) + " bytes is too large");
    }
    if (r.n_entries > kZipMaxEntries || r.n_entries > r.cd_size / kCentralSize) {
        throw_model_format(what + ": central directory claims " + std::to_string(r.n_entries) +
                           " entries, more than its " + std::to_string(r.cd_size) + " bytes can hold");
    }
    return r;
}

}  // namespace

const ZipEntry *ZipIndex::find(const std::string &name) const {
    const auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : &entries[it->second];
}

ZipIndex read_zip_index(const ByteSource &src) {
    const std::string &what = src.name();
    const EndRecord end = read_end_record(src);
    const std::vector<uint8_t> cd = src.read_vec(end.cd_offset, (size_t)end.cd_size);

    ZipIndex index;
    index.entries.reserve((size_t)end.n_entries);
    size_t pos = 0;
    for (uint64_t k = 0; k < end.n_entries; ++k) {
        const std::string where = what + ": central directory entry " + std::to_string(k);
        if (cd.size() - pos < kCentralSize) throw_model_format(where + " is truncated");
        const uint8_t *c = &cd[pos];
        if (le32(c) != kSigCentral) throw_model_format(where + " has a bad signature");
        const uint16_t flags = le16(c + 8), method = le16(c + 10);
        uint64_t csize = le32(c + 20), usize = le32(c + 24);
        const uint16_t name_len = le16(c + 28), extra_len = le16(c + 30), comment_len = le16(c + 32);
        const uint16_t disk_start = le16(c + 34);
        uint64_t local_offset = le32(c + 42);
        const size_t var_len = (size_t)name_len + extra_len + comment_len;
        if (cd.size() - pos - kCentralSize < var_len) throw_model_format(where + " is truncated");
        ZipEntry entry;
        entry.name.assign(reinterpret_cast<const char *>(c + kCentralSize), name_len);
        const std::string ename = what + ": entry '" + printable(entry.name) + "'";
        if (entry.name.empty()) throw_model_format(where + " has an empty name");

        // ZIP64 extended information: the fields whose 32/16-bit value is all ones, in this order.
        const uint8_t *x = c + kCentralSize + name_len;
        size_t xpos = 0;
        bool need_u = usize == 0xFFFFFFFFu, need_c = csize == 0xFFFFFFFFu, need_o = local_offset == 0xFFFFFFFFu;
        bool need_d = disk_start == 0xFFFF;
        while (xpos < extra_len) {
            if (extra_len - xpos < 4) throw_model_format(ename + ": truncated extra field");
            const uint16_t id = le16(x + xpos), len = le16(x + xpos + 2);
            xpos += 4;
            if (extra_len - xpos < len) throw_model_format(ename + ": extra field past its end");
            if (id == 0x0001) {
                const uint8_t *f = x + xpos;
                size_t avail = len;
                auto take64 = [&](uint64_t *v) {
                    if (avail < 8) throw_model_format(ename + ": ZIP64 extra field is too short");
                    *v = le64(f);
                    f += 8;
                    avail -= 8;
                };
                if (need_u) {
                    take64(&usize);
                    need_u = false;
                }
                if (need_c) {
                    take64(&csize);
                    need_c = false;
                }
                if (need_o) {
                    take64(&local_offset);
                    need_o = false;
                }
                if (need_d) {
                    if (avail < 4) throw_model_format(ename + ": ZIP64 extra field is too short");
                    if (le32(f) != 0) throw_unsupported(what + ": multi-disk (split) zip archives are not supported");
                    need_d = false;
                }
            }
            xpos += len;
        }
        if (need_u || need_c || need_o) throw_model_format(ename + ": 64-bit size or offset without a ZIP64 extra field");
        if (disk_start != 0 && disk_start != 0xFFFF) {
            throw_unsupported(what + ": multi-disk (split) zip archives are not supported");
        }
        if (need_d) throw_model_format(ename + ": 64-bit disk number without a ZIP64 extra field");
        if (flags & 0x0001) throw_unsupported(ename + " is encrypted");
        if (method != 0) {
            throw_unsupported(ename + " is compressed (method " + std::to_string(method) + ", " + method_name(method) +
                              "); only stored entries are supported (torch.save writes them uncompressed)");
        }
        if (csize != usize) {
            throw_model_format(ename + " is stored but its compressed size " + std::to_string(csize) +
                               " differs from its size " + std::to_string(usize));
        }
        if (!index.by_name.emplace(entry.name, index.entries.size()).second) {
            throw_model_format(ename + " appears twice");
        }

        // The local header: its name must agree, and the data must end before the central directory.
        if (local_offset > end.cd_offset || end.cd_offset - local_offset < kLocalSize) {
            throw_model_format(ename + ": local header offset " + std::to_string(local_offset) +
                               " is past the entries area");
        }
        uint8_t lh[kLocalSize];
        src.read(local_offset, lh, kLocalSize);
        if (le32(lh) != kSigLocal) {
            throw_model_format(ename + ": bad local header signature at offset " + std::to_string(local_offset));
        }
        if (le16(lh + 8) != 0) {
            throw_unsupported(ename + " is compressed (method " + std::to_string(le16(lh + 8)) +
                              " in its local header); only stored entries are supported");
        }
        const uint16_t lname_len = le16(lh + 26), lextra_len = le16(lh + 28);
        const uint64_t data_offset = local_offset + kLocalSize + lname_len + lextra_len;
        uint64_t data_end;
        if (data_offset > end.cd_offset || !checked_add(data_offset, usize, &data_end) || data_end > end.cd_offset) {
            throw_model_format(ename + ": data [" + std::to_string(data_offset) + " + " + std::to_string(usize) +
                               "] runs past the entries area (" + std::to_string(end.cd_offset) + " bytes)");
        }
        if (lname_len != name_len) throw_model_format(ename + ": local header has a different name");
        const std::vector<uint8_t> lname = src.read_vec(local_offset + kLocalSize, lname_len);
        if (std::memcmp(lname.data(), entry.name.data(), name_len) != 0) {
            throw_model_format(ename + ": local header has a different name");
        }
        entry.data_offset = data_offset;
        entry.size = usize;
        index.entries.push_back(std::move(entry));
        pos += kCentralSize + var_len;
    }
    return index;
}

}  // namespace seaopt::convert
