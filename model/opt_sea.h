// The SEA estimator of a loaded model (GGUF blk.N.sea.*, model/opt_format.h) in the form the fp32 CPU
// reference takes (attention/sea_cpu.h: SeaConfig, SeaParams). One place maps the file's layout onto
// the reference's, so the engine and the tests agree on it.
#pragma once

#include <cstdint>

#include "attention/sea_cpu.h"
#include "model/opt_model.h"

namespace seaopt {

// The reference's config for a model with hp.has_sea (sea.md §1, §6):
//   n_head = opt.attention.head_count, head_dim = 64 (the only one SEA's shapes describe, §5.1),
//   k = `k` (0 = sea.k), K = sea.compressed_width, n_features = sea.random_features,
//   n_pos_table = sea.position_table_length,
//   n_pos_ctx = max(sea.position_table_length, opt.context_length): a table shorter than the model's
//   positions is stretched by "nearest" to cover them (§2.2, the authors' long-context runs), once per
//   model, so that every context of the model sees the same table rows.
// Throws SEAOPT_ERR_UNSUPPORTED for a SEA model the reference does not run (head_dim != 64, sea.hidden !=
// 128 = 2·64), SEAOPT_ERR_INVALID_ARGUMENT for a k out of the reference's range (sea_validate_config).
cpu::SeaConfig sea_config_for_model(const OptHparams &hp, uint32_t k = 0);

// The SeaParams of one layer, from the tensors the loader read (OptModel::sea[layer], fp32, each in
// PyTorch order = the reverse of its GGUF ne). Layouts, GGUF ne -> PyTorch shape -> SeaParams member
// (d = 64, d' = 128, m, K, P, H heads, G = 2H CNN channels, W = K/4):
//   sea.pos_table          {d, P}       -> (P, d)         pos_table      [n_pos_table, 64]   copied
//   sea.performer_proj     {d, m}       -> (m, d)         performer_proj [m, 64]             copied
//   sea.enc.weight/.bias   {3d, d'}     -> (d', 3d)       enc_w [128, 192], enc_b [128]     copied
//   sea.enc_norm.*         {d'}                           enc_norm_w/b                        copied
//   sea.dec_row.weight     {d', 2W}     -> (2W, d')       dec_row_w [K/2, 128], dec_row_b    copied
//   sea.cnn_norm_in.*      {W}                            cnn_norm1_w/b [K/4]                copied
//   sea.conv1.weight       {3, 3, G, G} -> (G, G, 3, 3)   conv1_w [G, G, 5, 3]: kernel rows 0..2 = the file's
//                                                         rows (already weight ⊙ weight_mask, §2.6), rows
//                                                         3..4 = 0; conv1_mask left empty = the stored mask
//                                                         (ones in rows 0..2, zeros in rows 3..4), so the
//                                                         effective kernel w ⊙ mask is the file's exactly
//   sea.conv2.weight       likewise                       conv2_w, conv2_mask = {}
//   sea.conv{1,2}.bias     {G}                            conv1_b, conv2_b                    copied
//   sea.conv4.weight       {G, H}       -> (H, G)         conv4_w [H, G, 1, 1] (same memory), conv4_mask = {}
//   sea.conv4.bias         {H}                            conv4_b                             copied
//   sea.cnn_norm_out.*     {K}                            cnn_norm2_w/b [K]                  copied
//   sea.scaler.weight/bias {d', 2}      -> (2, d')        scaler_w [2, 128] (row 0 s_prob, row 1 s_mix), scaler_b
// The result passes cpu::sea_validate(cfg, ·) for cfg = sea_config_for_model(hp).
cpu::SeaParams sea_params_from_model(const OptHparams &hp, const SeaLayerWeightsCpu &w);

}  // namespace seaopt
