#include "engine/state.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "engine/error.h"
#include "engine/file_mode.h"
#include "engine/fp16.h"
#include "model/gguf.h"
#include "model/opt_cuda.h"

namespace seaopt {

namespace {

constexpr char kMagic[8] = {'S', 'E', 'A', 'O', 'P', 'T', 'S', 'Q'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kKvF32 = 0, kKvF16 = 1;
constexpr size_t kFixedHeader = 64;  // magic .. n_tokens

// The blob's fixed header, as read or as this context would write it.
struct Header {
    uint32_t version = kVersion;
    uint32_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_ctx_train = 0;
    uint64_t fingerprint = 0;
    uint32_t attention = 0, sea_k = 0, sea_K = 0, sea_m = 0;
    uint32_t kv_type = 0, n_tokens = 0;
};

size_t padded4(size_t n) { return (n + 3) / 4 * 4; }

// Floats of one SEA layer's state.
size_t sea_state_floats(const cpu::SeaConfig &cfg) {
    const size_t H = cfg.n_head, m = cfg.n_features, row = 2 * H * (cfg.K / 4);
    return H * m + H * m * 2 * cpu::kSeaHeadDim + H * cpu::kSeaHeadDim + 2 * 4 * row;
}

size_t n_sea_layers(const Context &ctx) {
    return ctx.sea.any() ? (size_t)std::count(ctx.sea.on.begin(), ctx.sea.on.end(), 1) : 0;
}

// The keys and values of n tokens in the blob: [layer][K, V][head][n][head_dim] of kv_type.
size_t kv_section_bytes(const OptHparams &hp, uint64_t n, uint32_t kv_type) {
    return 2 * (size_t)hp.n_layer * n * hp.n_embd * (kv_type == kKvF16 ? 2 : 4);
}

// The blob's size for n tokens with this context's model and attention and the given kv type.
size_t blob_size(const Context &ctx, uint64_t n, uint32_t kv_type) {
    const OptHparams &hp = ctx.model->hp;
    size_t size = kFixedHeader + padded4(hp.n_layer) + n * 4 + kv_section_bytes(hp, n, kv_type);
    if (n > 0) size += n_sea_layers(ctx) * sea_state_floats(ctx.sea.cfg) * 4;
    return size + 8;
}

uint32_t native_kv_type(const Context &ctx) { return ctx.cuda ? kKvF16 : kKvF32; }

Header context_header(const Context &ctx, uint32_t n) {
    const OptHparams &hp = ctx.model->hp;
    Header h;
    h.n_vocab = hp.n_vocab;
    h.n_embd = hp.n_embd;
    h.n_layer = hp.n_layer;
    h.n_head = hp.n_head;
    h.n_ctx_train = hp.n_ctx_train;
    h.fingerprint = ctx.model->fingerprint;
    if (ctx.sea.any()) {
        h.attention = 1;
        h.sea_k = (uint32_t)ctx.sea.cfg.k;
        h.sea_K = (uint32_t)ctx.sea.cfg.K;
        h.sea_m = (uint32_t)ctx.sea.cfg.n_features;
    }
    h.kv_type = native_kv_type(ctx);
    h.n_tokens = n;
    return h;
}

// The blob's checksum (engine/state.h): FNV-1a steps over 8-byte little-endian words in four interleaved lanes
// (word i in lane i % 4), then the four lanes, the words after the last 32-byte block and the tail bytes through one
// more. Hundreds of MB for a long sequence: one serial chain of multiplies ran at ~2 GB/s, four at ~4x that.
uint64_t checksum(const uint8_t *p, size_t n) {
    constexpr uint64_t kBasis = 0xcbf29ce484222325ull, kPrime = 0x100000001b3ull;
    uint64_t lane[4] = {kBasis, kBasis, kBasis, kBasis};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        std::memcpy(w, p + i, 32);
        for (int j = 0; j < 4; ++j) lane[j] = (lane[j] ^ w[j]) * kPrime;
    }
    uint64_t h = kBasis;
    for (uint64_t l : lane) h = (h ^ l) * kPrime;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ w) * kPrime;
    }
    for (; i < n; ++i) h = (h ^ p[i]) * kPrime;
    return h;
}

