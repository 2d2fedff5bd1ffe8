// attention through cuDNN's fused SDPA (contract in kernels/cuda/cudnn_attention.h). Host C++ only:
// cudnn_frontend is a header-only graph API over the cuDNN backend, which owns the kernels.
#include "kernels/cuda/cudnn_attention.h"

#include <cudnn.h>
// Without the frontend's JSON serialisation (graph caching by key, dumps), which nothing here uses.
#define CUDNN_FRONTEND_SKIP_JSON_LIB
#include <cudnn_frontend.h>

#include <bit>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kernels/base/log.h"
#include "kernels/base/workspace.h"
#include "kernels/cuda/check.cuh"

namespace tmt::cuda {
namespace {

namespace fe = cudnn_frontend;
using fe::graph::Tensor_attributes;

// The tensors' uids in the graphs and the variant packs.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

// What a graph depends on: the device it was built for, the pass and every size and parameter.
struct PlanKey {
  int device = 0;
  AttentionPass pass = AttentionPass::kForward;
  int64_t b = 0, s = 0, sk = 0, h = 0, hk = 0, dqk = 0, dv = 0;  // sk >= s: queries last
  int64_t window = 0;       // 0, or 1 .. Sk - 1 (a window of Sk or more is full causal attention)
  uint32_t scale_bits = 0;  // the float softmax scale cuDNN is given, bit for bit
  bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    size_t h = std::hash<int>{}(k.device);
    const auto mix = [&h](uint64_t v) {
      h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2);
    };
    for (const int64_t v :
         {static_cast<int64_t>(k.pass), k.b, k.s, k.sk, k.h, k.hk, k.dqk, k.dv, k.window}) {
      mix(static_cast<uint64_t>(v));
    }
    mix(k.scale_bits);
    return h;
  }
};

// A built graph, or why there is none.
struct Plan {
  std::unique_ptr<fe::graph::Graph> graph;  // null: cuDNN refused the shape
  std::string refusal;
  int64_t workspace = 0;  // bytes
};

// Logical [B, heads, S, D] over our [B, S, heads, D] rows.
std::vector<int64_t> bshd_strides(int64_t s, int64_t heads, int64_t d) {
  return {s * heads * d, d, heads * d, 1};
}

std::shared_ptr<Tensor_attributes> input(fe::graph::Graph& g, const char* name, Uid uid, int64_t b,
                                         int64_t s, int64_t heads, int64_t d) {
  return g.tensor(Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim({b, heads, s, d})
                      .set_stride(bshd_strides(s, heads, d)));
}

void set_output(const std::shared_ptr<Tensor_attributes>& t, Uid uid, int64_t b, int64_t s,
                int64_t heads, int64_t d) {
  t->set_output(true).set_uid(uid).set_dim({b, heads, s, d}).set_stride(bshd_strides(s, heads, d));
}

// lse [B, H, S] f32 as cuDNN's Stats [B, H, S, 1].
void set_stats(const std::shared_ptr<Tensor_attributes>& t, const PlanKey& key) {
  t->set_uid(kStats)
      .set_data_type(fe::DataType_t::FLOAT)
      .set_dim({key.b, key.h, key.s, 1})
      .set_stride({key.h * key.s, key.s, 1, 1});
}

// The causal band (key j <= query i's position) and, with a window, its left edge (j > the
// position - window), both relative to the diagonal through query i's position: top-left when
// there are as many queries as keys (query i is key i), bottom-right when the queries are the
// last S of Sk positions (query i is key i + Sk - S).
template <class Attributes>
void set_mask(Attributes& a, const PlanKey& key) {
  a.set_diagonal_alignment(key.sk == key.s ? fe::DiagonalAlignment_t::TOP_LEFT
                                           : fe::DiagonalAlignment_t::BOTTOM_RIGHT)
      .set_diagonal_band_right_bound(0);
  if (key.window > 0) a.set_diagonal_band_left_bound(static_cast<int>(key.window));
}

