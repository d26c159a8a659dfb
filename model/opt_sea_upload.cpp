// See opt_sea_upload.h.
#include "model/opt_sea_upload.h"

#include <cstring>

#include "attention/sea_layout.h"
#include "engine/error.h"
#include "engine/memory_plan.h"

namespace seaopt {

SeaParamsImage pack_sea_params(const cpu::SeaConfig &cfg, const std::vector<cpu::SeaParams> &params,
                               const std::vector<uint8_t> &on) {
    if (on.size() != params.size()) throw Error(SEAOPT_ERR_INTERNAL, "pack_sea_params: one flag per layer is needed");
    SeaParamsImage u;
    u.offsets.resize(on.size());
    SequentialPlacer placer;
    const std::vector<cpu::SeaTensorSpec> specs = cpu::sea_tensor_specs(cfg);
    const uint64_t weight_frag_bytes = cuda::sea_weight_fragments(cfg).total;
    const uint64_t conv_frag_bytes = 2 * (uint64_t)cuda::sea_conv_fragment_bytes(cfg);
    for (size_t l = 0; l < on.size(); ++l) {
        if (!on[l]) continue;
        SeaParamOffsets &o = u.offsets[l];
        for (const cpu::SeaTensorSpec &t : specs) {
            const std::vector<float> &v = params[l].*(t.member);
            if (v.empty()) continue;  // an optional weight mask left out: the stored mask
            o.tensors.emplace_back(t.member, placer.place(v.size() * sizeof(float)));
        }
        o.weight_frags = placer.place(weight_frag_bytes);
        o.has_conv_frags = conv_frag_bytes > 0;
        if (o.has_conv_frags) o.conv_frags = placer.place(conv_frag_bytes);
    }
    u.image.assign(placer.total, 0);
    for (size_t l = 0; l < on.size(); ++l) {
        if (!on[l]) continue;
        const SeaParamOffsets &o = u.offsets[l];
        for (const auto &[member, off] : o.tensors) {
            const std::vector<float> &v = params[l].*member;
            std::memcpy(u.image.data() + off, v.data(), v.size() * sizeof(float));
        }
        cuda::sea_pack_weight_fragments(cfg, params[l], u.image.data() + o.weight_frags);
        if (o.has_conv_frags) cuda::sea_pack_conv_fragments(cfg, params[l], u.image.data() + o.conv_frags);
    }
    return u;
}

cuda::SeaDeviceParams sea_device_params(const char *base, const SeaParamOffsets &offs) {
    auto at = [&](std::vector<float> cpu::SeaParams::*member) -> const float * {
        for (const auto &[m, off] : offs.tensors) {
            if (m == member) return reinterpret_cast<const float *>(base + off);
        }
        return nullptr;
    };
    cuda::SeaDeviceParams p;
    p.pos_table = at(&cpu::SeaParams::pos_table);
    p.performer_proj = at(&cpu::SeaParams::performer_proj);
    p.enc_w = at(&cpu::SeaParams::enc_w);
    p.enc_b = at(&cpu::SeaParams::enc_b);
    p.enc_norm_w = at(&cpu::SeaParams::enc_norm_w);
    p.enc_norm_b = at(&cpu::SeaParams::enc_norm_b);
    p.dec_row_w = at(&cpu::SeaParams::dec_row_w);
    p.dec_row_b = at(&cpu::SeaParams::dec_row_b);
    p.cnn_norm1_w = at(&cpu::SeaParams::cnn_norm1_w);
    p.cnn_norm1_b = at(&cpu::SeaParams::cnn_norm1_b);
    p.conv1_w = at(&cpu::SeaParams::conv1_w);
    p.conv1_mask = at(&cpu::SeaParams::conv1_mask);
    p.conv1_b = at(&cpu::SeaParams::conv1_b);
    p.conv2_w = at(&cpu::SeaParams::conv2_w);
    p.conv2_mask = at(&cpu::SeaParams::conv2_mask);
    p.conv2_b = at(&cpu::SeaParams::conv2_b);
    p.conv4_w = at(&cpu::SeaParams::conv4_w);
    p.conv4_mask = at(&cpu::SeaParams::conv4_mask);
    p.conv4_b = at(&cpu::SeaParams::conv4_b);
    p.cnn_norm2_w = at(&cpu::SeaParams::cnn_norm2_w);
    p.cnn_norm2_b = at(&cpu::SeaParams::cnn_norm2_b);
    p.scaler_w = at(&cpu::SeaParams::scaler_w);
    p.scaler_b = at(&cpu::SeaParams::scaler_b);
    p.weight_frags = base + offs.weight_frags;
    p.conv_frags = offs.has_conv_frags ? base + offs.conv_frags : nullptr;
    return p;
}

}  // namespace seaopt
