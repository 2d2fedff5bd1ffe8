// A recipe written back as YAML, every key with its resolved value (run.dir/recipe.resolved.yaml).
#include <fmt/format.h>

#include <sstream>

#include "trainer/recipe/recipe.h"

namespace tmt {
namespace {

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string number(double v) {
  return fmt::format("{}", v);
}  // shortest form that reads back exactly

template <class T>
std::string list(const std::vector<T>& items) {
  std::vector<std::string> parts;
  for (const auto& x : items) {
    if constexpr (std::is_same_v<T, std::string>) {
      parts.push_back(quoted(x));
    } else {
      parts.push_back(fmt::format("{}", x));
    }
  }
  return fmt::format("[{}]", fmt::join(parts, ", "));
}

template <class T>
std::string or_null(const std::optional<T>& v) {
  return v ? fmt::format("{}", *v) : "null";
}

}  // namespace

std::string to_yaml(const Recipe& r) {
  std::ostringstream y;
  const ModelConfig& m = r.model;
  y << "model:\n";
  y << fmt::format(
      "  vocab_size: {}\n  d_model: {}\n  n_layers: {}\n  n_heads: {}\n  n_kv_heads: {}\n",
      m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.n_kv_heads);
  y << fmt::format(
      "  head_dim: {}\n  ffn_hidden: {}\n  norm_eps: {}\n  max_seq_len: {}\n  rope_theta: {}\n",
      m.head_dim, m.ffn_hidden, number(m.norm_eps), m.max_seq_len, number(m.rope_theta));
  const RopeScaling& rs = m.rope_scaling;
  y << fmt::format(
      "  rope_scaling:\n    type: {}\n    factor: {}\n    original_max_seq_len: {}\n    beta_fast: "
      "{}\n"
      "    beta_slow: {}\n    mscale: {}\n",
      rs.type, number(rs.factor), rs.original_max_seq_len, number(rs.beta_fast),
      number(rs.beta_slow), number(rs.mscale));
  y << fmt::format("  sliding_window: {}\n  tie_embeddings: {}\n  init_std: {}\n",
                   or_null(m.sliding_window), m.tie_embeddings, number(m.init_std));
  if (!m.moe) {
    y << "  moe: null\n";
  } else {
    const MoeConfig& e = *m.moe;
    y << fmt::format(
        "  moe:\n    n_experts: {}\n    top_k: {}\n    expert_ffn_hidden: {}\n    "
        "n_shared_experts: {}\n",
        e.n_experts, e.top_k, e.expert_ffn_hidden, e.n_shared_experts);
    y << fmt::format("    shared_expert_ffn_hidden: {}\n", e.shared_expert_ffn_hidden);
    if (e.layer_pattern.empty()) {
      y << fmt::format("    first_dense_layers: {}\n", e.first_dense_layers);
    } else {
      y << fmt::format("    layer_pattern: {}\n", list(e.layer_pattern));
    }
    y << fmt::format(
        "    score: {}\n    aux_loss_coeff: {}\n    z_loss_coeff: {}\n    capacity_factor: {}\n",
        e.score, number(e.aux_loss_coeff), number(e.z_loss_coeff), or_null(e.capacity_factor));
  }
  const ParallelConfig& p = r.parallel;
  y << fmt::format("parallel:\n  tp: {}\n  pp: {}\n", p.tp, p.pp);
  if (p.dp > 0) y << fmt::format("  dp: {}\n", p.dp);
  y << fmt::format("  ep: {}\n  etp: {}\n  sequence_parallel: {}\n  zero1: {}\n", p.ep, p.etp,
                   p.sequence_parallel, p.zero1);
  if (!p.pp_layers.empty()) y << fmt::format("  pp_layers: {}\n", list(p.pp_layers));
  y << fmt::format("  comm: {}\n", p.comm);
  const DataConfig& d = r.data;
  y << fmt::format("data:\n  source: {}\n  paths: {}\n  val_paths: {}\n  seq_len: {}\n", d.source,
                   list(d.paths), list(d.val_paths), d.seq_len);
  y << fmt::format("  synthetic:\n    branching: {}\n    concentration: {}\n    seed: {}\n",
                   d.synthetic.branching, number(d.synthetic.concentration), d.synthetic.seed);
  const OptimizerConfig& o = r.optimizer;
  y << fmt::format(
      "optimizer:\n  lr: {}\n  beta1: {}\n  beta2: {}\n  eps: {}\n  weight_decay: {}\n  grad_clip: "
      "{}\n",
      number(o.lr), number(o.beta1), number(o.beta2), number(o.eps), number(o.weight_decay),
      number(o.grad_clip));
  const ScheduleConfig& s = r.schedule;
  y << fmt::format(
      "schedule:\n  warmup_steps: {}\n  decay: {}\n  min_lr: {}\n  wsd_decay_fraction: {}\n",
      s.warmup_steps, s.decay, number(s.min_lr), number(s.wsd_decay_fraction));
  const TrainConfig& t = r.train;
  y << fmt::format(
      "train:\n  steps: {}\n  global_batch: {}\n  micro_batch: {}\n  seed: {}\n  dtype: {}\n  "
      "device: {}\n"
      "  max_skipped_steps: {}\n",
      t.steps, t.global_batch, t.micro_batch, t.seed, t.dtype, t.device, t.max_skipped_steps);
  y << fmt::format("checkpoint:\n  every: {}\n  keep: {}\n  resume: {}\n", r.checkpoint.every,
                   r.checkpoint.keep, r.checkpoint.resume);
  y << fmt::format("log:\n  every: {}\n  eval_every: {}\n  eval_batches: {}\n  tensorboard: {}\n",
                   r.log.every, r.log.eval_every, r.log.eval_batches, r.log.tensorboard);
  y << fmt::format("run:\n  dir: {}\n  name: {}\n", quoted(r.run.dir), quoted(r.run.name));
  return y.str();
}

}  // namespace tmt