std::unique_ptr<fe::graph::Graph> make_graph(const PlanKey& key) {
  const int64_t b = key.b, s = key.s, sk = key.sk, h = key.h, hk = key.hk, dqk = key.dqk,
                dv = key.dv;
  auto g = std::make_unique<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  const auto q = input(*g, "q", kQ, b, s, h, dqk);
  const auto k = input(*g, "k", kK, b, sk, hk, dqk);
  const auto v = input(*g, "v", kV, b, sk, hk, dv);
  const float scale = std::bit_cast<float>(key.scale_bits);
  if (key.pass == AttentionPass::kForward) {
    auto a = fe::graph::SDPA_attributes().set_name("attention_fwd").set_generate_stats(true);
    a.set_attn_scale(scale);
    set_mask(a, key);
    const auto [out, stats] = g->sdpa(q, k, v, a);
    set_output(out, kO, b, s, h, dv);
    stats->set_output(true);
    set_stats(stats, key);
  } else {
    const auto out = input(*g, "out", kO, b, s, h, dv);
    const auto dout = input(*g, "dout", kDO, b, s, h, dv);
    const auto stats = g->tensor(Tensor_attributes().set_name("lse"));
    set_stats(stats, key);
    auto a = fe::graph::SDPA_backward_attributes().set_name("attention_bwd");
    a.set_attn_scale(scale);
    set_mask(a, key);
    const auto [dq, dk, dv_] = g->sdpa_backward(q, k, v, out, dout, stats, a);
    set_output(dq, kDQ, b, s, h, dqk);
    set_output(dk, kDK, b, sk, hk, dqk);
    set_output(dv_, kDV, b, sk, hk, dv);
  }
  return g;
}

std::string key_str(const PlanKey& k) {
  return fmt::format("{} B {} S {} Sk {} H {} Hk {} Dqk {} Dv {} window {}",
                     k.pass == AttentionPass::kForward ? "forward" : "backward", k.b, k.s, k.sk,
                     k.h, k.hk, k.dqk, k.dv, k.window);
}

// The handles (one a device) and the plans, for the process; graphs are destroyed before the
// handles they were built with.
class Cache {
 public:
  Cache() = default;
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;
  ~Cache() {
    plans_.clear();
    for (const auto& [device, handle] : handles_) {
      if (handle != nullptr) cudnnDestroy(handle);  // at exit: a failure has no one to tell
    }
  }

  // The plan for `key`, built on first use. `handle` is set to the key's device's handle (null
  // when cuDNN cannot be initialised there; the plan then says so).
  const Plan& plan(const PlanKey& key, cudnnHandle_t* handle) {
    const std::lock_guard<std::mutex> lock(mutex_);
    *handle = handle_for(key.device);
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, build(key, *handle)).first;
    return it->second;
  }

 private:
  cudnnHandle_t handle_for(int device) {
    auto it = handles_.find(device);
    if (it == handles_.end()) {
      cudnnHandle_t made = nullptr;
      status_ = cudnnCreate(&made);
      if (status_ != CUDNN_STATUS_SUCCESS) made = nullptr;
      it = handles_.emplace(device, made).first;
    }
    return it->second;
  }

  Plan build(const PlanKey& key, cudnnHandle_t handle) {
    Plan plan;
    if (handle == nullptr) {
      plan.refusal = fmt::format("cudnnCreate failed: {}", cudnnGetErrorString(status_));
    } else {
      plan.graph = make_graph(key);
      fe::graph::Graph& g = *plan.graph;
      fe::error_t e = g.validate();
      if (e.is_good()) e = g.build_operation_graph(handle);
      if (e.is_good()) e = g.create_execution_plans({fe::HeurMode_t::A});
      if (e.is_good()) e = g.check_support();
      if (e.is_good()) e = g.build_plans();
      if (e.is_good()) e = g.get_workspace_size(plan.workspace);
      if (e.is_bad()) {
        plan.refusal = e.get_message();
        plan.graph.reset();
      }
    }
    if (plan.graph == nullptr) {
      log_warn("attention {}: cuDNN {} refuses it ({}); the other CUDA kernels run it",
               key_str(key), cudnnGetVersion(), plan.refusal);
    }
    return plan;
  }

  std::mutex mutex_;
  std::unordered_map<int, cudnnHandle_t> handles_;
  cudnnStatus_t status_ = CUDNN_STATUS_SUCCESS;  // of the last cudnnCreate
  std::unordered_map<PlanKey, Plan, PlanKeyHash> plans_;
};

