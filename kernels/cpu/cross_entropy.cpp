#include "kernels/cpu/cross_entropy.h"

#include <cmath>
#include <limits>

namespace tmt::cpu {
namespace {

// Per-row statistics may be f32 or f64 whatever the logits are; one value a row goes through
// load/store_element. Sums run in double.
double get(const Tensor& v, int64_t t) {
  return load_element(v.dtype, v.data, static_cast<size_t>(t));
}
void put(const Tensor& v, int64_t t, double x) {
  store_element(v.dtype, v.data, static_cast<size_t>(t), x);
}

template <class T>
double row_max_of(const T* row, int64_t n) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t v = 0; v < n; ++v) m = std::max(m, static_cast<double>(row[v]));
  return m;
}

template <class T>
double sum_exp_of(const T* row, int64_t n, double max) {
  double s = 0.0;
  for (int64_t v = 0; v < n; ++v) s += std::exp(static_cast<double>(row[v]) - max);
  return s;
}

// dst[v] = scale * (exp(src[v] - max) / sum - [v == hot]); dst may be src.
template <class T>
void write_grad(T* dst, const T* src, int64_t n, double max, double sum, int64_t hot,
                double scale) {
  const double inv_sum = 1.0 / sum;
  for (int64_t v = 0; v < n; ++v) {
    const double p = std::exp(static_cast<double>(src[v]) - max) * inv_sum;
    dst[v] = static_cast<T>(scale * (v == hot ? p - 1.0 : p));
  }
}

template <class T>
void fused(const Tensor& losses, const Tensor& dlogits, const Tensor& logits, const Tensor& targets,
           double grad_scale) {
  const int64_t n_tokens = logits.size(0), n_vocab = logits.size(1);
  const T* in = logits.ptr<const T>();
  const int32_t* target = targets.ptr<const int32_t>();
  T* grad = dlogits.defined() ? dlogits.ptr<T>() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    const T* row = in + t * n_vocab;
    const int64_t y = target[t];
    TMT_CHECK(y < n_vocab, "cross_entropy: target {} of token {} >= V = {}", y, t, n_vocab);
    if (y < 0) {
      put(losses, t, 0.0);
      if (grad != nullptr) {
        for (int64_t v = 0; v < n_vocab; ++v) grad[t * n_vocab + v] = T(0);
      }
      continue;
    }
    const double max = row_max_of(row, n_vocab);
    const double sum = sum_exp_of(row, n_vocab, max);
    // The loss reads logits[t, y] before the gradient may overwrite it.
    put(losses, t, std::log(sum) + max - static_cast<double>(row[y]));
    if (grad != nullptr) write_grad(grad + t * n_vocab, row, n_vocab, max, sum, y, grad_scale);
  }
}

template <class T>
void row_max(const Tensor& out, const Tensor& logits) {
  const int64_t n_tokens = logits.size(0), n_vocab = logits.size(1);
  const T* in = logits.ptr<const T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) put(out, t, row_max_of(in + t * n_vocab, n_vocab));
}

template <class T>
void sum_exp(const Tensor& out, const Tensor& logits, const Tensor& max) {
  const int64_t n_tokens = logits.size(0), n_vocab = logits.size(1);
  const T* in = logits.ptr<const T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    put(out, t, sum_exp_of(in + t * n_vocab, n_vocab, get(max, t)));
  }
}

template <class T>
void target_logit(const Tensor& out, const Tensor& logits, const Tensor& targets,
                  int64_t vocab_start) {
  const int64_t n_tokens = logits.size(0), n_vocab = logits.size(1);
  const T* in = logits.ptr<const T>();
  const int32_t* target = targets.ptr<const int32_t>();
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t col = static_cast<int64_t>(target[t]) - vocab_start;
    const bool here = target[t] >= 0 && col >= 0 && col < n_vocab;
    put(out, t, here ? static_cast<double>(in[t * n_vocab + col]) : 0.0);
  }
}

template <class T>
void grad(const Tensor& dlogits, const Tensor& logits, const Tensor& targets, const Tensor& max,
          const Tensor& sum, int64_t vocab_start, double grad_scale) {
  const int64_t n_tokens = logits.size(0), n_vocab = logits.size(1);
  const T* in = logits.ptr<const T>();
  const int32_t* target = targets.ptr<const int32_t>();
  T* out = dlogits.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (target[t] < 0) {
      for (int64_t v = 0; v < n_vocab; ++v) out[t * n_vocab + v] = T(0);
      continue;
    }
    // A target on another shard gives hot = an index outside [0, V_local): no one-hot here.
    const int64_t hot = static_cast<int64_t>(target[t]) - vocab_start;
    write_grad(out + t * n_vocab, in + t * n_vocab, n_vocab, get(max, t), get(sum, t), hot,
               grad_scale);
  }
}

}  // namespace

void cross_entropy(const Tensor& losses, const Tensor& dlogits, const Tensor& logits,
                   const Tensor& targets, double grad_scale) {
  if (logits.dtype == DType::kF64)
    return fused<double>(losses, dlogits, logits, targets, grad_scale);
  fused<float>(losses, dlogits, logits, targets, grad_scale);
}

void cross_entropy_row_max(const Tensor& out, const Tensor& logits) {
  if (logits.dtype == DType::kF64) return row_max<double>(out, logits);
  row_max<float>(out, logits);
}

void cross_entropy_sum_exp(const Tensor& out, const Tensor& logits, const Tensor& max) {
  if (logits.dtype == DType::kF64) return sum_exp<double>(out, logits, max);
  sum_exp<float>(out, logits, max);
}

void cross_entropy_target_logit(const Tensor& out, const Tensor& logits, const Tensor& targets,
                                int64_t vocab_start) {
  if (logits.dtype == DType::kF64) return target_logit<double>(out, logits, targets, vocab_start);
  target_logit<float>(out, logits, targets, vocab_start);
}

void cross_entropy_loss(const Tensor& losses, const Tensor& max, const Tensor& sum,
                        const Tensor& target_logit, const Tensor& targets) {
  const int32_t* target = targets.ptr<const int32_t>();
  for (int64_t t = 0; t < losses.size(0); ++t) {
    const double loss = std::log(get(sum, t)) + get(max, t) - get(target_logit, t);
    put(losses, t, target[t] < 0 ? 0.0 : loss);
  }
}

void cross_entropy_grad(const Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                        const Tensor& max, const Tensor& sum, int64_t vocab_start,
                        double grad_scale) {
  if (logits.dtype == DType::kF64) {
    return grad<double>(dlogits, logits, targets, max, sum, vocab_start, grad_scale);
  }
  grad<float>(dlogits, logits, targets, max, sum, vocab_start, grad_scale);
}

}  // namespace tmt::cpu
