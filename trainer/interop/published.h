// Published model formats and how their tensors map onto tramontane's parameters.
//
// Hugging Face (a directory with config.json and model.safetensors, or model-0000i-of-0000N
// shards listed in model.safetensors.index.json):
//   MixtralForCausalLM   model.embed_tokens.weight                    -> embedding
//                        model.layers.L.input_layernorm.weight        -> layers.L.attn.norm
//                        model.layers.L.self_attn.{q,k,v,o}_proj.weight -> layers.L.attn.w{q,k,v,o}
//                        model.layers.L.post_attention_layernorm.weight -> layers.L.ffn_norm
//                        model.layers.L.block_sparse_moe.gate.weight  -> layers.L.moe.router
//                        ....block_sparse_moe.experts.X.w1.weight     -> layers.L.moe.w13[X, 0]
//                        ....block_sparse_moe.experts.X.w3.weight     -> layers.L.moe.w13[X, 1]
//                        ....block_sparse_moe.experts.X.w2.weight     -> layers.L.moe.w2[X]
//                        model.norm.weight -> final_norm;  lm_head.weight -> head (absent if tied)
//   MistralForCausalLM   the same, with the dense FFN model.layers.L.mlp.{gate,up,down}_proj.weight
//                        -> layers.L.ffn.w13[0], w13[1], w2
//   Ministral3ForCausalLM  Mistral's tensor names; its config's rope_parameters hold YaRN and
//                        llama_4_scaling_beta (Llama 4's query scaling, from
//                        original_max_position_embeddings)
//   DeepseekV3ForCausalLM, Mistral4ForCausalLM  (model.attention: mla; transformers 5)
//                        ....self_attn.q_a_proj, q_a_layernorm, q_b_proj (or q_proj without the
//                        query latent) -> layers.L.attn.wq_a, q_a_norm, wq_b (wq)
//                        ....self_attn.kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj
//                        -> layers.L.attn.wkv_a, kv_a_norm, wkv_b, wo
//                        ....mlp.{gate,up,down}_proj (the first first_k_dense_replace layers)
//                        -> layers.L.ffn.w13[0], w13[1], w2
//                        ....mlp.gate.weight -> layers.L.moe.router; DeepSeek-V3's
//                        ....mlp.gate.e_score_correction_bias -> layers.L.moe.expert_bias
//                        DeepSeek-V3: ....mlp.experts.X.{gate,up,down}_proj.weight (as its
//                        save_pretrained writes them) -> layers.L.moe.w13[X, 0], w13[X, 1], w2[X];
//                        Mistral 4: the fused ....mlp.experts.gate_up_proj [E, 2F, D] (gate rows
//                        first) -> layers.L.moe.w13 [E, 2, F, D] and ....mlp.experts.down_proj -> w2
//                        ....mlp.shared_experts.{gate,up,down}_proj.weight -> layers.L.shared.*
//                        Config: q_lora_rank null -> 0; n_shared_experts × moe_intermediate_size
//                        -> shared experts; first_k_dense_replace -> first_dense_layers with
//                        intermediate_size; n_group, topk_group, routed_scaling_factor;
//                        rope_interleave -> model.rope_interleaved (transformers' interleaved RoPE
//                        rotates pairs (2i, 2i+1) of q and k alike and emits them de-interleaved,
//                        so q·k is tramontane's with no row permutation); Mistral 4's
//                        partial_rotary_factor = qk_rope / (qk_nope + qk_rope) is MLA's rope part.
//                        Refused: norm_topk_prob false, attention_bias, num_key_value_heads !=
//                        num_attention_heads, rms_norm_eps != 1e-6 (transformers' latent norms
//                        always take 1e-6). Not modelled: transformers' embedding gives the
//                        pad_token_id row no gradient (Mistral 4's 11); tramontane trains it.
//                        The imported recipe has no auxiliary loss; DeepSeek-V3's has
//                        bias_update_rate 0.001 (the bias must exist to be kept) and
//                        seq_aux_loss_coeff 0.0001, the paper's values.
// RoPE settings (config.json -> model.rope_theta, model.rope_scaling.*): transformers 5's
// rope_parameters {rope_type, rope_theta, factor, original_max_position_embeddings, beta_fast,
// beta_slow, mscale, mscale_all_dim, attention_factor, truncate, llama_4_scaling_beta} or
// transformers 4's rope_scaling (the same keys, rope_theta at the top level); rope types default
// and yarn, read with transformers' defaults (beta_fast 32, beta_slow 1, a factor of
// max_position_embeddings / original_max_position_embeddings when absent; mscale kept only with
// mscale_all_dim, as transformers computes the attention factor). Export writes rope_scaling for
// Mistral and Mixtral with YaRN, rope_parameters for Ministral3ForCausalLM (any model with
// model.rope_scaling.llama_4_beta > 0).
// Both use RoPE on rotate-half pairs (i, i + Dh/2), as tramontane does: no tensor changes.
//
// Mistral's own format (params.json and consolidated*.safetensors): tok_embeddings, norm, output,
// layers.L.attention.w{q,k,v,o}, layers.L.attention_norm, layers.L.ffn_norm,
// layers.L.feed_forward.w{1,2,3} (dense) or layers.L.feed_forward.gate and
// layers.L.feed_forward.experts.X.w{1,2,3} (MoE), each ".weight". Its RoPE rotates interleaved pairs
// (2i, 2i + 1), so the rows of wq and wk are permuted within each head on the way in: row 2i -> i,
// row 2i + 1 -> i + Dh/2.
//
// Mistral Large 3 in that format (params.json with qk_nope_head_dim: the latent attention, its
// keys read as vLLM's Mistral config adapter reads them, see read_mistral_mla in published.cpp):
// layers.L.attention.{wq_a, q_a_norm, wq_b (or wq), wkv_a_with_mqa, kv_a_norm, wkv_b, wo},
// layers.L.feed_forward.w{1,2,3} (the first first_k_dense_replace layers), layers.L.gate,
// layers.L.experts.X.w{1,2,3}, layers.L.shared_experts.w{1,2,3}, each ".weight", taken as they are
// with rope_interleaved (the layout DeepSeek-V3's interleaved RoPE reads). FP8 checkpoints
// (params.json quantization.qformat_weight fp8_e4m3): a F8_E4M3 weight is multiplied by its
// "<name>.qscale_weight" (BF16, F16 or F32), one value for the tensor or one per
// weight_block_size block (default 128 x 128; the blocks at the bottom and right edges cut
// short), dequantized to f32 on import; ".qscale_act" tensors (activation scales) are ignored.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/base/dtype.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