Cache& cache() {
  static Cache c;
  return c;
}

PlanKey key_of(AttentionPass pass, const AttentionShape& shape, const AttentionParams& params) {
  int device = 0;
  TMT_CUDA_CHECK(cudaGetDevice(&device));
  PlanKey k;
  k.device = device;
  k.pass = pass;
  k.b = shape.batch, k.s = shape.seq, k.sk = shape.keys(), k.h = shape.heads;
  k.hk = shape.kv_heads, k.dqk = shape.head_dim_qk, k.dv = shape.head_dim_v;
  k.window = params.window < k.sk ? params.window : 0;
  k.scale_bits = std::bit_cast<uint32_t>(static_cast<float>(params.softmax_scale));
  return k;
}

// The built plan for a call, fatal when there is none.
const Plan& plan_to_run(const PlanKey& key, cudnnHandle_t* handle) {
  const Plan& p = cache().plan(key, handle);
  TMT_CHECK(p.graph != nullptr, "attention {}: cuDNN refuses it: {}", key_str(key), p.refusal);
  return p;
}

void execute(const Context& ctx, const Plan& p, cudnnHandle_t handle,
             std::unordered_map<int64_t, void*>& pack, const char* op) {
  void* workspace = workspace_for(ctx, static_cast<size_t>(p.workspace), op);
  const cudnnStatus_t status = cudnnSetStream(handle, static_cast<cudaStream_t>(ctx.stream));
  TMT_CHECK(status == CUDNN_STATUS_SUCCESS, "{}: cudnnSetStream: {}", op,
            cudnnGetErrorString(status));
  fe::error_t e = p.graph->execute(handle, pack, workspace);
  TMT_CHECK(e.is_good(), "{}: cuDNN's execute failed: {}", op, e.get_message());
}

}  // namespace

bool cudnn_attention_supported(AttentionPass pass, const AttentionShape& shape,
                               const AttentionParams& params, std::string* why) {
  if (shape.dtype != DType::kBF16) {
    if (why != nullptr)
      *why = fmt::format("{} tensors (the cuDNN path is bf16)", dtype_name(shape.dtype));
    return false;
  }
  cudnnHandle_t handle = nullptr;
  const Plan& p = cache().plan(key_of(pass, shape, params), &handle);
  if (p.graph == nullptr && why != nullptr) *why = p.refusal;
  return p.graph != nullptr;
}

size_t cudnn_attention_workspace_bytes(AttentionPass pass, const AttentionShape& shape,
                                       const AttentionParams& params) {
  if (shape.dtype != DType::kBF16) return 0;
  cudnnHandle_t handle = nullptr;
  return static_cast<size_t>(cache().plan(key_of(pass, shape, params), &handle).workspace);
}

void cudnn_attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                         const Tensor& k, const Tensor& v, const AttentionParams& params) {
  cudnnHandle_t handle = nullptr;
  const Plan& p =
      plan_to_run(key_of(AttentionPass::kForward, attention_shape(q, v), params), &handle);
  std::unordered_map<int64_t, void*> pack = {
      {kQ, q.data}, {kK, k.data}, {kV, v.data}, {kO, out.data}, {kStats, lse.data}};
  execute(ctx, p, handle, pack, "attention_fwd");
}

void cudnn_attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                         const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& out, const Tensor& lse, const AttentionParams& params) {
  cudnnHandle_t handle = nullptr;
  const Plan& p =
      plan_to_run(key_of(AttentionPass::kBackward, attention_shape(q, v), params), &handle);
  std::unordered_map<int64_t, void*> pack = {{kQ, q.data},   {kK, k.data},     {kV, v.data},
                                             {kO, out.data}, {kDO, dout.data}, {kStats, lse.data},
                                             {kDQ, dq.data}, {kDK, dk.data},   {kDV, dv.data}};
  execute(ctx, p, handle, pack, "attention_bwd");
}

}  // namespace tmt::cuda
