#include "weights-convert/safetensors_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "engine/file_mode.h"
#include "engine/error.h"
#include "weights-convert/interrupt_cleanup.h"

namespace seaopt::convert {
namespace {

// A FILE* written to a new file of its own beside `path` ("<path>.tmp.XXXXXX", mkstemp: never an existing file, which
// a fixed name would truncate or write through if it were a link), removed unless commit() renamed it onto `path`.
// A signal that ends the tool removes it too (interrupt_cleanup.h).
class TempFile {
public:
    explicit TempFile(const std::string &path) : path_(path), tmp_(path + ".tmp.XXXXXX") {
        if (const std::string why = seaopt::output_path_problem(path); !why.empty()) throw_io("cannot write: " + why);
        DeferInterrupts defer;  // the file exists from mkstemp on: no signal before it is guarded
        const int fd = seaopt::make_temporary_file(tmp_);
        if (fd < 0) throw_io("cannot create a temporary file " + tmp_ + ": " + std::strerror(errno));
        f_ = ::fdopen(fd, "wb");
        if (!f_) {
            const int err = errno;
            ::close(fd);
            ::unlink(tmp_.c_str());
            throw_io("cannot open " + tmp_ + ": " + std::strerror(err));
        }
        guard_.emplace(tmp_);
    }
    ~TempFile() {
        if (f_) std::fclose(f_);
        if (!committed_) ::unlink(tmp_.c_str());
    }
    TempFile(const TempFile &) = delete;
    TempFile &operator=(const TempFile &) = delete;
    void write(const void *data, size_t n) {
        if (n && std::fwrite(data, 1, n, f_) != n) throw_io("cannot write " + tmp_ + ": " + std::strerror(errno));
    }
    void commit() {
        const int rc = std::fclose(f_);
        f_ = nullptr;
        if (rc != 0) throw_io("cannot write " + tmp_ + ": " + std::strerror(errno));
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
            throw_io("cannot rename " + tmp_ + " to " + path_ + ": " + std::strerror(errno));
        }
        committed_ = true;
    }

private:
    std::string path_, tmp_;
    FILE *f_ = nullptr;
    bool committed_ = false;
    std::optional<RemoveOnInterrupt> guard_;
};

}  // namespace

void write_safetensors(const std::string &path, const std::vector<SafetensorsWriteSpec> &tensors,
                       const TensorBytesFn &tensor_bytes, const std::map<std::string, std::string> &metadata,
                       const std::map<size_t, SafetensorsOtherDtype> &other_dtypes) {
    nlohmann::json header = nlohmann::json::object();
    std::vector<uint64_t> sizes;
    uint64_t offset = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const SafetensorsWriteSpec &t = tensors[i];
        const auto other = other_dtypes.find(i);
        uint64_t n = other != other_dtypes.end() ? other->second.element_size : dtype_size(t.dtype);
        for (uint64_t d : t.shape) n *= d;
        header[t.name] = {{"dtype", other != other_dtypes.end() ? other->second.dtype : std::string(dtype_name(t.dtype))},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + n}}};
        sizes.push_back(n);
        offset += n;
    }
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::string text = header.dump();
    while (text.size() % 8) text += ' ';  // as the reference writer: data starts 8-byte aligned

    TempFile f(path);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = (uint8_t)((uint64_t)text.size() >> (8 * i));
    f.write(len, 8);
    f.write(text.data(), text.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        uint64_t written = 0;
        tensor_bytes(i, [&](const void *data, size_t n) {
            written += n;
            if (written > sizes[i]) throw_invalid_argument("safetensors writer: too many bytes for " + tensors[i].name);
            f.write(data, n);
        });
        if (written != sizes[i]) throw_invalid_argument("safetensors writer: too few bytes for " + tensors[i].name);
    }
    f.commit();
}

void write_safetensors(const std::string &path, const std::vector<SafetensorsBlob> &tensors) {
    std::vector<SafetensorsWriteSpec> specs;
    for (const SafetensorsBlob &b : tensors) specs.push_back({b.name, b.dtype, b.shape});
    write_safetensors(path, specs, [&](size_t i, const ByteSink &sink) { sink(tensors[i].data.data(), tensors[i].data.size()); });
}

void write_file_atomically(const std::string &path, const void *data, size_t size) {
    TempFile f(path);
    f.write(data, size);
    f.commit();
}

void write_file_atomically(const std::string &path, const std::string &bytes) {
    write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace seaopt::convert
