// Parsing and checking a recipe: YAML -> overrides -> typed sections -> per-key ranges.
#include "trainer/recipe/recipe.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "trainer/recipe/embedded.h"
#include "trainer/recipe/reader.h"

namespace tmt {

using recipe_detail::Section;
using recipe_detail::Sources;

namespace {

const std::vector<std::string> kSections = {"model", "parallel",   "data", "optimizer", "schedule",
                                            "train", "checkpoint", "log",  "run"};

// Applies `key.path=value` to the tree; records the flag as the origin of the key.
void apply_override(YAML::Node& root, const std::string& flag, Sources& sources) {
  const std::string shown = "--set " + flag;
  const size_t eq = flag.find('=');
  if (eq == std::string::npos) input_error("{}: expected key.path=value", shown);
  const std::string path = flag.substr(0, eq);
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  if (path.empty() || path.back() == '.' ||
      std::find(parts.begin(), parts.end(), "") != parts.end()) {
    input_error("{}: '{}' is not a key path like section.key", shown, path);
  }
  if (parts.size() < 2) {
    const std::string near = recipe_detail::nearest_key(parts[0], kSections);
    if (std::find(kSections.begin(), kSections.end(), parts[0]) == kSections.end()) {
      input_error("{}: {}: unknown section{}", shown, parts[0],
                  near.empty() ? "" : fmt::format(" (did you mean {}?)", near));
    }
    input_error("{}: {} is a section; set one of its keys, e.g. {}.<key>=value", shown, path, path);
  }
  YAML::Node value;
  try {
    value = YAML::Load(flag.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    input_error("{}: {}: the value is not valid YAML: {}", shown, path, e.msg);
  }
  YAML::Node node = root;
  std::string prefix;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    prefix += (i ? "." : "") + parts[i];
    YAML::Node child = node[parts[i]];
    if (!child.IsDefined() || child.IsNull()) {
      node[parts[i]] = YAML::Node(YAML::NodeType::Map);
      child = node[parts[i]];
    } else if (!child.IsMap()) {
      input_error("{}: {} is a value, not a section", shown, prefix);
    }
    node.reset(child);
  }
  node[parts.back()] = value;
  sources.overrides[path] = shown;
}

YAML::Node parse_yaml(const std::string& text, const std::string& source) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    input_error("{}:{}:{}: YAML syntax error: {}", source, e.mark.line + 1, e.mark.column + 1,
                e.msg);
  } catch (const YAML::Exception& e) {
    input_error("{}: YAML error: {}", source, e.msg);
  }
}

RopeScaling read_rope_scaling(Section s) {
  RopeScaling r;
  r.type = s.choice("type", "none", {"none", "yarn"});
  r.factor = s.number("factor", 1.0);
  r.original_max_seq_len = s.integer("original_max_seq_len", 0);
  r.beta_fast = s.number("beta_fast", 32.0);
  r.beta_slow = s.number("beta_slow", 1.0);
  r.mscale = s.number("mscale", 1.0);
  if (r.type == "yarn") {
    if (!(r.factor > 1.0))
      s.fail("factor", fmt::format("yarn needs a factor > 1, got {}", r.factor));
    if (r.original_max_seq_len <= 0)
      s.fail("original_max_seq_len", "yarn needs the original context length (> 0)");
    if (!(r.beta_fast > r.beta_slow && r.beta_slow > 0)) {
      s.fail("beta_fast", fmt::format("needs beta_fast > beta_slow > 0, got {} and {}", r.beta_fast,
                                      r.beta_slow));
    }
    if (!(r.mscale > 0)) s.fail("mscale", "must be > 0");
  }
  return r;
}

