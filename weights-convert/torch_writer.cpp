#include "weights-convert/torch_writer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "engine/error.h"
#include "weights-convert/safetensors_writer.h"

namespace seaopt::convert {

PyValue PyValue::boolean(bool v) {
    PyValue p;
    p.kind = Kind::Bool;
    p.b = v;
    return p;
}
PyValue PyValue::integer(int64_t v) {
    PyValue p;
    p.kind = Kind::Int;
    p.i = v;
    return p;
}
PyValue PyValue::real(double v) {
    PyValue p;
    p.kind = Kind::Float;
    p.f = v;
    return p;
}
PyValue PyValue::str(std::string v) {
    PyValue p;
    p.kind = Kind::Str;
    p.s = std::move(v);
    return p;
}
PyValue PyValue::tuple(std::vector<PyValue> v) {
    PyValue p;
    p.kind = Kind::Tuple;
    p.items = std::move(v);
    return p;
}
PyValue PyValue::list(std::vector<PyValue> v) {
    PyValue p;
    p.kind = Kind::List;
    p.items = std::move(v);
    return p;
}
namespace {
PyValue make_mapping(PyValue::Kind kind, std::vector<std::pair<PyValue, PyValue>> v) {
    PyValue p;
    p.kind = kind;
    for (auto &[k, x] : v) {
        p.items.push_back(std::move(k));
        p.items.push_back(std::move(x));
    }
    return p;
}
}  // namespace
PyValue PyValue::dict(std::vector<std::pair<PyValue, PyValue>> v) { return make_mapping(Kind::Dict, std::move(v)); }
PyValue PyValue::ordered_dict(std::vector<std::pair<PyValue, PyValue>> v) {
    return make_mapping(Kind::OrderedDict, std::move(v));
}
PyValue PyValue::tensor(size_t storage, std::vector<uint64_t> shape, uint64_t storage_offset) {
    PyValue p;
    p.kind = Kind::Tensor;
    p.storage = storage;
    p.shape = std::move(shape);
    p.storage_offset = storage_offset;
    return p;
}
PyValue PyValue::global(std::string module, std::string name) {
    PyValue p;
    p.kind = Kind::Global;
    p.s = std::move(module);
    p.s2 = std::move(name);
    return p;
}
PyValue PyValue::reduce(PyValue callable, PyValue args_tuple) {
    PyValue p;
    p.kind = Kind::Reduce;
    p.items = {std::move(callable), std::move(args_tuple)};
    return p;
}
PyValue PyValue::object(PyValue cls, PyValue state) {
    PyValue p;
    p.kind = Kind::Object;
    p.items = {std::move(cls), std::move(state)};
    return p;
}

namespace {

using Bytes = std::vector<uint8_t>;

void put_le(Bytes &b, uint64_t v, int n) {
    for (int k = 0; k < n; ++k) b.push_back((uint8_t)(v >> (8 * k)));
}
void put_str(Bytes &b, const std::string &s) { b.insert(b.end(), s.begin(), s.end()); }

class Pickler {
public:
    explicit Pickler(const std::vector<TorchStorage> &storages) : storages_(storages) {}
    Bytes out;

    void save(const PyValue &v) {
        switch (v.kind) {
        case PyValue::Kind::None: out.push_back('N'); break;
        case PyValue::Kind::Bool: out.push_back(v.b ? 0x88 : 0x89); break;
        case PyValue::Kind::Int: save_int(v.i); break;
        case PyValue::Kind::Float: {
            out.push_back('G');  // big-endian IEEE double
            uint64_t bits;
            std::memcpy(&bits, &v.f, 8);
            for (int k = 7; k >= 0; --k) out.push_back((uint8_t)(bits >> (8 * k)));
            break;
        }
        case PyValue::Kind::Str: save_str(v.s); break;
        case PyValue::Kind::Tuple:
            if (v.items.empty()) {
                out.push_back(')');
                break;
            }
            out.push_back('(');
            for (const PyValue &x : v.items) save(x);
            out.push_back('t');
            break;
        case PyValue::Kind::List:
            out.push_back(']');
            if (!v.items.empty()) {
                out.push_back('(');
                for (const PyValue &x : v.items) save(x);
                out.push_back('e');
            }
            break;
        case PyValue::Kind::Dict:
        case PyValue::Kind::OrderedDict:
            if (v.kind == PyValue::Kind::Dict) {
                out.push_back('}');
            } else {  // OrderedDict.__reduce__: (OrderedDict, ()) + SETITEMS
                save_global("collections", "OrderedDict");
                out.push_back(')');
                out.push_back('R');
            }
            if (!v.items.empty()) {
                out.push_back('(');
                for (const PyValue &x : v.items) save(x);
                out.push_back('u');
            }
            break;
        case PyValue::Kind::Tensor: save_tensor(v); break;
        case PyValue::Kind::Global: save_global(v.s, v.s2); break;
        case PyValue::Kind::Reduce:
            save(v.items.at(0));
            save(v.items.at(1));
            out.push_back('R');
            break;
        case PyValue::Kind::Object:  // copyreg.__reduce_ex__(2): cls.__new__(cls) via NEWOBJ, then BUILD
            save(v.items.at(0));
            out.push_back(')');
            out.push_back(0x81);
            save(v.items.at(1));
            out.push_back('b');
            break;
        }
    }

private:
    const std::vector<TorchStorage> &storages_;