// Zero-length copies are skipped: an empty sequence's vectors may have no storage (memcpy from null is undefined).
struct Writer {
    uint8_t *p;
    void bytes(const void *src, size_t n) {
        if (n == 0) return;
        std::memcpy(p, src, n);
        p += n;
    }
    void u32(uint32_t v) { bytes(&v, 4); }
    void u64(uint64_t v) { bytes(&v, 8); }
};

struct Reader {
    const uint8_t *p;
    void bytes(void *dst, size_t n) {
        if (n == 0) return;
        std::memcpy(dst, p, n);
        p += n;
    }
    uint32_t u32() {
        uint32_t v;
        bytes(&v, 4);
        return v;
    }
    uint64_t u64() {
        uint64_t v;
        bytes(&v, 8);
        return v;
    }
};

std::string sea_description(const std::vector<uint8_t> &on, uint32_t k) {
    return "SEA attention (k " + std::to_string(k) + ", layers " + layer_ranges(on) + ")";
}

// The keys and values of sequence seq, rows [0, n), as [layer][K, V][head][n][head_dim] in the context's own type.
void read_kv(Context &ctx, uint32_t seq, uint32_t n, uint8_t *dst) {
    if (n == 0) return;
    const OptHparams &hp = ctx.model->hp;
    if (ctx.cuda) {
        cuda_kv_download(hp, *ctx.cuda, seq, n, dst);  // already in this order and type
        return;
    }
    const size_t H = hp.n_head, hd = hp.n_embd / hp.n_head, E = hp.n_embd;
    std::vector<float> block(H * n * hd);
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        for (int kv = 0; kv < 2; ++kv) {
            const float *rows = kv == 0 ? ctx.kv.k_rows(l, seq) : ctx.kv.v_rows(l, seq);  // [n_ctx][E]
            for (size_t h = 0; h < H; ++h)
                for (size_t t = 0; t < n; ++t) std::copy_n(rows + t * E + h * hd, hd, block.data() + (h * n + t) * hd);
            std::memcpy(dst, block.data(), block.size() * 4);
            dst += block.size() * 4;
        }
    }
}

// Writes rows [0, n) of sequence seq from src ([layer][K, V][head][n][head_dim] of kv_type), converting the type.
void write_kv(Context &ctx, uint32_t seq, uint32_t n, const uint8_t *src, uint32_t kv_type) {
    if (n == 0) return;
    const OptHparams &hp = ctx.model->hp;
    const size_t count = (size_t)hp.n_layer * 2 * n * hp.n_embd;
    if (ctx.cuda) {
        if (kv_type == kKvF16) {
            cuda_kv_upload(hp, *ctx.cuda, seq, n, src);  // already in the cache's order and type
            return;
        }
        std::vector<uint16_t> host(count);
        for (size_t i = 0; i < count; ++i) {
            float f;
            std::memcpy(&f, src + i * 4, 4);
            host[i] = f32_to_f16(f);
        }
        cuda_kv_upload(hp, *ctx.cuda, seq, n, host.data());
        return;
    }
    const size_t H = hp.n_head, hd = hp.n_embd / hp.n_head, E = hp.n_embd, elem = kv_type == kKvF16 ? 2 : 4;
    auto value = [&](size_t i) {
        if (elem == 2) {
            uint16_t h;
            std::memcpy(&h, src + i * 2, 2);
            return f16_to_f32(h);
        }
        float f;
        std::memcpy(&f, src + i * 4, 4);
        return f;
    };
    size_t i = 0;
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
        for (int kv = 0; kv < 2; ++kv) {
            float *rows = kv == 0 ? ctx.kv.k_rows(l, seq) : ctx.kv.v_rows(l, seq);
            for (size_t h = 0; h < H; ++h)
                for (size_t t = 0; t < n; ++t)
                    for (size_t d = 0; d < hd; ++d) rows[t * E + h * hd + d] = value(i++);
        }
    }
}

void put_floats(Writer &w, const std::vector<float> &v) { w.bytes(v.data(), v.size() * 4); }
void get_floats(Reader &r, std::vector<float> &v) { r.bytes(v.data(), v.size() * 4); }