MoeConfig read_moe(Section s, int64_t n_layers) {
  MoeConfig e;
  e.n_experts = s.integer("n_experts", std::nullopt);
  e.top_k = s.integer("top_k", std::nullopt);
  e.expert_ffn_hidden = s.integer("expert_ffn_hidden", std::nullopt);
  e.n_shared_experts = s.integer("n_shared_experts", 0);
  e.shared_expert_ffn_hidden = s.integer("shared_expert_ffn_hidden", e.expert_ffn_hidden);
  e.first_dense_layers = s.integer("first_dense_layers", 0);
  e.layer_pattern = s.texts("layer_pattern");
  e.score = s.choice("score", "softmax", {"softmax", "sigmoid"});
  e.aux_loss_coeff = s.number("aux_loss_coeff", 0.01);
  e.z_loss_coeff = s.number("z_loss_coeff", 0.0);
  e.capacity_factor = s.optional_number("capacity_factor");
  if (e.n_experts < 1) s.fail("n_experts", fmt::format("must be >= 1, got {}", e.n_experts));
  if (e.top_k < 1 || e.top_k > e.n_experts) {
    s.fail("top_k", fmt::format("must be in [1, n_experts = {}], got {}", e.n_experts, e.top_k));
  }
  if (e.expert_ffn_hidden < 1)
    s.fail("expert_ffn_hidden", fmt::format("must be >= 1, got {}", e.expert_ffn_hidden));
  if (e.n_shared_experts < 0)
    s.fail("n_shared_experts", fmt::format("must be >= 0, got {}", e.n_shared_experts));
  if (e.shared_expert_ffn_hidden < 1) {
    s.fail("shared_expert_ffn_hidden",
           fmt::format("must be >= 1, got {}", e.shared_expert_ffn_hidden));
  }
  if (e.first_dense_layers < 0 || e.first_dense_layers > n_layers) {
    s.fail("first_dense_layers", fmt::format("must be in [0, model.n_layers = {}], got {}",
                                             n_layers, e.first_dense_layers));
  }
  if (!e.layer_pattern.empty()) {
    if (static_cast<int64_t>(e.layer_pattern.size()) != n_layers) {
      s.fail("layer_pattern", fmt::format("has {} entries for model.n_layers = {}",
                                          e.layer_pattern.size(), n_layers));
    }
    for (const auto& p : e.layer_pattern) {
      if (p != "dense" && p != "moe")
        s.fail("layer_pattern", fmt::format("'{}' is neither dense nor moe", p));
    }
    if (s.has("first_dense_layers") && !s.is_null("first_dense_layers"))
      s.fail("layer_pattern", "give either layer_pattern or first_dense_layers, not both");
  }
  if (e.aux_loss_coeff < 0) s.fail("aux_loss_coeff", "must be >= 0");
  if (e.z_loss_coeff < 0) s.fail("z_loss_coeff", "must be >= 0");
  if (e.capacity_factor && !(*e.capacity_factor > 0)) {
    s.fail("capacity_factor",
           fmt::format("must be > 0 (or null for dropless), got {}", *e.capacity_factor));
  }
  return e;
}

void positive(Section& s, const std::string& key, int64_t v) {
  if (v < 1) s.fail(key, fmt::format("must be >= 1, got {}", v));
}