    void save_int(int64_t v) {
        if (v >= INT32_MIN && v <= INT32_MAX) {
            out.push_back('J');
            put_le(out, (uint32_t)(int32_t)v, 4);
        } else {
            out.push_back(0x8a);  // LONG1, 8 bytes two's complement
            out.push_back(8);
            put_le(out, (uint64_t)v, 8);
        }
    }
    void save_str(const std::string &s) {
        out.push_back('X');
        put_le(out, s.size(), 4);
        put_str(out, s);
    }
    void save_global(const std::string &module, const std::string &name) {
        out.push_back('c');
        put_str(out, module + "\n" + name + "\n");
    }
    // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())
    void save_tensor(const PyValue &v) {
        const TorchStorage &st = storages_.at(v.storage);
        save_global("torch._utils", "_rebuild_tensor_v2");
        out.push_back('(');
        // persistent id ('storage', torch.<Class>, key, 'cpu', numel)
        out.push_back('(');
        save_str("storage");
        save_global("torch", st.storage_class);
        save_str(std::to_string(v.storage));
        save_str("cpu");
        save_int((int64_t)(st.bytes.size() / st.element_size));
        out.push_back('t');
        out.push_back('Q');
        save_int((int64_t)v.storage_offset);
        std::vector<uint64_t> stride(v.shape.size());
        uint64_t acc = 1;
        for (size_t d = v.shape.size(); d-- > 0;) {
            stride[d] = acc;
            acc *= v.shape[d];
        }
        for (const std::vector<uint64_t> *t : {&v.shape, (const std::vector<uint64_t> *)&stride}) {
            if (t->empty()) {
                out.push_back(')');
                continue;
            }
            out.push_back('(');
            for (uint64_t x : *t) save_int((int64_t)x);
            out.push_back('t');
        }
        out.push_back(0x89);  // requires_grad False
        save_global("collections", "OrderedDict");
        out.push_back(')');
        out.push_back('R');
        out.push_back('t');
        out.push_back('R');
    }
};

uint32_t crc32(const uint8_t *p, size_t n) {
    static const auto table = [] {
        std::vector<uint32_t> t(256);
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

// An entry: its name and bytes (not owned: a storage's bytes are not copied; a 1.3B-shape checkpoint's are ~5 GB).
struct ZipFile {
    std::string name;
    const Bytes &data;
};

// Stored entries, data 64-byte aligned with torch's "FB" padding extra field. Where an offset, the central
// directory's size or the entry count does not fit its 32/16-bit field (values >= zip64_from, 0xFFFFFFFF normally),
// the field holds all ones and the value goes to ZIP64 records, as torch.save (miniz) writes archives over 4 GiB:
// an entry's local-header offset in a ZIP64 extra field of its central record, the directory's place in a ZIP64 end
// record found through a locator. Entries themselves stay under 4 GiB (a storage that large is refused).
Bytes make_zip(const std::vector<ZipFile> &files, uint64_t zip64_from) {
    Bytes out;
    size_t capacity = 22 + 56 + 20;  // the end records
    for (const ZipFile &f : files) capacity += 30 + 2 * f.name.size() + 4 + 63 + f.data.size() + 46 + 12;
    out.reserve(capacity);  // one allocation: growing by doubling would hold two copies at the end
    std::vector<uint64_t> offsets;
    for (const ZipFile &f : files) {
        if (f.data.size() >= 0xFFFFFFFFull) throw_invalid_argument("torch writer: entry " + f.name + " is too large");
        offsets.push_back(out.size());
        put_le(out, 0x04034b50, 4);
        put_le(out, 20, 2);  // version needed
        put_le(out, 0, 2);   // flags
        put_le(out, 0, 2);   // stored
        put_le(out, 0, 4);   // time, date
        put_le(out, crc32(f.data.data(), f.data.size()), 4);
        put_le(out, f.data.size(), 4);
        put_le(out, f.data.size(), 4);
        put_le(out, f.name.size(), 2);
        const size_t data_at = out.size() + 2 + f.name.size() + 4;
        const size_t pad = (64 - data_at % 64) % 64;
        put_le(out, pad + 4, 2);
        put_str(out, f.name);
        put_le(out, 0x4246, 2);  // 'FB'
        put_le(out, pad, 2);
        out.insert(out.end(), pad, 'Z');
        out.insert(out.end(), f.data.begin(), f.data.end());
    }
    const uint64_t cd_at = out.size();
    for (size_t i = 0; i < files.size(); ++i) {
        const ZipFile &f = files[i];
        const bool offset64 = offsets[i] >= zip64_from;
        put_le(out, 0x02014b50, 4);
        put_le(out, offset64 ? 45 : 20, 2);  // version made by, needed: 4.5 for ZIP64
        put_le(out, offset64 ? 45 : 20, 2);
        put_le(out, 0, 2);
        put_le(out, 0, 2);
        put_le(out, 0, 4);
        put_le(out, crc32(f.data.data(), f.data.size()), 4);
        put_le(out, f.data.size(), 4);
        put_le(out, f.data.size(), 4);
        put_le(out, f.name.size(), 2);
        put_le(out, offset64 ? 12 : 0, 2);  // extra: the ZIP64 field (id, length, the offset)
        put_le(out, 0, 2);  // comment
        put_le(out, 0, 2);  // disk
        put_le(out, 0, 2);  // internal attributes
        put_le(out, 0, 4);  // external attributes
        put_le(out, offset64 ? 0xFFFFFFFFull : offsets[i], 4);
        put_str(out, f.name);
        if (offset64) {
            put_le(out, 0x0001, 2);
            put_le(out, 8, 2);
            put_le(out, offsets[i], 8);
        }
    }
    const uint64_t cd_size = out.size() - cd_at;
    const bool end64 = cd_at >= zip64_from || cd_size >= zip64_from || files.size() >= std::min<uint64_t>(zip64_from, 0xFFFF);
    if (end64) {
        const uint64_t record_at = out.size();
        put_le(out, 0x06064b50, 4);  // ZIP64 end of central directory record
        put_le(out, 44, 8);          // its size after this field
        put_le(out, 45, 2);
        put_le(out, 45, 2);
        put_le(out, 0, 4);  // this disk, the directory's disk
        put_le(out, 0, 4);
        put_le(out, files.size(), 8);
        put_le(out, files.size(), 8);
        put_le(out, cd_size, 8);
        put_le(out, cd_at, 8);
        put_le(out, 0x07064b50, 4);  // its locator
        put_le(out, 0, 4);
        put_le(out, record_at, 8);
        put_le(out, 1, 4);  // disks
    }
    put_le(out, 0x06054b50, 4);
    put_le(out, 0, 2);
    put_le(out, 0, 2);
    put_le(out, end64 ? 0xFFFF : files.size(), 2);
    put_le(out, end64 ? 0xFFFF : files.size(), 2);
    put_le(out, end64 ? 0xFFFFFFFFull : cd_size, 4);
    put_le(out, end64 ? 0xFFFFFFFFull : cd_at, 4);
    put_le(out, 0, 2);
    return out;
}

}  // namespace

Bytes torch_pickle(const PyValue &root, const std::vector<TorchStorage> &storages) {
    Pickler p(storages);
    p.out = {0x80, 0x02};
    p.save(root);
    p.out.push_back('.');
    return p.out;
}

Bytes torch_save_bytes(const PyValue &root, const std::vector<TorchStorage> &storages, const std::string &archive,
                       uint64_t zip64_from) {
    const Bytes pickle = torch_pickle(root, storages), byteorder = {'l', 'i', 't', 't', 'l', 'e'}, version = {'3', '\n'};
    std::vector<ZipFile> files;
    files.push_back({archive + "/data.pkl", pickle});
    files.push_back({archive + "/byteorder", byteorder});
    for (size_t i = 0; i < storages.size(); ++i) files.push_back({archive + "/data/" + std::to_string(i), storages[i].bytes});
    files.push_back({archive + "/version", version});
    return make_zip(files, zip64_from);
}

void torch_save(const std::string &path, const PyValue &root, const std::vector<TorchStorage> &storages) {
    const Bytes b = torch_save_bytes(root, storages, std::filesystem::path(path).stem().string());
    write_file_atomically(path, b.data(), b.size());  // no copy: the archive of a 1.3B-shape checkpoint is ~5 GB
}

}  // namespace seaopt::convert
