// Attention, the reference: one (batch, kv head) per task, so the dk and dv a task writes belong to
// it alone; scores for one query row at a time (S is small on the CPU).
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tmt::cpu {
namespace {

// q, dq: [B, S, H, Dqk]; k, dk: [B, Sk, Hk, Dqk]; out, dout: [B, S, H, Dv]; v, dv: [B, Sk, Hk, Dv].
// Query i sits at key position i + offset (offset = Sk - S).
struct Dims {
  int64_t b, s, sk, h, hk, dqk, dv, group;
  int64_t offset() const { return sk - s; }
  int64_t q_at(int64_t bi, int64_t i, int64_t hi) const { return ((bi * s + i) * h + hi) * dqk; }
  int64_t k_at(int64_t bi, int64_t j, int64_t g) const { return ((bi * sk + j) * hk + g) * dqk; }
  int64_t o_at(int64_t bi, int64_t i, int64_t hi) const { return ((bi * s + i) * h + hi) * dv; }
  int64_t v_at(int64_t bi, int64_t j, int64_t g) const { return ((bi * sk + j) * hk + g) * dv; }
  int64_t lse_at(int64_t bi, int64_t hi, int64_t i) const { return (bi * h + hi) * s + i; }
};

Dims dims_of(const Tensor& q, const Tensor& k, const Tensor& v) {
  return {q.size(0), q.size(1), k.size(1), q.size(2),
          k.size(2), q.size(3), v.size(3), q.size(2) / k.size(2)};
}

// The first key the query at key position i sees.
int64_t first_key(int64_t i, int64_t window) {
  return window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
}

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

template <class T>
void forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
             const Tensor& v, const AttentionParams& p) {
  const Dims n = dims_of(q, k, v);
  const T* qp = q.ptr<const T>();
  const T* kp = k.ptr<const T>();
  const T* vp = v.ptr<const T>();
  T* op = out.ptr<T>();
  T* lp = lse.ptr<T>();
  const T scale = static_cast<T>(p.softmax_scale);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n.b; ++b) {
    for (int64_t g = 0; g < n.hk; ++g) {
      std::vector<T> score(static_cast<size_t>(n.sk));
      for (int64_t h = g * n.group; h < (g + 1) * n.group; ++h) {
        for (int64_t i = 0; i < n.s; ++i) {
          const T* qi = qp + n.q_at(b, i, h);
          const int64_t last = i + n.offset(), j0 = first_key(last, p.window);
          T m = -INFINITY;
          for (int64_t j = j0; j <= last; ++j) {
            score[static_cast<size_t>(j)] = scale * dot(qi, kp + n.k_at(b, j, g), n.dqk);
            m = std::max(m, score[static_cast<size_t>(j)]);
          }
          T sum = 0;
          for (int64_t j = j0; j <= last; ++j)
            sum += score[static_cast<size_t>(j)] = std::exp(score[static_cast<size_t>(j)] - m);
          T* oi = op + n.o_at(b, i, h);
          std::fill(oi, oi + n.dv, T(0));
          for (int64_t j = j0; j <= last; ++j) {
            const T w = score[static_cast<size_t>(j)] / sum;
            const T* vj = vp + n.v_at(b, j, g);
            for (int64_t d = 0; d < n.dv; ++d) oi[d] += w * vj[d];
          }
          lp[n.lse_at(b, h, i)] = m + std::log(sum);
        }
      }
    }
  }
}

template <class T>
void backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
              const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
              const Tensor& lse, const AttentionParams& p) {
  const Dims n = dims_of(q, k, v);
  const T* qp = q.ptr<const T>();
  const T* kp = k.ptr<const T>();
  const T* vp = v.ptr<const T>();
  const T* op = out.ptr<const T>();
  const T* dop = dout.ptr<const T>();
  const T* lp = lse.ptr<const T>();
  T* dqp = dq.ptr<T>();
  T* dkp = dk.ptr<T>();
  T* dvp = dv.ptr<T>();
  const T scale = static_cast<T>(p.softmax_scale);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n.b; ++b) {
    for (int64_t g = 0; g < n.hk; ++g) {
      for (int64_t j = 0; j < n.sk; ++j) {
        std::fill(dkp + n.k_at(b, j, g), dkp + n.k_at(b, j, g) + n.dqk, T(0));
        std::fill(dvp + n.v_at(b, j, g), dvp + n.v_at(b, j, g) + n.dv, T(0));
      }
      for (int64_t h = g * n.group; h < (g + 1) * n.group; ++h) {
        for (int64_t i = 0; i < n.s; ++i) {
          const T* qi = qp + n.q_at(b, i, h);
          const T* doi = dop + n.o_at(b, i, h);
          T* dqi = dqp + n.q_at(b, i, h);
          std::fill(dqi, dqi + n.dqk, T(0));
          const T l = lp[n.lse_at(b, h, i)];
          const T D = dot(doi, op + n.o_at(b, i, h), n.dv);
          const int64_t last = i + n.offset();
          for (int64_t j = first_key(last, p.window); j <= last; ++j) {
            const T* kj = kp + n.k_at(b, j, g);
            const T* vj = vp + n.v_at(b, j, g);
            const T prob = std::exp(scale * dot(qi, kj, n.dqk) - l);
            const T ds = prob * (dot(doi, vj, n.dv) - D);
            T* dkj = dkp + n.k_at(b, j, g);
            T* dvj = dvp + n.v_at(b, j, g);
            for (int64_t d = 0; d < n.dqk; ++d) {
              dqi[d] += scale * ds * kj[d];
              dkj[d] += scale * ds * qi[d];
            }
            for (int64_t d = 0; d < n.dv; ++d) dvj[d] += prob * doi[d];
          }
        }
      }
    }
  }
}

}  // namespace

void attention_fwd(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                   const Tensor& v, const AttentionParams& params) {
  if (q.dtype == DType::kF64) return forward<double>(out, lse, q, k, v, params);
  forward<float>(out, lse, q, k, v, params);
}

void attention_bwd(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                   const Tensor& lse, const AttentionParams& params) {
  if (q.dtype == DType::kF64) return backward<double>(dq, dk, dv, dout, q, k, v, out, lse, params);
  backward<float>(dq, dk, dv, dout, q, k, v, out, lse, params);
}

}  // namespace tmt::cpu
