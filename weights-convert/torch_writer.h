// A small torch.save writer, for test checkpoints (seaopt-make-tiny-checkpoint --sea and the
// tests): a zip archive of "<archive>/data.pkl" (pickle protocol 2, as torch.save writes it) and
// one "<archive>/data/<key>" entry per storage, stored uncompressed and 64-byte aligned. The
// values are plain data (PyValue) plus the few object forms real checkpoints contain (globals,
// REDUCE calls, NEWOBJ + BUILD objects), so tests can write what a trainer writes without torch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seaopt::convert {

// The bytes of one storage ("<archive>/data/<index>").
struct TorchStorage {
    std::string storage_class;  // "HalfStorage", "FloatStorage", "BFloat16Storage", "LongStorage", ...
    uint64_t element_size = 2;
    std::vector<uint8_t> bytes;
};

struct PyValue {
    enum class Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, OrderedDict, Tensor, Global, Reduce, Object };
    Kind kind = Kind::None;
    bool b = false;
    int64_t i = 0;
    double f = 0;
    std::string s, s2;           // Str: s; Global: module s, name s2
    std::vector<PyValue> items;  // Tuple, List; Dict/OrderedDict: key0, value0, ...; Reduce: callable, args
                                 // tuple; Object: class (a Global), state (BUILD)
    size_t storage = 0;          // Tensor: index into the storages, contiguous, from element storage_offset
    uint64_t storage_offset = 0;
    std::vector<uint64_t> shape;

    static PyValue none() { return {}; }
    static PyValue boolean(bool v);
    static PyValue integer(int64_t v);
    static PyValue real(double v);
    static PyValue str(std::string v);
    static PyValue tuple(std::vector<PyValue> v);
    static PyValue list(std::vector<PyValue> v);
    static PyValue dict(std::vector<std::pair<PyValue, PyValue>> v);
    static PyValue ordered_dict(std::vector<std::pair<PyValue, PyValue>> v);
    static PyValue tensor(size_t storage, std::vector<uint64_t> shape, uint64_t storage_offset = 0);
    static PyValue global(std::string module, std::string name);
    static PyValue reduce(PyValue callable, PyValue args_tuple);
    static PyValue object(PyValue cls, PyValue state);  // cls.__new__(cls) then BUILD(state)
};

// The pickle alone, and the whole archive.
std::vector<uint8_t> torch_pickle(const PyValue &root, const std::vector<TorchStorage> &storages);
// zip64_from: offsets, the central directory's size and the entry count from this value on go to ZIP64 records (the
// format's limit, 0xFFFFFFFF, by default; tests pass a small one to write those records without a 4 GiB archive).
std::vector<uint8_t> torch_save_bytes(const PyValue &root, const std::vector<TorchStorage> &storages,
                                      const std::string &archive, uint64_t zip64_from = 0xFFFFFFFFull);
// Writes torch_save_bytes (archive = the file name without its extension) to a new "<path>.tmp.XXXXXX" and
// renames it onto `path`.
void torch_save(const std::string &path, const PyValue &root, const std::vector<TorchStorage> &storages);

}  // namespace seaopt::convert
