#include "kernels/cpu/router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace tmt::cpu {
namespace {

// The eligible experts of a row under group-limited routing (all of them with one group): each
// group scored by the sum of its two largest choice scores, the topk_groups best kept (ties: the
// lower group).
template <class T>
void eligible_experts(std::vector<char>& eligible, const std::vector<T>& choice,
                      const RouterParams& p) {
  const auto e = static_cast<int64_t>(choice.size());
  eligible.assign(static_cast<size_t>(e), 1);
  if (p.n_groups <= 1) return;
  const int64_t size = e / p.n_groups;
  std::vector<T> group(static_cast<size_t>(p.n_groups));
  for (int64_t g = 0; g < p.n_groups; ++g) {
    T first = -std::numeric_limits<T>::infinity(), second = first;
    for (int64_t j = g * size; j < (g + 1) * size; ++j) {
      const T c = choice[static_cast<size_t>(j)];
      if (c > first) {
        second = first;
        first = c;
      } else if (c > second) {
        second = c;
      }
    }
    group[static_cast<size_t>(g)] = first + second;
  }
  std::vector<char> kept(static_cast<size_t>(p.n_groups), 0);
  for (int64_t c = 0; c < p.topk_groups; ++c) {
    int64_t best = -1;
    for (int64_t g = 0; g < p.n_groups; ++g) {
      if (kept[static_cast<size_t>(g)] == 0 &&
          (best < 0 || group[static_cast<size_t>(g)] > group[static_cast<size_t>(best)]))
        best = g;
    }
    kept[static_cast<size_t>(best)] = 1;
  }
  for (int64_t j = 0; j < e; ++j)
    eligible[static_cast<size_t>(j)] = kept[static_cast<size_t>(j / size)];
}

template <class T>
void forward(const Tensor& probs, const Tensor& topk_idx, const Tensor& topk_w, const Tensor& lse,
             const Tensor& logits, const Tensor& bias, const RouterParams& p) {
  const int64_t n = logits.size(0), e = logits.size(1), k = p.top_k;
  const T* l = logits.ptr<const T>();
  const T* b = bias.defined() ? bias.ptr<const T>() : nullptr;
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
    std::vector<T> choice(static_cast<size_t>(e));
    for (int64_t j = 0; j < e; ++j) {
      pt[j] = p.score == RouterScore::kSoftmax ? std::exp(lt[j] - ls[t])
                                               : T(1) / (T(1) + std::exp(-lt[j]));
      choice[static_cast<size_t>(j)] = b != nullptr ? pt[j] + b[j] : pt[j];
    }
    std::vector<char> eligible;
    eligible_experts(eligible, choice, p);
    // Top-k by repeated selection: the largest remaining choice score among the eligible experts,
    // the lower index on ties.
    T chosen_sum = 0;
    for (int64_t c = 0; c < k; ++c) {
      int64_t best = -1;
      for (int64_t j = 0; j < e; ++j) {
        if (eligible[static_cast<size_t>(j)] == 0) continue;
        if (std::find(idx + t * k, idx + t * k + c, static_cast<int32_t>(j)) != idx + t * k + c)
          continue;
        if (best < 0 || choice[static_cast<size_t>(j)] > choice[static_cast<size_t>(best)])
          best = j;
      }
      idx[t * k + c] = static_cast<int32_t>(best);
      w[t * k + c] = pt[best];
      chosen_sum += pt[best];
    }
    const auto scale = static_cast<T>(p.scaling);
    for (int64_t c = 0; c < k; ++c) {
      w[t * k + c] = p.renormalize ? w[t * k + c] / chosen_sum * scale : w[t * k + c] * scale;
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
    const auto scale = static_cast<T>(p.scaling);
    if (p.renormalize) {
      // w_c = γ p_c / S with S = Σ_c p_c: d/dp_c = (γ dw_c - Σ_j dw_j w_j) / S
      T chosen_sum = 0, dot = 0;
      for (int64_t c = 0; c < k; ++c) {
        chosen_sum += pt[idx[t * k + c]];
        dot += dw[t * k + c] * w[t * k + c];
      }
      for (int64_t c = 0; c < k; ++c)
        g[static_cast<size_t>(idx[t * k + c])] += (scale * dw[t * k + c] - dot) / chosen_sum;
    } else {
      for (int64_t c = 0; c < k; ++c)
        g[static_cast<size_t>(idx[t * k + c])] += scale * dw[t * k + c];
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

// stats [B, 2E]: per sequence, the assignments and the sums of the normalised scores.
template <class T>
void seq_stats_of(const Tensor& stats, const Tensor& probs, const Tensor& topk_idx,
                  int64_t first_token, int64_t seq_len) {
  const int64_t n = probs.size(0), e = probs.size(1), k = topk_idx.size(1);
  const T* pr = probs.ptr<const T>();
  const int32_t* idx = topk_idx.ptr<const int32_t>();
  double* st = stats.ptr<double>();
  std::fill_n(st, stats.numel(), 0.0);
  for (int64_t t = 0; t < n; ++t) {
    double* sb = st + (first_token + t) / seq_len * 2 * e;
    for (int64_t c = 0; c < k; ++c) sb[idx[t * k + c]] += 1.0;
    double sum = 0;
    for (int64_t j = 0; j < e; ++j) sum += static_cast<double>(pr[t * e + j]);
    for (int64_t j = 0; j < e; ++j) sb[e + j] += static_cast<double>(pr[t * e + j]) / sum;
  }
}

template <class T>
double seq_aux_of(const Tensor& dprobs, const Tensor& probs, const double* st, int64_t batch,
                  int64_t first_token, int64_t seq_len, int64_t seq_tokens, int64_t top_k,
                  double coeff, double weight) {
  const int64_t n = probs.size(0), e = probs.size(1);
  const double s = static_cast<double>(seq_tokens),
               f_scale = static_cast<double>(e) / (static_cast<double>(top_k) * s);
  double loss = 0;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t j = 0; j < e; ++j) loss += f_scale * st[b * 2 * e + j] * st[b * 2 * e + e + j] / s;
  }
  const T* pr = probs.ptr<const T>();
  T* d = dprobs.ptr<T>();
  const double g_scale = weight * coeff / (static_cast<double>(batch) * s);
  for (int64_t t = 0; t < n; ++t) {
    const double* sb = st + (first_token + t) / seq_len * 2 * e;
    double sum = 0, dot = 0;
    for (int64_t j = 0; j < e; ++j) sum += static_cast<double>(pr[t * e + j]);
    for (int64_t j = 0; j < e; ++j)
      dot += g_scale * f_scale * sb[j] * static_cast<double>(pr[t * e + j]) / sum;
    for (int64_t j = 0; j < e; ++j)
      d[t * e + j] += static_cast<T>((g_scale * f_scale * sb[j] - dot) / sum);
  }
  return batch > 0 ? coeff * loss / static_cast<double>(batch) : 0.0;
}

}  // namespace

void seq_aux_stats(const Tensor& stats, const Tensor& probs, const Tensor& topk_idx,
                   int64_t first_token, int64_t seq_len) {
  if (probs.dtype == DType::kF64)
    return seq_stats_of<double>(stats, probs, topk_idx, first_token, seq_len);
  seq_stats_of<float>(stats, probs, topk_idx, first_token, seq_len);
}

double seq_aux_from_stats(const Tensor& dprobs, const Tensor& probs, const double* stats,
                          int64_t batch, int64_t first_token, int64_t seq_len, int64_t seq_tokens,
                          int64_t top_k, double coeff, double grad_weight) {
  if (probs.dtype == DType::kF64) {
    return seq_aux_of<double>(dprobs, probs, stats, batch, first_token, seq_len, seq_tokens, top_k,
                              coeff, grad_weight);
  }
  return seq_aux_of<float>(dprobs, probs, stats, batch, first_token, seq_len, seq_tokens, top_k,
                           coeff, grad_weight);
}

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
                const Tensor& lse, const Tensor& logits, const Tensor& bias,
                const RouterParams& params) {
  if (logits.dtype == DType::kF64)
    return forward<double>(probs, topk_idx, topk_w, lse, logits, bias, params);
  forward<float>(probs, topk_idx, topk_w, lse, logits, bias, params);
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
