#include "engine/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>

#include "engine/cuda/ops.h"  // the decode attention's scratch size (plain C++, no CUDA headers)
#include "engine/error.h"

namespace seaopt {

namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

bool lifetimes_intersect(const BufferRequest &a, const BufferRequest &b) {
    return a.first_step <= b.last_step && b.first_step <= a.last_step;
}

// Ranges [a, a + an) and [b, b + bn); empty ranges intersect nothing.
bool bytes_intersect(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
    return an > 0 && bn > 0 && a < b + bn && b < a + an;
}

// The smallest multiple of `alignment` >= x, or false on overflow.
bool align_up(uint64_t x, uint64_t alignment, uint64_t &out) {
    const uint64_t rem = x % alignment;
    if (rem == 0) {
        out = x;
        return true;
    }
    const uint64_t add = alignment - rem;
    if (x > kU64Max - add) return false;
    out = x + add;
    return true;
}

std::string steps_text(const BufferRequest &r) {
    return std::to_string(r.first_step) + ".." + std::to_string(r.last_step);
}

std::string describe(const PlannedBuffer &b) {
    return "'" + b.req.name + "' (" + std::to_string(b.req.bytes) + " bytes at offset " + std::to_string(b.offset) +
           ", steps " + steps_text(b.req) + ")";
}

// Placement order: largest first; ties by first_step, then name, then last_step.
bool placement_order(const BufferRequest &a, const BufferRequest &b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    if (a.first_step != b.first_step) return a.first_step < b.first_step;
    if (a.name != b.name) return a.name < b.name;
    return a.last_step < b.last_step;
}

double mib(uint64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

}  // namespace

MemoryPlan plan_memory(std::vector<BufferRequest> requests, uint64_t alignment) {
    if (alignment == 0) throw_invalid_argument("memory plan: the alignment must be at least 1");
    for (const BufferRequest &r : requests) {
        if (r.first_step > r.last_step) {
            throw_invalid_argument("memory plan: buffer '" + r.name + "' has first_step " +
                                   std::to_string(r.first_step) + " after last_step " + std::to_string(r.last_step));
        }
    }
    std::sort(requests.begin(), requests.end(), placement_order);

    MemoryPlan plan;
    plan.alignment = alignment;
    plan.buffers.reserve(requests.size());
    struct Range {
        uint64_t begin, end;
    };
    std::vector<Range> busy;
    for (BufferRequest &req : requests) {
        uint64_t offset = 0;
        if (req.bytes > 0) {
            // Byte ranges of the placed buffers alive at some step of this one, by offset.
            busy.clear();
            for (const PlannedBuffer &p : plan.buffers) {
                if (p.req.bytes > 0 && lifetimes_intersect(p.req, req))
                    busy.push_back({p.offset, p.offset + p.req.bytes});
            }
            std::sort(busy.begin(), busy.end(), [](const Range &a, const Range &b) {
                return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
            // Lowest aligned gap: walk the ranges in offset order, moving past each one that the
            // candidate [offset, offset + bytes) would touch.
            for (const Range &r : busy) {
                if (r.end <= offset) continue;                                  // entirely below the candidate
                if (r.begin >= offset && r.begin - offset >= req.bytes) break;  // the gap before r fits
                if (!align_up(r.end, alignment, offset)) {
                    throw_invalid_argument("memory plan: buffer '" + req.name + "' does not fit in 64-bit offsets");
                }
            }
            if (offset > kU64Max - req.bytes) {
                throw_invalid_argument("memory plan: buffer '" + req.name + "' does not fit in 64-bit offsets");
            }
            plan.arena_bytes = std::max(plan.arena_bytes, offset + req.bytes);
        }
        plan.buffers.push_back({std::move(req), offset});
    }
    return plan;
}

void verify_memory_plan(const MemoryPlan &plan) {
    auto fail = [](const std::string &what) { throw Error(SEAOPT_ERR_INTERNAL, "memory plan is invalid: " + what); };
    if (plan.alignment == 0) fail("alignment 0");
    for (const PlannedBuffer &b : plan.buffers) {
        if (b.req.first_step > b.req.last_step) fail(describe(b) + " has an empty lifetime");
        if (b.offset % plan.alignment != 0) {
            fail(describe(b) + " is not aligned to " + std::to_string(plan.alignment) + " bytes");
        }
        if (b.req.bytes > 0 && (b.offset > plan.arena_bytes || b.req.bytes > plan.arena_bytes - b.offset)) {
            fail(describe(b) + " ends past the arena of " + std::to_string(plan.arena_bytes) + " bytes");
        }
    }
    // Sweep by offset: a pair can collide only if its ranges overlap, so for each buffer only the
    // earlier buffers whose range reaches past its start need a lifetime check.
    std::vector<const PlannedBuffer *> by_offset;
    for (const PlannedBuffer &b : plan.buffers) {
        if (b.req.bytes > 0) by_offset.push_back(&b);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](const PlannedBuffer *a, const PlannedBuffer *b) {
        return a->offset != b->offset ? a->offset < b->offset : a->req.bytes < b->req.bytes;
    });
    std::vector<const PlannedBuffer *> open;  // ranges that may still reach the next start
    for (const PlannedBuffer *b : by_offset) {
        open.erase(std::remove_if(open.begin(), open.end(),
                                  [&](const PlannedBuffer *o) { return o->offset + o->req.bytes <= b->offset; }),
                   open.end());
        for (const PlannedBuffer *o : open) {
            if (lifetimes_intersect(o->req, b->req) &&
                bytes_intersect(o->offset, o->req.bytes, b->offset, b->req.bytes)) {
                fail(describe(*o) + " and " + describe(*b) + " are live at the same time and share bytes");
            }
        }
        open.push_back(b);
    }
}

uint64_t peak_live_bytes(const std::vector<BufferRequest> &requests) {
    // A buffer adds its bytes at first_step and removes them after last_step; at each step boundary
    // the removals are applied before the additions.
    std::map<int64_t, std::pair<uint64_t, uint64_t>> events;  // step -> (bytes added, bytes removed)
    for (const BufferRequest &r : requests) {
        if (r.bytes == 0 || r.first_step > r.last_step) continue;
        events[r.first_step].first += r.bytes;
        events[(int64_t)r.last_step + 1].second += r.bytes;
    }
    uint64_t live = 0, peak = 0;
    for (const auto &e : events) {
        live = live - e.second.second + e.second.first;
        peak = std::max(peak, live);
    }
    return peak;
}

uint64_t total_requested_bytes(const std::vector<BufferRequest> &requests) {
    uint64_t sum = 0;
    for (const BufferRequest &r : requests) sum += r.bytes;
    return sum;
}

std::string format_memory_plan(const MemoryPlan &plan, size_t max_rows) {
    std::vector<BufferRequest> requests;
    requests.reserve(plan.buffers.size());
    for (const PlannedBuffer &b : plan.buffers) requests.push_back(b.req);
    std::vector<const PlannedBuffer *> rows;
    for (const PlannedBuffer &b : plan.buffers) rows.push_back(&b);
    std::stable_sort(rows.begin(), rows.end(), [](const PlannedBuffer *a, const PlannedBuffer *b) {
        if (a->req.bytes != b->req.bytes) return a->req.bytes > b->req.bytes;
        return a->offset < b->offset;
    });

    std::string out;
    char line[256];
    std::snprintf(line, sizeof line,
                  "memory plan: arena %.2f MiB (%llu bytes); peak live %.2f MiB; %zu buffers totalling %.2f MiB; "
                  "alignment %llu\n",
                  mib(plan.arena_bytes), (unsigned long long)plan.arena_bytes, mib(peak_live_bytes(requests)),
                  plan.buffers.size(), mib(total_requested_bytes(requests)), (unsigned long long)plan.alignment);
    out += line;
    if (rows.empty()) return out;
    size_t name_width = 6;
    const size_t shown = std::min(max_rows, rows.size());
    for (size_t i = 0; i < shown; ++i) name_width = std::max(name_width, rows[i]->req.name.size());
    name_width = std::min<size_t>(name_width, 48);
    std::snprintf(line, sizeof line, "  %-*s %12s %14s  %s\n", (int)name_width, "buffer", "MiB", "offset", "steps");
    out += line;
    for (size_t i = 0; i < shown; ++i) {
        const PlannedBuffer &b = *rows[i];
        std::snprintf(line, sizeof line, "  %-*.*s %12.3f %14llu  %s\n", (int)name_width, 48, b.req.name.c_str(),
                      mib(b.req.bytes), (unsigned long long)b.offset, steps_text(b.req).c_str());
        out += line;
    }
    if (shown < rows.size()) {
        uint64_t rest = 0;
        for (size_t i = shown; i < rows.size(); ++i) rest += rows[i]->req.bytes;
        std::snprintf(line, sizeof line, "  ... %zu more buffers, %.3f MiB\n", rows.size() - shown, mib(rest));
        out += line;
    }
    return out;
}

std::vector<BufferRequest> opt_forward_buffers(const OptHparams &hp, uint32_t n_tokens, uint32_t n_outputs,
                                               uint64_t sea_scratch_bytes, uint64_t dequant_scratch_bytes) {
    if (n_tokens == 0) throw_invalid_argument("memory plan: a batch needs at least one token");
    if (n_outputs > n_tokens) {
        throw_invalid_argument("memory plan: " + std::to_string(n_outputs) + " outputs for a batch of " +
                               std::to_string(n_tokens) + " tokens");
    }
    const uint64_t T = n_tokens, N = n_outputs, C = hp.n_embd, D = hp.n_embd_proj, F = hp.n_ff, V = hp.n_vocab;
    constexpr uint64_t f16 = 2, f32 = 4, i32 = 4, tile = 16;

    // Op indices (see the header).
    const int upload = 0, embed = 1;
    const int L = kOptStepLayer0;
    const int attn_ln = L + 0, qkv_gemm = L + 1, attention = L + 2, out_proj = L + 3, ffn_ln = L + 4, fc1 = L + 5,
              fc2 = L + 6;
    const int layers_end = fc2;
    const int head_gather = L + kOptStepsPerLayer;
    const int head_norm = head_gather + 1;
    const int project_out = head_norm + 1;  // only with a projection
    const int lm_head = hp.has_proj() ? project_out + 1 : project_out;
    const int copy_out = lm_head + 1;

    std::vector<BufferRequest> b;
    // Batch metadata.
    b.push_back({"ids", i32 * T, upload, embed});
    b.push_back({"positions", i32 * T, upload, layers_end});
    b.push_back({"seq_ids", i32 * T, upload, layers_end});
    b.push_back({"tiles", tile * T, upload, layers_end});
    // Indices of every token that may want logits (all T): the head then runs in chunks of N rows.
    // The head runs in chunks, each gathering from x by output_rows after the previous chunk's logits
    // were written: both must outlive the whole head.
    b.push_back({"output_rows", i32 * T, upload, copy_out});
    // The target token of each output row, for the fused loss (seaopt_decode_nll); read at the
    // loss step after the lm_head GEMM, so it lives to the end.
    b.push_back({"targets", i32 * T, upload, copy_out});
    // Embedding and the residual stream.
    b.push_back({"x", f32 * T * C, embed, copy_out});
    if (hp.has_proj()) b.push_back({"embd_proj_in", f16 * T * D, embed, embed});
    // One layer period.
    if (hp.pre_ln) {
        // Two LayerNorm outputs: the attention block's (read by the QKV GEMM) and the ffn block's
        // (read by FC1); neither is live during the attention op, so its scratch may take the bytes.
        b.push_back({"h16", f16 * T * C, attn_ln, qkv_gemm});
        b.push_back({"h16_ffn", f16 * T * C, ffn_ln, fc1});
    } else {
        // Post-LN: LN2 of the previous layer writes h16 for this layer's QKV, LN1 writes it for FC1.
        b.push_back({"h16", f16 * T * C, attn_ln, layers_end});
    }
    b.push_back({"qkv", f16 * T * 3 * C, qkv_gemm, attention});
    b.push_back({"attn", f16 * T * C, attention, out_proj});
    // The decode attention's split-K partial states (engine/cuda/ops.h), used within the attention
    // op only; 0 bytes once the batch is too large to split (it never is then).
    const uint64_t partials =
        cuda::attention_decode_partials_bytes((int)std::min<uint64_t>(T, 1u << 20), (int)hp.n_head, (int)hp.head_dim());
    if (partials > 0) b.push_back({"attn_partials", partials, attention, attention});
    if (sea_scratch_bytes > 0) {
        b.push_back({"sea_scratch", sea_scratch_bytes, attention, attention});
        b.push_back({"sea_rows", i32 * 3 * T, upload, layers_end});
    }
    b.push_back({"ff", f16 * T * F, fc1, fc2});
    if (dequant_scratch_bytes > 0) b.push_back({"dequant_w16", dequant_scratch_bytes, qkv_gemm, fc2});
    // Head.
    // With a final LayerNorm the GEMM after it reads head_x itself (cuda::gemm_*_layernorm fuses the
    // LayerNorm into it for decode batches): head_x lives to that GEMM, never sharing bytes with
    // its output.
    const int head_x_last = !hp.has_output_norm() ? head_norm : hp.has_proj() ? project_out : lm_head;
    b.push_back({"head_x", f32 * N * C, head_gather, head_x_last});
    b.push_back({"head16", f16 * N * C, head_norm, hp.has_proj() ? project_out : lm_head});
    if (hp.has_proj()) b.push_back({"head_proj16", f16 * N * D, project_out, lm_head});
    b.push_back({"logits", f32 * N * V, lm_head, copy_out});
    // The fused loss: one NLL per output row, written chunk by chunk from logits and targets, then
    // copied out once after the last chunk (a copy per chunk would stall the host between chunks).
    b.push_back({"nll", f32 * T, head_gather, copy_out});
    return b;
}

}  // namespace seaopt