ModelConfig read_model(Section s, int64_t seq_len) {
  ModelConfig m;
  m.vocab_size = s.integer("vocab_size", std::nullopt);
  m.d_model = s.integer("d_model", std::nullopt);
  m.n_layers = s.integer("n_layers", std::nullopt);
  m.n_heads = s.integer("n_heads", std::nullopt);
  positive(s, "vocab_size", m.vocab_size);
  positive(s, "d_model", m.d_model);
  positive(s, "n_layers", m.n_layers);
  positive(s, "n_heads", m.n_heads);
  m.n_kv_heads = s.integer("n_kv_heads", m.n_heads);
  positive(s, "n_kv_heads", m.n_kv_heads);
  if (m.n_heads % m.n_kv_heads != 0) {
    s.fail("n_kv_heads",
           fmt::format("{} does not divide model.n_heads = {}", m.n_kv_heads, m.n_heads));
  }
  if (!s.has("head_dim") && m.d_model % m.n_heads != 0) {
    s.fail("n_heads", fmt::format("{} does not divide model.d_model = {}; give model.head_dim",
                                  m.n_heads, m.d_model));
  }
  m.head_dim = s.integer("head_dim", m.d_model / m.n_heads);
  positive(s, "head_dim", m.head_dim);
  if (m.head_dim % 2 != 0)
    s.fail("head_dim", fmt::format("must be even for RoPE, got {}", m.head_dim));
  m.norm_eps = s.number("norm_eps", 1e-5);
  if (!(m.norm_eps > 0)) s.fail("norm_eps", fmt::format("must be > 0, got {}", m.norm_eps));
  m.max_seq_len = s.integer("max_seq_len", seq_len);
  positive(s, "max_seq_len", m.max_seq_len);
  m.rope_theta = s.number("rope_theta", 10000.0);
  if (!(m.rope_theta > 0)) s.fail("rope_theta", fmt::format("must be > 0, got {}", m.rope_theta));
  m.rope_scaling =
      read_rope_scaling(s.section("rope_scaling", {"type", "factor", "original_max_seq_len",
                                                   "beta_fast", "beta_slow", "mscale"}));
  m.sliding_window = s.optional_integer("sliding_window");
  if (m.sliding_window && *m.sliding_window < 1) {
    s.fail("sliding_window",
           fmt::format("must be >= 1 (or null for full attention), got {}", *m.sliding_window));
  }
  m.tie_embeddings = s.boolean("tie_embeddings", false);
  m.init_std = s.number("init_std", 0.02);
  if (!(m.init_std > 0)) s.fail("init_std", fmt::format("must be > 0, got {}", m.init_std));
  if (s.has("moe") && !s.is_null("moe")) {
    m.moe = read_moe(
        s.section("moe", {"n_experts", "top_k", "expert_ffn_hidden", "n_shared_experts",
                          "shared_expert_ffn_hidden", "first_dense_layers", "layer_pattern",
                          "score", "aux_loss_coeff", "z_loss_coeff", "capacity_factor"}),
        m.n_layers);
  }
  bool any_dense = !m.moe;
  for (int64_t l = 0; l < m.n_layers; ++l) any_dense = any_dense || !m.is_moe_layer(l);
  m.ffn_hidden = s.integer("ffn_hidden", any_dense ? std::nullopt : std::optional<int64_t>(0));
  if (any_dense) positive(s, "ffn_hidden", m.ffn_hidden);
  return m;
}

}  // namespace

bool ModelConfig::is_moe_layer(int64_t i) const {
  if (!moe) return false;
  if (!moe->layer_pattern.empty()) return moe->layer_pattern[static_cast<size_t>(i)] == "moe";
  return i >= moe->first_dense_layers;
}

std::string Recipe::origin_of(const std::string& key) const {
  for (std::string k = key;;) {
    if (auto it = origins.find(k); it != origins.end()) return it->second;
    const size_t dot = k.rfind('.');
    if (dot == std::string::npos) return source;
    k = k.substr(0, dot);
  }
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty())
    return parse_recipe(std::string(embedded_default_recipe()), std::string(kEmbeddedRecipeName),
                        overrides);
  std::ifstream in(path);
  if (!in) input_error("{}: cannot read the recipe: {}", path, std::strerror(errno));
  if (std::filesystem::is_directory(path))
    input_error("{}: is a directory, not a recipe file", path);
  std::stringstream text;
  text << in.rdbuf();
  return parse_recipe(text.str(), path, overrides);
}

