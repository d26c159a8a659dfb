// Saving and restoring one sequence of a context (seaopt_state_seq_*): its tokens, its keys and values, and with SEA
// attention its decode states (sea.md §2.12), as one self-describing blob -- a prompt cache.
//
// The blob (little-endian; every field 4-byte aligned):
//   "SEAOPTSQ", u32 version (1),
//   u32 n_vocab, n_embd, n_layer, n_head, n_ctx_train, u64 the model's fingerprint (OptModel::fingerprint),
//   u32 attention (0 dense, 1 SEA), u32 sea k, K, m (0 for dense), u32 kv type (0 f32, 1 f16), u32 n_tokens,
//   n_layer bytes: 1 where the layer runs SEA, zero-padded to a multiple of 4,
//   i32 tokens[n_tokens],
//   keys and values: [layer][K, V][head][n_tokens][head_dim] in the kv type (the engine's own: f16 from the GPU,
//   f32 from the CPU; either engine reads either),
//   per SEA layer, in layer order, f32: S_k [H·m], S_kv [H·m·128], Σv [H·64], the image and conv1 rows of positions
//   n-4..n-1 [4][2H][K/4] each (row r in slot r % 4; slots before position 0 are zero) -- none when n_tokens is 0,
//   u64 a checksum of everything before it: FNV-1a steps (basis 0xcbf29ce484222325, prime 0x100000001b3) over the
//   8-byte little-endian words of each whole 32-byte block in four lanes (word j of a block in lane j), then one
//   more hash over the four lanes' values, the remaining whole words and the remaining bytes, in that order.
// Everything is checked before anything is restored: the size, the magic, the version, that the model has the
// same shape and fingerprint, that the context runs the same attention (kind, SEA layers, k), the checksum, the
// token ids, and that the tokens fit the context.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/context.h"

namespace seaopt {

// Bytes of sequence seq's state now.
size_t state_seq_size(const Context &ctx, uint32_t seq);

// Writes the state into dst[0, size); throws SEAOPT_ERR_BUFFER_TOO_SMALL (naming the size needed) if size is
// smaller than state_seq_size. Returns the bytes written.
size_t state_seq_write(Context &ctx, uint32_t seq, uint8_t *dst, size_t size);

// Replaces sequence seq with the saved one. `what` names the blob in messages (a file name, or "the state").
// A blob that fails a check leaves the sequence as it was; a device error while restoring leaves it empty.
void state_seq_read(Context &ctx, uint32_t seq, const uint8_t *src, size_t size, const std::string &what);

// The same through a file: written to a temporary file of its own beside path ("<path>.tmp.XXXXXX", mode 0600) and
// renamed onto path (a path that exists and is not a regular file is refused); read through a memory map.
void state_seq_save_file(Context &ctx, uint32_t seq, const std::string &path);
void state_seq_load_file(Context &ctx, uint32_t seq, const std::string &path);

}  // namespace seaopt