// Slots of rows before position 0 are zero in the blob whatever the engine left there.
void zero_unused_history(cpu::SeaDecodeState &st, uint32_t n) {
    const size_t row = st.image_hist.size() / 4;
    for (uint32_t slot = 0; slot < 4; ++slot) {
        bool used = false;
        for (uint32_t back = 1; back <= 4 && back <= n; ++back) used |= (n - back) % 4 == slot;
        if (used) continue;
        std::fill_n(st.image_hist.begin() + slot * row, row, 0.0f);
        std::fill_n(st.conv1_hist.begin() + slot * row, row, 0.0f);
    }
}

}  // namespace

size_t state_seq_size(const Context &ctx, uint32_t seq) {
    return blob_size(ctx, (uint64_t)ctx.seq_len.at(seq), native_kv_type(ctx));
}

size_t state_seq_write(Context &ctx, uint32_t seq, uint8_t *dst, size_t size) {
    const uint32_t n = (uint32_t)ctx.seq_len.at(seq);
    const size_t need = state_seq_size(ctx, seq);
    if (size < need) {
        throw Error(SEAOPT_ERR_BUFFER_TOO_SMALL, "the state of sequence " + std::to_string(seq) + " needs " +
                                                     std::to_string(need) + " bytes, the buffer has " +
                                                     std::to_string(size));
    }
    const OptHparams &hp = ctx.model->hp;
    const Header h = context_header(ctx, n);
    Writer w{dst};
    w.bytes(kMagic, 8);
    w.u32(h.version);
    for (uint32_t v : {h.n_vocab, h.n_embd, h.n_layer, h.n_head, h.n_ctx_train}) w.u32(v);
    w.u64(h.fingerprint);
    for (uint32_t v : {h.attention, h.sea_k, h.sea_K, h.sea_m, h.kv_type, h.n_tokens}) w.u32(v);
    std::vector<uint8_t> on(padded4(hp.n_layer), 0);
    if (ctx.sea.any()) std::copy(ctx.sea.on.begin(), ctx.sea.on.end(), on.begin());
    w.bytes(on.data(), on.size());
    w.bytes(ctx.seq_tokens.at(seq).data(), (size_t)n * 4);
    read_kv(ctx, seq, n, w.p);
    w.p += kv_section_bytes(hp, n, h.kv_type);
    if (n > 0 && ctx.sea.any()) {
        for (uint32_t l = 0; l < hp.n_layer; ++l) {
            if (!ctx.sea.on[l]) continue;
            cpu::SeaDecodeState st;
            if (ctx.cuda) {
                cuda_sea_state_download(*ctx.cuda, seq, l, n, st);
            } else {
                st = ctx.sea.state(seq, l);
            }
            zero_unused_history(st, n);
            for (const std::vector<float> *v : {&st.perf_k_sum, &st.perf_kv_sum, &st.v_sum, &st.image_hist, &st.conv1_hist})
                put_floats(w, *v);
        }
    }
    w.u64(checksum(dst, (size_t)(w.p - dst)));
    if ((size_t)(w.p - dst) != need) throw Error(SEAOPT_ERR_INTERNAL, "sequence state: wrote a blob of the wrong size");
    return need;
}