Recipe parse_recipe(const std::string& text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  Recipe r;
  r.source = source;
  Sources sources;
  sources.file = source;
  sources.origins = &r.origins;
  YAML::Node root = parse_yaml(text, source);
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap())
    input_error("{}:1:1: a recipe is a mapping of sections ({})", source,
                fmt::join(kSections, ", "));
  for (const auto& flag : overrides) apply_override(root, flag, sources);

  Section top(sources, "", root, YAML::Mark(), kSections);
  // data.seq_len first: model.max_seq_len defaults to it.
  Section data = top.section("data", {"source", "paths", "val_paths", "seq_len", "synthetic"});
  r.data.seq_len = data.integer("seq_len", std::nullopt);
  positive(data, "seq_len", r.data.seq_len);
  if (!top.has("model")) top.fail("model", "required section is missing");
  r.model = read_model(
      top.section("model", {"vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads",
                            "head_dim", "ffn_hidden", "norm_eps", "max_seq_len", "rope_theta",
                            "rope_scaling", "sliding_window", "tie_embeddings", "init_std", "moe"}),
      r.data.seq_len);
  if (r.data.seq_len > r.model.max_seq_len) {
    data.fail("seq_len", fmt::format("{} is longer than model.max_seq_len = {}", r.data.seq_len,
                                     r.model.max_seq_len));
  }
  r.data.source = data.choice("source", "synthetic", {"synthetic", "shards"});
  r.data.paths = data.texts("paths");
  r.data.val_paths = data.texts("val_paths");
  Section syn = data.section("synthetic", {"branching", "concentration", "seed"});
  r.data.synthetic.branching = syn.integer("branching", 4);
  r.data.synthetic.concentration = syn.number("concentration", 1.0);
  r.data.synthetic.seed = static_cast<uint64_t>(syn.integer("seed", 1234));
  if (r.data.source == "shards") {
    if (r.data.paths.empty()) data.fail("paths", "data.source is shards but no paths are given");
    for (const auto* list : {&r.data.paths, &r.data.val_paths}) {
      for (const auto& p : *list) {
        if (!std::filesystem::exists(p)) {
          data.fail(list == &r.data.paths ? "paths" : "val_paths",
                    fmt::format("'{}' does not exist", p));
        }
      }
    }
  } else {
    if (r.data.synthetic.branching < 1 || r.data.synthetic.branching > r.model.vocab_size) {
      syn.fail("branching", fmt::format("must be in [1, model.vocab_size = {}], got {}",
                                        r.model.vocab_size, r.data.synthetic.branching));
    }
    if (!(r.data.synthetic.concentration > 0)) syn.fail("concentration", "must be > 0");
  }

  Section par = top.section("parallel", {"tp", "pp", "dp", "ep", "etp", "sequence_parallel",
                                         "zero1", "pp_layers", "comm"});
  ParallelConfig& p = r.parallel;
  p.tp = par.integer("tp", 1);
  p.pp = par.integer("pp", 1);
  p.ep = par.integer("ep", 1);
  p.etp = par.integer("etp", 1);
  p.dp = par.integer("dp", 0);
  for (const char* k : {"tp", "pp", "ep", "etp"}) positive(par, k, par.integer(k, 1));
  if (par.has("dp")) positive(par, "dp", p.dp);
  p.sequence_parallel = par.boolean("sequence_parallel", p.tp > 1);
  p.zero1 = par.boolean("zero1", false);
  p.pp_layers = par.integers("pp_layers");
  p.comm = par.choice("comm", "auto", {"auto", "nccl", "mpi"});

  Section opt =
      top.section("optimizer", {"lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip"});
  OptimizerConfig& o = r.optimizer;
  o.lr = opt.number("lr", 3e-4);
  o.beta1 = opt.number("beta1", 0.9);
  o.beta2 = opt.number("beta2", 0.95);
  o.eps = opt.number("eps", 1e-8);
  o.weight_decay = opt.number("weight_decay", 0.1);
  o.grad_clip = opt.number("grad_clip", 1.0);
  if (!(o.lr > 0)) opt.fail("lr", fmt::format("must be > 0, got {}", o.lr));
  if (!(o.beta1 > 0 && o.beta1 < 1))
    opt.fail("beta1", fmt::format("must be in (0, 1), got {}", o.beta1));
  if (!(o.beta2 > 0 && o.beta2 < 1))
    opt.fail("beta2", fmt::format("must be in (0, 1), got {}", o.beta2));
  if (!(o.eps > 0)) opt.fail("eps", fmt::format("must be > 0, got {}", o.eps));
  if (o.weight_decay < 0)
    opt.fail("weight_decay", fmt::format("must be >= 0, got {}", o.weight_decay));
  if (o.grad_clip < 0)
    opt.fail("grad_clip", fmt::format("must be >= 0 (0 = off), got {}", o.grad_clip));

  Section tr = top.section("train", {"steps", "global_batch", "micro_batch", "seed", "dtype",
                                     "device", "max_skipped_steps"});
  if (!top.has("train"))
    top.fail("train", "required section is missing (train.steps, train.global_batch)");
  TrainConfig& t = r.train;
  t.steps = tr.integer("steps", std::nullopt);
  positive(tr, "steps", t.steps);
  t.global_batch = tr.integer("global_batch", std::nullopt);
  positive(tr, "global_batch", t.global_batch);
  t.micro_batch = tr.integer("micro_batch", 1);
  positive(tr, "micro_batch", t.micro_batch);
  if (t.global_batch % t.micro_batch != 0) {
    tr.fail("global_batch", fmt::format("{} is not divisible by train.micro_batch = {}",
                                        t.global_batch, t.micro_batch));
  }
  const int64_t seed = tr.integer("seed", 0);
  if (seed < 0) tr.fail("seed", fmt::format("must be >= 0, got {}", seed));
  t.seed = static_cast<uint64_t>(seed);
  t.dtype = tr.choice("dtype", "fp32", {"fp32", "bf16"});
  t.device = tr.choice("device", "cpu", {"cpu", "cuda"});
  if (p.comm == "nccl" && t.device != "cuda")
    par.fail("comm", "nccl needs train.device: cuda (the CPU backend communicates over MPI)");
  if (t.dtype == "bf16" && t.device != "cuda") {
    tr.fail("dtype",
            "bf16 (mixed precision) needs train.device: cuda; the CPU backend trains in "
            "fp32");
  }
  t.max_skipped_steps = tr.integer("max_skipped_steps", 5);
  if (t.max_skipped_steps < 0) tr.fail("max_skipped_steps", "must be >= 0");

  Section sch = top.section("schedule", {"warmup_steps", "decay", "min_lr", "wsd_decay_fraction"});
  ScheduleConfig& sc = r.schedule;
  sc.warmup_steps = sch.integer("warmup_steps", 0);
  if (sc.warmup_steps < 0 || sc.warmup_steps > t.steps) {
    sch.fail("warmup_steps",
             fmt::format("must be in [0, train.steps = {}], got {}", t.steps, sc.warmup_steps));
  }
  sc.decay = sch.choice("decay", "cosine", {"cosine", "linear", "wsd", "constant"});
  sc.min_lr = sch.number("min_lr", 0.0);
  if (sc.min_lr < 0 || sc.min_lr > o.lr) {
    sch.fail("min_lr", fmt::format("must be in [0, optimizer.lr = {}], got {}", o.lr, sc.min_lr));
  }
  sc.wsd_decay_fraction = sch.number("wsd_decay_fraction", 0.2);
  if (!(sc.wsd_decay_fraction > 0 && sc.wsd_decay_fraction <= 1)) {
    sch.fail("wsd_decay_fraction", fmt::format("must be in (0, 1], got {}", sc.wsd_decay_fraction));
  }

  Section ck = top.section("checkpoint", {"every", "keep", "resume"});
  r.checkpoint.every = ck.integer("every", 0);
  if (r.checkpoint.every < 0) ck.fail("every", "must be >= 0 (0 = only at the end)");
  r.checkpoint.keep = ck.integer("keep", 2);
  positive(ck, "keep", r.checkpoint.keep);
  r.checkpoint.resume = ck.boolean("resume", true);

  Section lg = top.section("log", {"every", "eval_every", "eval_batches", "tensorboard"});
  r.log.every = lg.integer("every", 1);
  positive(lg, "every", r.log.every);
  r.log.eval_every = lg.integer("eval_every", 0);
  if (r.log.eval_every < 0) lg.fail("eval_every", "must be >= 0 (0 = no validation)");
  r.log.eval_batches = lg.integer("eval_batches", 4);
  positive(lg, "eval_batches", r.log.eval_batches);
  r.log.tensorboard = lg.boolean("tensorboard", false);

  Section run = top.section("run", {"dir", "name"});
  r.run.dir = run.text("dir", "runs/default");
  r.run.name = run.text("name", "default");
  if (r.run.dir.empty()) run.fail("dir", "must not be empty");
  return r;
}

}  // namespace tmt
