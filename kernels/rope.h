// rope: rotary position embedding, with the variants published models use: the pairs either
// "rotate-half" (Hugging Face Llama / Mistral: element i with i + Dr/2) or interleaved (GPT-J,
// Mistral's own format: 2i with 2i + 1); all of a head's Dh dims or only its first Dr (partial
// rotary, the rest pass through); plain frequencies or YaRN; and a per-position scale of the
// whole head (Llama 4's attention scaling of the queries).
//
// Tables (rope_tables), for p in [0, S_max) and pair i in [0, Dr/2), Dr = rotary_dim:
//   cos[p, i] = m * cos(p * inv_freq[i]),   sin[p, i] = m * sin(p * inv_freq[i])
// with base frequencies f[i] = theta^(-2i / Dr) and
//   scaling none: inv_freq[i] = f[i], m = 1 (factor and the yarn fields are ignored)
//   scaling yarn (YaRN, Peng et al. 2023; as transformers 5's `_compute_yarn_parameters`),
//   s = factor, L = original_max_seq_len:
//     dim(r)    = Dr * ln(L / (2 pi r)) / (2 ln theta)   the pair index that turns r times over L
//     low       = max(floor(dim(beta_fast)), 0),  high = min(ceil(dim(beta_slow)), Dr - 1)
//                 (without floor and ceil when truncate is false; high += 0.001 when low == high)
//     ramp[i]   = clamp((i - low) / (high - low), 0, 1)
//     inv_freq[i] = f[i] * (1 - ramp[i]) + (f[i] / s) * ramp[i]
//                 so fast pairs (i <= low) keep f[i] (extrapolation) and slow pairs (i >= high)
//                 get f[i] / s (interpolation)
//     m         = the attention factor, folded into cos and sin so that q.k is scaled by m^2:
//                 attention_factor                            if given (> 0), else
//                 g(s, mscale) / g(s, mscale_all_dim)         if both are given (> 0), else
//                 g(s, 1),     where g(s, a) = 0.1 a ln s + 1 for s > 1, and 1 for s <= 1
//                 (transformers' rule: mscale without mscale_all_dim does nothing)
//
// Position scale (rope_position_scale), Llama 4's attention temperature, beta and L' =
// original_max_seq_len:  scale[p] = 1 + beta * ln(1 + floor(p / L'))
//
// Forward, per token t at position p = positions[t], head h, with g = scale[p] (1 without a
// scale), pair i = elements (a, b): (i, i + Dr/2) rotate-half, (2i, 2i + 1) interleaved,
// c = cos[p, i], sn = sin[p, i]:
//   out[.., a] = g * (x_a * c - x_b * sn)
//   out[.., b] = g * (x_b * c + x_a * sn)
//   out[.., j] = g * x_j          for j in [Dr, Dh) (partial rotary: these dims pass through)
// Backward: din = g R^T dout, the transpose of that map (not its inverse: with m != 1 R is not
// orthogonal):
//   din[.., a] = g * ( dy_a * c + dy_b * sn)
//   din[.., b] = g * (-dy_a * sn + dy_b * c),   din[.., j] = g * dy_j for j >= Dr
// Interleaved and rotate-half give the same q.k once the rows of Wq and Wk are permuted within
// each head (2i -> i, 2i + 1 -> i + Dr/2): the layout is the weights' convention, not a new model.
//
//   in, out, dout, din: [T, Hx, Dh] f32|f64 (Hx = H for queries, Hk for keys), Dr even, Dr <= Dh
//   positions:          [T] i32, each in [0, S_max)
//   cos, sin:           [S_max, Dr/2] same dtype as in (their width gives Dr)
//   scale:              [S_max] the tables' dtype, or undefined (no scale)
//   CUDA: in, out, tables f32|bf16, computed in fp32; bf16 in/out may use f32 tables. The tables
//   kernel takes Dr <= 512. A position outside the tables is fatal (the kernel traps).
// Written: cos, sin, scale, out, din. out may alias in; din may alias dout.
#pragma once

#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

enum class RopeScalingType : uint8_t { kNone, kYarn };
enum class RopeLayout : uint8_t { kHalf, kInterleaved };

struct RopeParams {
  int64_t head_dim = 0;    // Dh
  int64_t rotary_dim = 0;  // Dr, even, <= Dh: the dims that rotate; 0 = Dh
  double theta = 10000.0;  // base of the frequencies
  RopeScalingType scaling = RopeScalingType::kNone;
  double factor = 1.0;               // yarn: s, the context extension factor (> 0)
  int64_t original_max_seq_len = 0;  // yarn: L, the context the model was pretrained with
  double beta_fast = 32.0;           // yarn: rotations over L above which a pair extrapolates
  double beta_slow = 1.0;            // yarn: rotations over L below which a pair interpolates
  double mscale = 0.0;               // yarn: transformers' mscale; 0 = not given
  double mscale_all_dim = 0.0;       // yarn: transformers' mscale_all_dim; 0 = not given
  double attention_factor = 0.0;     // yarn: m itself; 0 = from factor and the mscales
  bool truncate = true;              // yarn: floor/ceil the ramp's ends

  int64_t rotated() const { return rotary_dim > 0 ? rotary_dim : head_dim; }
};

// How the tables are applied to one tensor of heads.
struct RopeApply {
  RopeLayout layout = RopeLayout::kHalf;
  Tensor scale = {};  // [S_max] per-position factor of the whole head; undefined = 1
};

void rope_tables(const Context& ctx, const Tensor& cos, const Tensor& sin,
                 const RopeParams& params);
// scale[p] = 1 + beta * ln(1 + floor(p / original_max_seq_len)); scale: [S_max] f32|f64 (cpu),
// f32|bf16 (cuda). beta >= 0, original_max_seq_len > 0.
void rope_position_scale(const Context& ctx, const Tensor& scale, double beta,
                         int64_t original_max_seq_len);

void rope_fwd(const Context& ctx, const Tensor& out, const Tensor& in, const Tensor& positions,
              const Tensor& cos, const Tensor& sin, const RopeApply& how = {});
void rope_bwd(const Context& ctx, const Tensor& din, const Tensor& dout, const Tensor& positions,
              const Tensor& cos, const Tensor& sin, const RopeApply& how = {});

}  // namespace tmt
