// attention through cuDNN's fused scaled-dot-product attention (kernels/cuda/cudnn_attention.cpp):
// cudnn_frontend graphs with an sdpa node (forward, its Stats output as our lse) and an
// sdpa_backward node, bf16 inputs and outputs, fp32 compute, fp32 softmax statistics. Same
// formulas, shapes and outputs (written, not accumulated) as kernels/attention.h, Dqk ≠ Dv and
// GQA included; kernels/cuda/attention.cu calls it first for bf16 and falls back to the flash and
// fp32 kernels for the shapes cuDNN refuses.
//
// cuDNN sees our [B, S, H, D] tensors as its logical [B, H, S, D] with strides
// {S·H·D, D, H·D, 1}; lse [B, H, S] is its Stats [B, H, S, 1] (natural-log logsumexp of the scaled
// scores, max + log Σ exp, always fp32). The mask is cuDNN's diagonal band, aligned top-left
// (bottom-right when the queries are the last S of Sk keys): right bound 0 (key j <= query i)
// and, for a window W < Sk, left bound W (kept iff j + W > i).
//
// One graph per (device, pass, B, S, Sk, H, Hk, Dqk, Dv, window, scale), built and finalized on first
// use (validate, build_operation_graph, create_execution_plans with heuristics A, check_support,
// build_plans) and kept for the process in a host-side cache that owns it. A shape cuDNN refuses is
// remembered with cuDNN's reason, logged once (log_warn) when first refused. Building needs the
// GPU, so every function here does.
//
// The backward runs cuDNN's default (non-deterministic) algorithm: dq may be summed in a different
// order from one call to the next.
#pragma once

#include <string>

#include "kernels/attention.h"

namespace tmt::cuda {

enum class AttentionPass { kForward, kBackward };

// Whether cuDNN takes `pass` of attention at this shape on the current device: bf16, and a graph
// that validates, builds and has an execution plan the device supports. The first ask for a shape
// builds its graph (tens to hundreds of ms); on a refusal *why (when given) gets cuDNN's reason.
bool cudnn_attention_supported(AttentionPass pass, const AttentionShape& shape,
                               const AttentionParams& params, std::string* why = nullptr);

// The bytes of Context::workspace the graph for this shape and pass takes (building it if need be);
// 0 where cuDNN refuses the shape.
size_t cudnn_attention_workspace_bytes(AttentionPass pass, const AttentionShape& shape,
                                       const AttentionParams& params);

// Arguments as attention_fwd / attention_bwd in kernels/attention.h, already validated there, bf16
// with lse f32, every data pointer 16-byte aligned. Each takes cudnn_attention_workspace_bytes of
// its pass from Context::workspace and runs on ctx.stream. Fatal, with cuDNN's reason, for a shape
// cuDNN refuses (ask cudnn_attention_supported first) and when the execution fails.
void cudnn_attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                         const Tensor& k, const Tensor& v, const AttentionParams& params);
void cudnn_attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                         const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& out, const Tensor& lse, const AttentionParams& params);

}  // namespace tmt::cuda