enum class PublishedFormat : uint8_t { kHuggingFace, kMistral };

struct PublishedConfig {
  PublishedFormat format = PublishedFormat::kHuggingFace;
  std::string architecture;    // "MixtralForCausalLM", "MistralForCausalLM", "Mistral params.json"
  std::filesystem::path file;  // the config.json or params.json read
  ModelConfig model;
  // Mistral's FP8 checkpoints (params.json quantization.qformat_weight fp8_e4m3): e4m3 weights,
  // each with its .qscale_weight, dequantized on import (see tensor_mappings' comment).
  bool fp8 = false;
  std::vector<int64_t> fp8_block = {128, 128};  // quantization.weight_block_size
};

// The name of an FP8 weight's scale: Hugging Face's "<weight>_scale_inv" (quantization_config
// quant_method fp8, as DeepSeek-V3 publishes), Mistral's "<name>.qscale_weight". Either multiplies
// the e4m3 values, one per block of fp8_block (or one for the tensor).
std::string fp8_scale_name(PublishedFormat format, const std::string& weight);

// Reads dir/config.json (Hugging Face) or dir/params.json (Mistral). Throws InputError naming the
// file and key: an unsupported architecture, a missing or bad key, a feature tramontane does not
// model (an activation other than silu, a rope type other than default and yarn, partial rotary).
PublishedConfig read_published_config(const std::filesystem::path& dir);

// One published tensor and the block of a tramontane parameter it fills: `shape` at `offset` (the
// parameter's leading dimensions take size 1 there).
struct TensorMapping {
  std::string param;              // tramontane's name, e.g. "layers.3.moe.w13"
  std::string published;          // the format's name
  std::vector<int64_t> shape;     // the published tensor's shape
  std::vector<int64_t> offset;    // where it starts in the parameter (one entry per dimension)
  int64_t interleaved_heads = 0;  // > 0: rows of that many heads with interleaved RoPE pairs
  // The block's shape in the parameter's dimensions when the tensor holds it reshaped (the same
  // values in the same order: Mistral 4's fused experts [E, 2F, D] fill w13 [E, 2, F, D]); empty:
  // `shape`, the parameter's leading dimensions of size 1.
  std::vector<int64_t> block;

  const std::vector<int64_t>& param_block() const { return block.empty() ? shape : block; }
};

// Whether `export --dtype fp8` writes this tensor in e4m3 with 128 x 128 block scales: the
// linears' and experts' weights; the embedding, the head, the norms and the router stay bf16 (as
// in DeepSeek-V3's FP8 checkpoints).
bool fp8_exported(const TensorMapping& m);

// Every published tensor of model `m` in `format`, in the order the format lists them.
std::vector<TensorMapping> tensor_mappings(const ModelConfig& m, PublishedFormat format);

// Tensors a published file may hold that are not weights (rotary caches), ignored on import.
bool is_ignorable_tensor(const std::string& name);

// The Hugging Face config.json of a tramontane model, with torch_dtype `dtype`: an MLA model as
// DeepseekV3ForCausalLM (sigmoid routing, which needs the expert bias) or Mistral4ForCausalLM
// (softmax routing, no bias). Throws InputError (naming the recipe key) when no Hugging Face class
// holds the model: for GQA, shared experts, dense layers among MoE layers, sigmoid routing,
// interleaved or partial RoPE, Llama 4 scaling with MoE or with a length other than YaRN's; for
// MLA, no MoE, dense layers other than the first ones, a sliding window, Llama 4 scaling with
// DeepSeek-V3.
nlohmann::json hf_config(const ModelConfig& m, DType dtype);

// Reorders the rows of a [heads · Dh, cols] f32 matrix from interleaved RoPE pairs to rotate-half
// pairs (Mistral's format -> tramontane's), in place.
void deinterleave_rotary_rows(float* values, int64_t heads, int64_t head_dim, int64_t cols);

}  // namespace tmt