void state_seq_read(Context &ctx, uint32_t seq, const uint8_t *src, size_t size, const std::string &what) {
    const OptHparams &hp = ctx.model->hp;
    auto bad = [&](const std::string &m) { throw_model_format(what + ": " + m); };
    if (!src && size > 0) throw_invalid_argument(what + ": the data is NULL");
    if (size < kFixedHeader + 8 || std::memcmp(src, kMagic, 8) != 0) {
        bad("not a seaopt sequence state (it does not start with \"SEAOPTSQ\" or is shorter than its header)");
    }
    Reader r{src + 8};
    Header h;
    h.version = r.u32();
    if (h.version != kVersion) {
        throw_unsupported(what + ": sequence state version " + std::to_string(h.version) + "; this seaopt reads version " +
                          std::to_string(kVersion));
    }
    for (uint32_t *v : {&h.n_vocab, &h.n_embd, &h.n_layer, &h.n_head, &h.n_ctx_train}) *v = r.u32();
    h.fingerprint = r.u64();
    for (uint32_t *v : {&h.attention, &h.sea_k, &h.sea_K, &h.sea_m, &h.kv_type, &h.n_tokens}) *v = r.u32();

    // A blob whose checksum fails is reported as corrupt, not as one of another model or attention setting: a flipped
    // byte of those header fields would otherwise read as a compatibility error with a self-contradicting message.
    // The checksum reads the whole blob: computed only where it decides something, so that a state of another model
    // is refused by its header alone.
    uint64_t stored_sum;
    std::memcpy(&stored_sum, src + size - 8, 8);
    auto sum_ok = [&] { return checksum(src, size - 8) == stored_sum; };
    auto incompatible = [&](const std::string &m) {
        if (!sum_ok()) bad("the checksum does not match: the data is corrupt");
        throw_invalid_argument(what + ": " + m);
    };
    const Header mine = context_header(ctx, 0);
    if (h.n_vocab != mine.n_vocab || h.n_embd != mine.n_embd || h.n_layer != mine.n_layer || h.n_head != mine.n_head ||
        h.n_ctx_train != mine.n_ctx_train) {
        auto shape = [](const Header &x) {
            return "n_vocab " + std::to_string(x.n_vocab) + ", n_embd " + std::to_string(x.n_embd) + ", " +
                   std::to_string(x.n_layer) + " layers, " + std::to_string(x.n_head) + " heads, " +
                   std::to_string(x.n_ctx_train) + " positions";
        };
        incompatible("saved from a model of another shape (" + shape(h) + "; this model: " + shape(mine) + ")");
    }
    if (h.fingerprint != mine.fingerprint) {
        incompatible("saved from another model (same shape, different weights or weight type; its fingerprint does "
                     "not match this model file's)");
    }
    // The on-layer mask sits after the fixed header; needed for the attention check.
    if (size < kFixedHeader + padded4(hp.n_layer) + 8) bad("truncated (the header is incomplete)");
    std::vector<uint8_t> on(padded4(hp.n_layer));
    std::memcpy(on.data(), src + kFixedHeader, on.size());
    on.resize(hp.n_layer);
    if (h.attention > 1) bad("unknown attention kind " + std::to_string(h.attention));
    for (uint8_t b : on) {
        if (b > 1) bad("the SEA layer flags are corrupt");
    }
    const std::string saved_attention = h.attention == 1 ? sea_description(on, h.sea_k) : "dense attention";
    const std::string my_attention =
        ctx.sea.any() ? sea_description(ctx.sea.on, (uint32_t)ctx.sea.cfg.k) : "dense attention";
    if (h.attention != mine.attention ||
        (h.attention == 1 && (on != ctx.sea.on || h.sea_k != mine.sea_k || h.sea_K != mine.sea_K || h.sea_m != mine.sea_m))) {
        incompatible("saved by a context running " + saved_attention + "; this context runs " + my_attention +
                     " (the keys and values depend on it: use the same attention settings)");
    }
    if (h.kv_type != kKvF32 && h.kv_type != kKvF16) bad("unknown key/value type " + std::to_string(h.kv_type));
    if (h.n_tokens > hp.n_ctx_train) {
        bad("holds " + std::to_string(h.n_tokens) + " tokens, more than the model's " + std::to_string(hp.n_ctx_train) +
            " positions");
    }
    const size_t expected = blob_size(ctx, h.n_tokens, h.kv_type);
    if (size != expected) {
        bad((size < expected ? "truncated: " : "has trailing bytes: ") + std::to_string(size) + " bytes where " +
            std::to_string(h.n_tokens) + " tokens make " + std::to_string(expected));
    }
    if (!sum_ok()) bad("the checksum does not match: the data is corrupt");
    if (h.n_tokens > ctx.n_ctx) {
        throw Error(SEAOPT_ERR_CONTEXT_FULL, what + ": holds " + std::to_string(h.n_tokens) +
                                                 " tokens, more than this context's n_ctx = " + std::to_string(ctx.n_ctx));
    }
    r.p = src + kFixedHeader + padded4(hp.n_layer);
    std::vector<int32_t> tokens(h.n_tokens);
    r.bytes(tokens.data(), tokens.size() * 4);
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp.n_vocab) {
            bad("token " + std::to_string(i) + " has id " + std::to_string(tokens[i]) + ", outside the vocabulary");
        }
    }
    const uint8_t *kv = r.p;
    r.p += kv_section_bytes(hp, h.n_tokens, h.kv_type);
    std::vector<cpu::SeaDecodeState> states;
    if (h.n_tokens > 0 && ctx.sea.any()) {
        for (uint32_t l = 0; l < hp.n_layer; ++l) {
            if (!ctx.sea.on[l]) continue;
            cpu::SeaDecodeState st;
            st.reset(ctx.sea.cfg);
            st.n_tokens = h.n_tokens;
            for (std::vector<float> *v : {&st.perf_k_sum, &st.perf_kv_sum, &st.v_sum, &st.image_hist, &st.conv1_hist})
                get_floats(r, *v);
            states.push_back(std::move(st));
        }
    }

    // Checked: restore. The token list first (it may allocate), then the cache and states.
    std::vector<int32_t> &seq_tokens = ctx.seq_tokens.at(seq);
    seq_tokens.reserve(std::max<size_t>(seq_tokens.size(), tokens.size()));
    if (!ctx.cuda) {
        write_kv(ctx, seq, h.n_tokens, kv, h.kv_type);
        if (ctx.sea.any()) {
            size_t i = 0;
            for (uint32_t l = 0; l < hp.n_layer; ++l) {
                if (!ctx.sea.on[l]) continue;
                if (h.n_tokens > 0) {
                    ctx.sea.state(seq, l) = std::move(states[i++]);
                } else {
                    ctx.sea.state(seq, l).n_tokens = 0;
                }
            }
        }
    } else {
        try {
            write_kv(ctx, seq, h.n_tokens, kv, h.kv_type);
            size_t i = 0;
            for (uint32_t l = 0; h.n_tokens > 0 && l < hp.n_layer; ++l) {
                if (ctx.sea.any() && ctx.sea.on[l]) cuda_sea_state_upload(*ctx.cuda, seq, l, h.n_tokens, states[i++]);
            }
        } catch (const Error &e) {
            context_empty_sequence(ctx, seq);
            throw Error(e.code(), std::string(e.what()) + " (restoring sequence " + std::to_string(seq) +
                                      ": it was left empty)");
        } catch (...) {  // bad_alloc of a host staging buffer: as empty, whatever was copied already
            context_empty_sequence(ctx, seq);
            throw;
        }
    }
    seq_tokens.assign(tokens.begin(), tokens.end());
    ctx.seq_len[seq] = (int32_t)h.n_tokens;
}

