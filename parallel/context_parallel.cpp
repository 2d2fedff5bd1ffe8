#include "parallel/context_parallel.h"

#include <algorithm>

#include "kernels/base/check.h"
#include "kernels/copy.h"
#include "kernels/reduce.h"

namespace tmt {
namespace {

// Rows [row, row + 1) of t seen as [rows, numel / rows].
Tensor row_of(const Tensor& t, int64_t rows, int64_t row) {
  return t.view({rows, t.numel() / rows}).slice(row, row + 1);
}

// The first `keys` positions of sequence b of a [B, S, Hk, D] tensor: [1, keys, Hk, D].
Tensor prefix(const Tensor& t, int64_t b, int64_t keys) {
  const Tensor one = t.slice(b, b + 1);
  return Tensor{one.data, one.dtype, one.device, Shape{1, keys, t.size(2), t.size(3)}};
}

}  // namespace

ContextParallel::ContextParallel(Communicator* cp, int64_t seq) : cp_(cp), seq_(seq) {
  TMT_CHECK(size() == 1 || seq % (2 * size()) == 0,
            "context parallel: {} tokens do not split into 2 x {} chunks", seq, size());
}

int64_t ContextParallel::position(int64_t u) const {
  if (size() == 1) return u;
  const int64_t c = chunk(), half = u / c;
  return chunk_index(half) * c + u % c;
}

void ContextParallel::take_chunks(const Context& ctx, const Tensor& local,
                                  const int32_t* whole) const {
  const int64_t b = local.size(0), c = chunk();
  for (int64_t s = 0; s < b; ++s) {
    for (int64_t half = 0; half < 2; ++half) {
      copy_from_host(ctx, row_of(local, 2 * b, 2 * s + half),
                     whole + s * seq_ + chunk_index(half) * c);
    }
  }
}

ContextParallel::Temps ContextParallel::temps(Arena& scratch, const Tensor& k, const Tensor& v,
                                              bool backward) const {
  const int64_t cp = size(), b = k.size(0), hk = k.size(2);
  Temps t;
  t.gathered_k = scratch.alloc(k.dtype, {cp, b, local_seq(), hk, k.size(3)});
  t.gathered_v = scratch.alloc(v.dtype, {cp, b, local_seq(), hk, v.size(3)});
  t.k = scratch.alloc(k.dtype, {b, seq_, hk, k.size(3)});
  t.v = scratch.alloc(v.dtype, {b, seq_, hk, v.size(3)});
  if (backward) {
    t.dk = scratch.alloc(k.dtype, {b, seq_, hk, k.size(3)});
    t.dv = scratch.alloc(v.dtype, {b, seq_, hk, v.size(3)});
    t.dk_call = scratch.alloc(k.dtype, {1, seq_, hk, k.size(3)});
    t.dv_call = scratch.alloc(v.dtype, {1, seq_, hk, v.size(3)});
  }
  return t;
}

void ContextParallel::reserve_fwd(Arena& scratch, const Tensor& k, const Tensor& v) const {
  if (size() > 1) temps(scratch, k, v, false);
}

void ContextParallel::reserve_bwd(Arena& scratch, const Tensor& k, const Tensor& v) const {
  if (size() > 1) temps(scratch, k, v, true);
}

size_t ContextParallel::workspace_bytes(Device device, AttentionShape local,
                                        const AttentionParams& params) const {
  const auto call = [&](const AttentionShape& s) {
    return std::max(attention_fwd_workspace_bytes(device, s, params),
                    attention_bwd_workspace_bytes(device, s, params));
  };
  if (size() == 1) return call(local);
  size_t bytes = 0;
  local.batch = 1;
  local.seq = chunk();
  for (int64_t half = 0; half < 2; ++half) {
    local.kv_seq = (chunk_index(half) + 1) * chunk();
    bytes = std::max(bytes, call(local));
  }
  return bytes;
}

// Block (rank r, sequence b, half h) of the rank-major buffer is chunk chunk_index(h) of rank r
// of sequence b.
void ContextParallel::reorder(const Context& ctx, const Tensor& seq_order, const Tensor& rank_major,
                              bool to_sequence_order) const {
  const int64_t cp = size(), b = seq_order.size(0);
  for (int64_t r = 0; r < cp; ++r) {
    for (int64_t s = 0; s < b; ++s) {
      for (int64_t h = 0; h < 2; ++h) {
        const int64_t j = h == 0 ? r : 2 * cp - 1 - r;
        const Tensor in_sequence = row_of(seq_order, b * 2 * cp, s * 2 * cp + j);
        const Tensor in_rank = row_of(rank_major, cp * b * 2, (r * b + s) * 2 + h);
        if (to_sequence_order) {
          copy(ctx, in_sequence, in_rank);
        } else {
          copy(ctx, in_rank, in_sequence);
        }
      }
    }
  }
}

void ContextParallel::gather(const Context& ctx, const Temps& t, const Tensor& k,
                             const Tensor& v) const {
  cp_->all_gather(t.gathered_k.view({t.gathered_k.numel()}), k.view({k.numel()}));
  cp_->all_gather(t.gathered_v.view({t.gathered_v.numel()}), v.view({v.numel()}));
  reorder(ctx, t.k, t.gathered_k, true);
  reorder(ctx, t.v, t.gathered_v, true);
}

void ContextParallel::attention_fwd(const Context& ctx, Arena& scratch, const Tensor& out,
                                    const Tensor& lse, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const AttentionParams& params) const {
  if (size() == 1) return tmt::attention_fwd(ctx, out, lse, q, k, v, params);
  const int64_t b = q.size(0), c = chunk(), h = q.size(2);
  const size_t mark = scratch.mark();
  const Temps t = temps(scratch, k, v, false);
  gather(ctx, t, k, v);
  const Shape qs{2 * b, c, h, q.size(3)}, os{2 * b, c, h, out.size(3)}, ls{2 * b, h, c};
  for (int64_t s = 0; s < b; ++s) {
    for (int64_t half = 0; half < 2; ++half) {
      const int64_t i = 2 * s + half, keys = (chunk_index(half) + 1) * c;
      tmt::attention_fwd(ctx, out.view(os).slice(i, i + 1), lse.view(ls).slice(i, i + 1),
                         q.view(qs).slice(i, i + 1), prefix(t.k, s, keys), prefix(t.v, s, keys),
                         params);
    }
  }
  scratch.reset(mark);
}

void ContextParallel::attention_bwd(const Context& ctx, Arena& scratch, const Tensor& dq,
                                    const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                    const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& out, const Tensor& lse,
                                    const AttentionParams& params) const {
  if (size() == 1) return tmt::attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
  const int64_t b = q.size(0), c = chunk(), h = q.size(2);
  const size_t mark = scratch.mark();
  const Temps t = temps(scratch, k, v, true);
  gather(ctx, t, k, v);
  zero(ctx, t.dk);
  zero(ctx, t.dv);
  const Shape qs{2 * b, c, h, q.size(3)}, os{2 * b, c, h, out.size(3)}, ls{2 * b, h, c};
  for (int64_t s = 0; s < b; ++s) {
    for (int64_t half = 0; half < 2; ++half) {
      const int64_t i = 2 * s + half, keys = (chunk_index(half) + 1) * c;
      const Tensor dk_call = prefix(t.dk_call, 0, keys), dv_call = prefix(t.dv_call, 0, keys);
      tmt::attention_bwd(ctx, dq.view(qs).slice(i, i + 1), dk_call, dv_call,
                         dout.view(os).slice(i, i + 1), q.view(qs).slice(i, i + 1),
                         prefix(t.k, s, keys), prefix(t.v, s, keys), out.view(os).slice(i, i + 1),
                         lse.view(ls).slice(i, i + 1), params);
      add(ctx, prefix(t.dk, s, keys), dk_call);
      add(ctx, prefix(t.dv, s, keys), dv_call);
    }
  }
  // Each key's gradient back to the rank that holds it, summed over every rank's queries.
  reorder(ctx, t.dk, t.gathered_k, false);
  reorder(ctx, t.dv, t.gathered_v, false);
  cp_->reduce_scatter(dk.view({dk.numel()}), t.gathered_k.view({t.gathered_k.numel()}));
  cp_->reduce_scatter(dv.view({dv.numel()}), t.gathered_v.view({t.gathered_v.numel()}));
  scratch.reset(mark);
}

void ContextParallel::sum(const Tensor& t) const {
  if (size() > 1) cp_->all_reduce(t);
}

}  // namespace tmt
