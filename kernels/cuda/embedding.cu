// embedding on CUDA (formulas in kernels/embedding.h): one thread per element of out / dout.
// The backward adds each token's gradient row into its table row with atomic adds (fp32 atomics
// into an f32 dtable, also for bf16 dout; bf16 atomics into a bf16 one), so the order of additions
// into a shared row is not fixed.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding.h"

namespace tmt::cuda {
namespace {

// The local row of global id `id`, or -1 when the id is outside [vocab_start, vocab_start + v).
__device__ __forceinline__ int64_t local_row(int32_t id, int64_t vocab_start, int64_t v_local) {
  const int64_t row = static_cast<int64_t>(id) - vocab_start;
  return (row >= 0 && row < v_local) ? row : -1;
}

// out: [T, D]; table: [V_local, D].
template <class T>
__global__ void fwd_kernel(T* out, const int32_t* ids, const T* table, int64_t n_tokens, int64_t d,
                           int64_t v_local, int64_t vocab_start) {
  const int64_t n = n_tokens * d;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t t = i / d, j = i % d;
    const int64_t row = local_row(ids[t], vocab_start, v_local);
    out[i] = row >= 0 ? table[row * d + j] : from_math<T>(0.0f);
  }
}

// G: dtable's element type (T, or float beside bf16 dout).
template <class T, class G>
__global__ void bwd_kernel(G* dtable, const T* dout, const int32_t* ids, int64_t n_tokens,
                           int64_t d, int64_t v_local, int64_t vocab_start) {
  const int64_t n = n_tokens * d;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t t = i / d, j = i % d;
    const int64_t row = local_row(ids[t], vocab_start, v_local);
    if (row < 0) continue;
    if constexpr (std::is_same_v<T, G>) {
      atomicAdd(&dtable[row * d + j], dout[i]);
    } else {
      atomicAdd(&dtable[row * d + j], to_math(dout[i]));
    }
  }
}

template <class T>
void fwd_as(const Context& ctx, const Tensor& out, const Tensor& ids, const Tensor& table,
            int64_t vocab_start) {
  const int64_t n_tokens = ids.size(0), d = table.size(1);
  fwd_kernel<T><<<grid_for(n_tokens * d), kThreads, 0, stream_of(ctx)>>>(
      static_cast<T*>(out.data), static_cast<const int32_t*>(ids.data),
      static_cast<const T*>(table.data), n_tokens, d, table.size(0), vocab_start);
  TMT_CUDA_CHECK_LAUNCH();
}

template <class T, class G>
void bwd_as(const Context& ctx, const Tensor& dtable, const Tensor& dout, const Tensor& ids,
            int64_t vocab_start) {
  const int64_t n_tokens = ids.size(0), d = dtable.size(1);
  bwd_kernel<T, G><<<grid_for(n_tokens * d), kThreads, 0, stream_of(ctx)>>>(
      static_cast<G*>(dtable.data), static_cast<const T*>(dout.data),
      static_cast<const int32_t*>(ids.data), n_tokens, d, dtable.size(0), vocab_start);
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void embedding_fwd(const Context& ctx, const Tensor& out, const Tensor& ids, const Tensor& table,
                   int64_t vocab_start) {
  if (out.numel() == 0) return;
  if (table.dtype == DType::kBF16) return fwd_as<bf16>(ctx, out, ids, table, vocab_start);
  fwd_as<float>(ctx, out, ids, table, vocab_start);
}

void embedding_bwd(const Context& ctx, const Tensor& dtable, const Tensor& dout, const Tensor& ids,
                   int64_t vocab_start) {
  if (dout.numel() == 0) return;
  if (dout.dtype == DType::kBF16 && dtable.dtype == DType::kF32) {
    return bwd_as<bf16, float>(ctx, dtable, dout, ids, vocab_start);
  }
  if (dtable.dtype == DType::kBF16) return bwd_as<bf16, bf16>(ctx, dtable, dout, ids, vocab_start);
  bwd_as<float, float>(ctx, dtable, dout, ids, vocab_start);
}

}  // namespace tmt::cuda
