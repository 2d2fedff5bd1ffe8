// rope: rotary position embedding, "rotate-half" convention (Hugging Face Llama / Mixtral): within
// a head, element i is paired with element i + Dh/2, and pair i turns by angle pos * inv_freq[i].
//
// Tables (rope_tables), for p in [0, S_max) and i in [0, Dh/2):
//   cos[p, i] = m * cos(p * inv_freq[i]),   sin[p, i] = m * sin(p * inv_freq[i])
// with base frequencies f[i] = theta^(-2i / Dh) and
//   scaling none: inv_freq[i] = f[i], m = 1 (factor and the yarn fields are ignored)
//   scaling yarn (YaRN, Peng et al. 2023; as HF `_compute_yarn_parameters`), s = factor,
//   L = original_max_seq_len:
//     dim(r)    = Dh * ln(L / (2 pi r)) / (2 ln theta)   the pair index that turns r times over L
//     low       = max(floor(dim(beta_fast)), 0),  high = min(ceil(dim(beta_slow)), Dh - 1)
//                 (high += 0.001 when low == high)
//     ramp[i]   = clamp((i - low) / (high - low), 0, 1)
//     inv_freq[i] = f[i] * (1 - ramp[i]) + (f[i] / s) * ramp[i]
//                 so fast pairs (i <= low) keep f[i] (extrapolation) and slow pairs (i >= high)
//                 get f[i] / s (interpolation)
//     m         = mscale * (0.1 ln s + 1)  if s > 1, else mscale  (the attention factor, folded
//                 into cos and sin so that q.k is scaled by m^2)
//   To get HF's attention factor for a config with mscale/mscale_all_dim, pass
//   mscale = get_mscale(s, mscale) / get_mscale(s, mscale_all_dim) / (0.1 ln s + 1).
//
// Forward, per token t at position p = positions[t], head h, pair i (x1 = in[.., i],
// x2 = in[.., i + Dh/2], c = cos[p, i], sn = sin[p, i]):
//   out[.., i]        = x1 * c - x2 * sn
//   out[.., i + Dh/2] = x2 * c + x1 * sn
// Backward: din = R^T dout, the transpose of that 2x2 map (not its inverse: with m != 1 R is not
// orthogonal):
//   din[.., i]        =  dy1 * c + dy2 * sn
//   din[.., i + Dh/2] = -dy1 * sn + dy2 * c
//
//   in, out, dout, din: [T, Hx, Dh] f32|f64 (Hx = H for queries, Hk for keys), Dh even
//   positions:          [T] i32, each in [0, S_max)
//   cos, sin:           [S_max, Dh/2] same dtype as in
//   CUDA: in, out, tables f32|bf16, computed in fp32; bf16 in/out may use f32 tables. The tables
//   kernel takes Dh <= 512. A position outside the tables is fatal (the kernel traps).
// Written: cos, sin, out, din. out may alias in; din may alias dout.
#pragma once

#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

enum class RopeScalingType : uint8_t { kNone, kYarn };

struct RopeParams {
  int64_t head_dim = 0;    // Dh, even
  double theta = 10000.0;  // base of the frequencies
  RopeScalingType scaling = RopeScalingType::kNone;
  double factor = 1.0;               // yarn: s, the context extension factor (> 0)
  int64_t original_max_seq_len = 0;  // yarn: L, the context the model was pretrained with
  double beta_fast = 32.0;           // yarn: rotations over L above which a pair extrapolates
  double beta_slow = 1.0;            // yarn: rotations over L below which a pair interpolates
  double mscale = 1.0;               // multiplier of the attention factor m
};

void rope_tables(const Context& ctx, const Tensor& cos, const Tensor& sin,
                 const RopeParams& params);

void rope_fwd(const Context& ctx, const Tensor& out, const Tensor& in, const Tensor& positions,
              const Tensor& cos, const Tensor& sin);
void rope_bwd(const Context& ctx, const Tensor& din, const Tensor& dout, const Tensor& positions,
              const Tensor& cos, const Tensor& sin);

}  // namespace tmt
