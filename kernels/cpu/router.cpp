#include "kernels/cpu/router.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tmt::cpu {
namespace {

template <class T>
void forward(const Tensor& probs, const Tensor& topk_idx, const Tensor& topk_w, const Tensor& lse,
             const Tensor& logits, const RouterParams& p) {
  const int64_t n = logits.size(0), e = logits.size(1), k = p.top_k;
  const T* l = logits.ptr<const T>();
  T* pr = probs.ptr<T>();
  int32_t* idx = topk_idx.ptr<int32_t>();
  T* w = topk_w.ptr<T>();
  T* ls = lse.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* lt = l + t * e;
    T* pt = pr + t * e;
    const T m = *std::max_element(lt, lt + e);
    T sum = 0;
    for (int64_t j = 0; j < e; ++j) sum += std::exp(lt[j] - m);
    ls[t] = m + std::log(sum);
    for (int64_t j = 0; j < e; ++j) {
      pt[j] = p.score == RouterScore::kSoftmax ? std::exp(lt[j] - ls[t])
                                               : T(1) / (T(1) + std::exp(-lt[j]));
    }
    // Top-k by repeated selection: the largest remaining score, the lower index on ties.
    T chosen_sum = 0;
    for (int64_t c = 0; c < k; ++c) {
      int64_t best = -1;
      for (int64_t j = 0; j < e; ++j) {
        if (std::find(idx + t * k, idx + t * k + c, static_cast<int32_t>(j)) != idx + t * k + c)
          continue;
        if (best < 0 || pt[j] > pt[best]) best = j;
      }
      idx[t * k + c] = static_cast<int32_t>(best);
      w[t * k + c] = pt[best];
      chosen_sum += pt[best];
    }
    if (p.renormalize) {
      for (int64_t c = 0; c < k; ++c) w[t * k + c] /= chosen_sum;
    }
  }
}

template <class T>
void backward(const Tensor& dlogits, const Tensor& dtopk_w, const Tensor& dprobs,
              const Tensor& dlse, const Tensor& probs, const Tensor& topk_idx, const Tensor& topk_w,
              const Tensor& logits, const RouterParams& p) {
  const int64_t n = logits.size(0), e = logits.size(1), k = p.top_k;
  const T* l = logits.ptr<const T>();
  const T* pr = probs.ptr<const T>();
  const int32_t* idx = topk_idx.ptr<const int32_t>();
  const T* w = topk_w.ptr<const T>();
  const T* dw = dtopk_w.ptr<const T>();
  const T* dp = dprobs.defined() ? dprobs.ptr<const T>() : nullptr;
  const T* dl = dlse.defined() ? dlse.ptr<const T>() : nullptr;
  T* out = dlogits.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* pt = pr + t * e;
    std::vector<T> g(static_cast<size_t>(e), T(0));  // d loss / d probs[t]
    if (dp != nullptr) std::copy(dp + t * e, dp + (t + 1) * e, g.begin());
    if (p.renormalize) {
      // w_c = p_c / S with S = Σ_c p_c: d/dp_c = (dw_c - Σ_j dw_j w_j) / S
      T chosen_sum = 0, dot = 0;
      for (int64_t c = 0; c < k; ++c) {
        chosen_sum += pt[idx[t * k + c]];
        dot += dw[t * k + c] * w[t * k + c];
      }
      for (int64_t c = 0; c < k; ++c)
        g[static_cast<size_t>(idx[t * k + c])] += (dw[t * k + c] - dot) / chosen_sum;
    } else {
      for (int64_t c = 0; c < k; ++c) g[static_cast<size_t>(idx[t * k + c])] += dw[t * k + c];
    }
    T* ot = out + t * e;
    if (p.score == RouterScore::kSoftmax) {
      T gp = 0;
      for (int64_t j = 0; j < e; ++j) gp += g[static_cast<size_t>(j)] * pt[j];
      for (int64_t j = 0; j < e; ++j) ot[j] = pt[j] * (g[static_cast<size_t>(j)] - gp);
    } else {
      for (int64_t j = 0; j < e; ++j) ot[j] = g[static_cast<size_t>(j)] * pt[j] * (T(1) - pt[j]);
    }
    if (dl != nullptr) {
      // d lse / d logits = softmax(logits)
      const T* lt = l + t * e;
      const T m = *std::max_element(lt, lt + e);
      T sum = 0;
      for (int64_t j = 0; j < e; ++j) sum += std::exp(lt[j] - m);
      for (int64_t j = 0; j < e; ++j) ot[j] += dl[t] * std::exp(lt[j] - m) / sum;
    }
  }
}

template <class T>
double balance(const Tensor& dprobs, const Tensor& probs, const Tensor& topk_idx, double coeff,
               double weight) {
  const int64_t n = probs.size(0), e = probs.size(1), k = topk_idx.size(1);
  const T* pr = probs.ptr<const T>();
  const int32_t* idx = topk_idx.ptr<const int32_t>();
  std::vector<double> f(static_cast<size_t>(e), 0.0), mean_p(static_cast<size_t>(e), 0.0);
  for (int64_t i = 0; i < n * k; ++i)
    f[static_cast<size_t>(idx[i])] += 1.0 / static_cast<double>(n * k);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < e; ++j)
      mean_p[static_cast<size_t>(j)] += pr[t * e + j] / static_cast<double>(n);
  }
  double aux = 0;
  for (int64_t j = 0; j < e; ++j) aux += f[static_cast<size_t>(j)] * mean_p[static_cast<size_t>(j)];
  T* d = dprobs.ptr<T>();
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < e; ++j) {
      d[t * e + j] = static_cast<T>(weight * coeff * static_cast<double>(e) *
                                    f[static_cast<size_t>(j)] / static_cast<double>(n));
    }
  }
  return coeff * static_cast<double>(e) * aux;
}

