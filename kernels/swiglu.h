// swiglu: the gated activation of a SwiGLU feed-forward block, on the fused gate|up projection.
//
//   gu[t, :] = [gate(F) | up(F)],  silu(g) = g * sigmoid(g)
//   fwd: h[t, f]     = silu(gate[t, f]) * up[t, f]
//   bwd: with g = gate[t, f],
//        dgate[t, f] = dh[t, f] * up[t, f] * sigmoid(g) * (1 + g * (1 - sigmoid(g)))
//        dup[t, f]   = dh[t, f] * silu(g)
//        dgu[t, :]   = [dgate | dup]
//
//   gu, dgu: [T, 2F] f32|f64
//   h, dh:   [T, F]  same dtype
//   CUDA: f32|bf16, computed in fp32.
// Written: h (fwd), dgu (bwd). dgu may alias gu (each element pair is read before it is written).
#pragma once

#include "kernels/base/context.h"

namespace tmt {

void swiglu_fwd(const Context& ctx, const Tensor& h, const Tensor& gu);
void swiglu_bwd(const Context& ctx, const Tensor& dgu, const Tensor& dh, const Tensor& gu);

}  // namespace tmt
