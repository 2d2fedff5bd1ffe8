// Parity with transformers 5's DeepseekV3MoE block (scripts/reference/hf5_deepseek_moe.py wrote
// the fixture): our MoE layer with group-limited sigmoid routing, the expert bias, the routed
// scaling factor and a shared expert, in fp64, on the block's own weights and inputs; the chosen
// experts exactly, the output, the input gradient and every weight gradient to 1e-5 relative (the
// reference computes its router in fp32, as transformers does, so that is its precision).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "kernels/copy.h"
#include "kernels/router.h"
#include "tests/support/compare.h"
#include "tests/support/run.h"
#include "trainer/interop/safetensors.h"
#include "trainer/model/ffn_layer.h"
#include "trainer/model/moe_layer.h"

namespace tmt {
namespace {

struct Fixture {
  SafetensorsFile file =
      SafetensorsFile::read(test::source_path("tests/fixtures/hf5/deepseek_moe/moe.safetensors"));
  int64_t meta(const std::string& key) const { return std::stoll(file.metadata.at(key)); }
  const StoredTensor& at(const std::string& name) const {
    const StoredTensor* t = file.find(name);
    TMT_CHECK(t != nullptr, "fixture has no {}", name);
    return *t;
  }
  std::vector<double> values(const std::string& name) const {
    const StoredTensor& t = at(name);
    std::vector<double> v(static_cast<size_t>(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = t.at(i);
    return v;
  }
};

void set(const Tensor& t, const std::vector<double>& v) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(v.size()));
  std::copy(v.begin(), v.end(), t.ptr<double>());
}

std::vector<double> get(const Tensor& t) {
  return std::vector<double>(t.ptr<const double>(), t.ptr<const double>() + t.numel());
}

// [F, D] gate and up rows stacked into our [2F, D] w13.
std::vector<double> stacked(const std::vector<double>& gate, const std::vector<double>& up) {
  std::vector<double> v = gate;
  v.insert(v.end(), up.begin(), up.end());
  return v;
}

TEST(DeepseekMoeParity, MatchesTransformers5) {
  const Fixture fx;
  const int64_t d = fx.meta("d_model"), f = fx.meta("expert_ffn_hidden"), e = fx.meta("n_experts"),
                k = fx.meta("top_k"), t = fx.meta("tokens");
  ModelConfig m;
  m.d_model = d;
  m.n_layers = 1;
  MoeConfig moe;
  moe.n_experts = e;
  moe.top_k = k;
  moe.expert_ffn_hidden = f;
  moe.n_shared_experts = fx.meta("n_shared_experts");
  moe.shared_expert_ffn_hidden = f;
  moe.score = RouterScore::kSigmoid;
  moe.aux_loss_coeff = 0.0;
  moe.n_groups = fx.meta("n_groups");
  moe.topk_groups = fx.meta("topk_groups");
  moe.routed_scaling_factor = std::stod(fx.file.metadata.at("routed_scaling_factor"));
  moe.bias_update_rate = 1e-3;  // the bias exists (the forward does not move it)
  m.moe = moe;
  LayerEnv env;
  env.model = &m;
  env.batch = 1;
  env.seq = t;
  env.dtype = DType::kF64;
  env.sp = SequenceParallel(nullptr, t);
  ParamStore store;
  MoeLayer layer(env, 0, store);
  FfnLayer shared(env, "layers.0.shared.", moe.n_shared_experts * f, store);
  store.allocate(Device::kCpu, DType::kF64, DType::kF64);
  const auto param = [&](const std::string& name) -> Param& {
    for (Param& p : store.all()) {
      if (p.spec.name == name) return p;
    }
    throw std::runtime_error("no parameter " + name);
  };
  set(param("layers.0.moe.router").value, fx.values("router"));
  set(param("layers.0.moe.expert_bias").value, fx.values("bias"));
  set(param("layers.0.moe.w13").value, fx.values("w13"));  // [E, 2F, D]: gate rows, then up
  set(param("layers.0.moe.w2").value, fx.values("w2"));
  set(param("layers.0.shared.w13").value,
      stacked(fx.values("shared_gate"), fx.values("shared_up")));
  set(param("layers.0.shared.w2").value, fx.values("shared_down"));

  Arena acts(Device::kCpu, 1 << 22, "acts"), scratch(Device::kCpu, 1 << 22, "scratch");
  layer.allocate(acts, scratch);
  shared.allocate(acts, scratch);
  const int64_t rows = layer.planned_received();
  ExpertRows expert_rows(Device::kCpu, {layer.kept_bytes(rows)}, layer.scratch_bytes(rows));
  layer.bind(expert_rows, 0);

  Arena io(Device::kCpu, 1 << 16, "io");
  const Tensor x = io.alloc(DType::kF64, {t, d}), y = io.alloc(DType::kF64, {t, d});
  const Tensor dy = io.alloc(DType::kF64, {t, d}), dx = io.alloc(DType::kF64, {t, d});
  set(x, fx.values("x"));
  set(dy, fx.values("dy"));
  store.zero_grads();
  shared.forward(y, x, /*accumulate=*/false);
  layer.forward(y, x, 1.0);
  layer.backward(dx, dy, x);  // written; the shared expert adds to it
  shared.backward(dx, dy, x, /*accumulate_dh=*/true);

  // The same experts (as sets: the reference's top-k is unsorted).
  Arena r(Device::kCpu, 1 << 16, "router");
  const Tensor logits = r.alloc(DType::kF64, {t, e}), probs = r.alloc(DType::kF64, {t, e});
  const Tensor idx = r.alloc(DType::kI32, {t, k}), w = r.alloc(DType::kF64, {t, k}),
               lse = r.alloc(DType::kF64, {t});
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t j = 0; j < e; ++j) {
      double s = 0;
      for (int64_t c = 0; c < d; ++c)
        s += x.ptr<double>()[i * d + c] *
             param("layers.0.moe.router").value.ptr<double>()[j * d + c];
      logits.ptr<double>()[i * e + j] = s;
    }
  }
  router_fwd(
      Context{}, probs, idx, w, lse, logits, param("layers.0.moe.expert_bias").value,
      {k, RouterScore::kSigmoid, true, moe.n_groups, moe.topk_groups, moe.routed_scaling_factor});
  const StoredTensor& want_idx = fx.at("topk_idx");
  for (int64_t i = 0; i < t; ++i) {
    std::vector<int32_t> got(idx.ptr<int32_t>() + i * k, idx.ptr<int32_t>() + (i + 1) * k);
    std::sort(got.begin(), got.end());
    for (int64_t c = 0; c < k; ++c)
      EXPECT_EQ(got[static_cast<size_t>(c)], static_cast<int32_t>(want_idx.at(i * k + c)))
          << "token " << i;
  }

  test::expect_close(get(y), fx.values("y"), 1e-5, "output");
  test::expect_close(get(dx), fx.values("dx"), 1e-5, "dx");
  test::expect_close(get(param("layers.0.moe.router").grad), fx.values("drouter"), 1e-5,
                     "router gradient");
  test::expect_close(get(param("layers.0.moe.w13").grad), fx.values("dw13"), 1e-5, "w13 gradient");
  test::expect_close(get(param("layers.0.moe.w2").grad), fx.values("dw2"), 1e-5, "w2 gradient");
  test::expect_close(get(param("layers.0.shared.w13").grad),
                     stacked(fx.values("dshared_gate"), fx.values("dshared_up")), 1e-5,
                     "shared w13 gradient");
  test::expect_close(get(param("layers.0.shared.w2").grad), fx.values("dshared_down"), 1e-5,
                     "shared w2 gradient");
  EXPECT_EQ(get(param("layers.0.moe.expert_bias").grad), std::vector<double>(e, 0.0))
      << "the bias takes no gradient";
}

}  // namespace
}  // namespace tmt