template <class T>
double zloss(const Tensor& dlse, const Tensor& lse, double coeff, double weight) {
  const int64_t n = lse.size(0);
  const T* l = lse.ptr<const T>();
  T* d = dlse.ptr<T>();
  double sum = 0;
  for (int64_t t = 0; t < n; ++t) {
    sum += static_cast<double>(l[t]) * static_cast<double>(l[t]);
    d[t] =
        static_cast<T>(weight * coeff * 2.0 * static_cast<double>(l[t]) / static_cast<double>(n));
  }
  return n > 0 ? coeff * sum / static_cast<double>(n) : 0.0;
}

template <class T>
void stats_of(const Tensor& stats, const Tensor& probs, const Tensor& topk_idx, const Tensor& lse) {
  const int64_t n = probs.size(0), e = probs.size(1), k = topk_idx.size(1);
  const T* pr = probs.ptr<const T>();
  const T* l = lse.ptr<const T>();
  const int32_t* idx = topk_idx.ptr<const int32_t>();
  double* st = stats.ptr<double>();
  for (int64_t j = 0; j < 2 * e + 1; ++j) st[j] = 0;
  for (int64_t i = 0; i < n * k; ++i) st[idx[i]] += 1.0;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < e; ++j) st[e + j] += static_cast<double>(pr[t * e + j]);
    st[2 * e] += static_cast<double>(l[t]) * static_cast<double>(l[t]);
  }
}

template <class T>
double balance_from_stats(const Tensor& dprobs, const Tensor& stats, int64_t tokens, int64_t top_k,
                          double coeff, double weight) {
  const int64_t n = dprobs.size(0), e = dprobs.size(1);
  const double* st = stats.ptr<const double>();
  const double total = static_cast<double>(tokens);
  double aux = 0;
  for (int64_t j = 0; j < e; ++j)
    aux += st[j] / (total * static_cast<double>(top_k)) * st[e + j] / total;
  T* d = dprobs.ptr<T>();
  for (int64_t j = 0; j < e; ++j) {
    const double f = st[j] / (total * static_cast<double>(top_k));
    const auto g = static_cast<T>(weight * coeff * static_cast<double>(e) * f / total);
    for (int64_t t = 0; t < n; ++t) d[t * e + j] = g;
  }
  return coeff * static_cast<double>(e) * aux;
}

template <class T>
double zloss_from_stats(const Tensor& dlse, const Tensor& lse, const Tensor& stats, int64_t tokens,
                        double coeff, double weight) {
  const int64_t n = lse.size(0);
  const double total = static_cast<double>(tokens);
  const T* l = lse.ptr<const T>();
  T* d = dlse.ptr<T>();
  for (int64_t t = 0; t < n; ++t)
    d[t] = static_cast<T>(weight * coeff * 2.0 * static_cast<double>(l[t]) / total);
  return tokens > 0 ? coeff * stats.ptr<const double>()[stats.numel() - 1] / total : 0.0;
}

}  // namespace

void router_stats(const Tensor& stats, const Tensor& probs, const Tensor& topk_idx,
                  const Tensor& lse) {
  if (probs.dtype == DType::kF64) return stats_of<double>(stats, probs, topk_idx, lse);
  stats_of<float>(stats, probs, topk_idx, lse);
}

double load_balancing_from_stats(const Tensor& dprobs, const Tensor& stats, int64_t tokens,
                                 int64_t top_k, double coeff, double grad_weight) {
  if (dprobs.dtype == DType::kF64)
    return balance_from_stats<double>(dprobs, stats, tokens, top_k, coeff, grad_weight);
  return balance_from_stats<float>(dprobs, stats, tokens, top_k, coeff, grad_weight);
}

double z_loss_from_stats(const Tensor& dlse, const Tensor& lse, const Tensor& stats, int64_t tokens,
                         double coeff, double grad_weight) {
  if (lse.dtype == DType::kF64)
    return zloss_from_stats<double>(dlse, lse, stats, tokens, coeff, grad_weight);
  return zloss_from_stats<float>(dlse, lse, stats, tokens, coeff, grad_weight);
}

void router_fwd(const Tensor& probs, const Tensor& topk_idx, const Tensor& topk_w,
                const Tensor& lse, const Tensor& logits, const RouterParams& params) {
  if (logits.dtype == DType::kF64)
    return forward<double>(probs, topk_idx, topk_w, lse, logits, params);
  forward<float>(probs, topk_idx, topk_w, lse, logits, params);
}

void router_bwd(const Tensor& dlogits, const Tensor& dtopk_w, const Tensor& dprobs,
                const Tensor& dlse, const Tensor& probs, const Tensor& topk_idx,
                const Tensor& topk_w, const Tensor& logits, const RouterParams& params) {
  if (logits.dtype == DType::kF64) {
    return backward<double>(dlogits, dtopk_w, dprobs, dlse, probs, topk_idx, topk_w, logits,
                            params);
  }
  backward<float>(dlogits, dtopk_w, dprobs, dlse, probs, topk_idx, topk_w, logits, params);
}

double load_balancing_loss(const Tensor& dprobs, const Tensor& probs, const Tensor& topk_idx,
                           double coeff, double grad_weight) {
  if (probs.dtype == DType::kF64)
    return balance<double>(dprobs, probs, topk_idx, coeff, grad_weight);
  return balance<float>(dprobs, probs, topk_idx, coeff, grad_weight);
}

double z_loss(const Tensor& dlse, const Tensor& lse, double coeff, double grad_weight) {
  if (lse.dtype == DType::kF64) return zloss<double>(dlse, lse, coeff, grad_weight);
  return zloss<float>(dlse, lse, coeff, grad_weight);
}

}  // namespace tmt::cpu