void state_seq_save_file(Context &ctx, uint32_t seq, const std::string &path) {
    // Replacing something that is not a regular file (a device, a directory, a symlink's target) is not ours to do.
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
        throw_io("cannot write the state to '" + path + "': it exists and is not a regular file");
    }
    std::vector<uint8_t> blob(state_seq_size(ctx, seq));
    state_seq_write(ctx, seq, blob.data(), blob.size());
    // A temporary file of our own beside the target (two writers of one path do not share it), renamed onto it.
    std::string tmp = path + ".tmp.XXXXXX";
    const int fd = make_temporary_file(tmp);
    if (fd < 0) throw_io("cannot create a temporary file '" + tmp + "' for writing: " + std::strerror(errno));
    std::FILE *f = ::fdopen(fd, "wb");
    if (!f) {
        const std::string why = std::strerror(errno);
        ::close(fd);
        std::remove(tmp.c_str());
        throw_io("cannot write '" + tmp + "': " + why);
    }
    const bool written = std::fwrite(blob.data(), 1, blob.size(), f) == blob.size();
    const bool closed = std::fclose(f) == 0;
    if (!written || !closed) {
        std::remove(tmp.c_str());
        throw_io("cannot write the state of sequence " + std::to_string(seq) + " to '" + tmp + "' (disk full?)");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        throw_io("cannot rename '" + tmp + "' to '" + path + "': " + why);
    }
}

void state_seq_load_file(Context &ctx, uint32_t seq, const std::string &path) {
    // Mapped, not read: a file that is not a state is refused by its first bytes; one whose header does not fit this
    // context is read once (its checksum says whether it is corrupt or only another model's or setting's).
    const gguf::MappedFile file(path);  // throws SEAOPT_ERR_IO naming the path
    state_seq_read(ctx, seq, file.data(), file.size(), "'" + path + "'");
}

}  // namespace seaopt
