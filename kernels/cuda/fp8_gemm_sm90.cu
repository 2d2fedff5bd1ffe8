// The FP8 GEMMs of fp8_gemm_sm90.h: CUTLASS 4.2's blockwise-scaled kernels for sm_90a (the TMA
// warp-specialized cooperative mainloop that applies the scales of each K block of 128 to the
// fp32 partial sums, MainloopSm90TmaGmmaWarpSpecializedBlockwiseFP8), 128 x 128 x 128 tiles on
// one SM (1 x 1 x 1 clusters), persistent over the tiles. One kernel per kind: kRowsByBlocks
// into bf16 D, kRowsByRows into f32 D, each reading D back as C with accumulate (beta 1).
// Without TMT_CUTLASS_SM90 the file compiles to stubs.
#include "kernels/base/check.h"
#include "kernels/cuda/fp8_gemm_sm90.h"

#if TMT_CUTLASS_SM90
#include <cuda_runtime.h>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/detail/blockwise_scale_layout.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"
#include "kernels/cuda/cutlass_run.cuh"
#endif

namespace tmt::cuda {

#if TMT_CUTLASS_SM90
namespace {

using cute::Shape;
using E4m3 = cutlass::float_e4m3_t;
using Tile = Shape<cute::_128, cute::_128, cute::_128>;
using Cluster = Shape<cute::_1, cute::_1, cute::_1>;
constexpr int kAlignAB = 16;  // e4m3 elements in 16 bytes, TMA's unit

// One kind's kernel: the scale granularity of B along N (128: weight blocks; 1: rows) and D's type.
template <int kScaleN, class ElementD>
struct Kernel {
  // C = D: read back only with accumulate (beta 1; CUTLASS skips loading C when beta is 0).
  using ElementC = ElementD;
  static constexpr int kAlignD = 16 / static_cast<int>(sizeof(ElementD));
  using ScaleConfig = cutlass::detail::Sm90BlockwiseScaleConfig<1, kScaleN, 128>;
  using LayoutSFA = decltype(ScaleConfig::deduce_layoutSFA());
  using LayoutSFB = decltype(ScaleConfig::deduce_layoutSFB());

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, ElementC,
      cutlass::layout::RowMajor, kAlignD, ElementD, cutlass::layout::RowMajor, kAlignD,
      cutlass::epilogue::TmaWarpSpecializedCooperative,
      cutlass::epilogue::fusion::LinearCombination<ElementD, float, ElementC, float>>::CollectiveOp;
  // A [M, K] K-major (row-major); B [N, K] K-major, which CUTLASS calls column-major B [K, N].
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, E4m3,
      cute::tuple<cutlass::layout::RowMajor, LayoutSFA>, kAlignAB, E4m3,
      cute::tuple<cutlass::layout::ColumnMajor, LayoutSFB>, kAlignAB, float, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8BlockScaledAccum>::CollectiveOp;
  using GemmKernel =
      cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue, void>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<GemmKernel>;

  static typename Gemm::Arguments arguments(const Fp8Gemm& g) {
    const int m = static_cast<int>(g.m), n = static_cast<int>(g.n), k = static_cast<int>(g.k);
    const auto problem = cute::make_shape(m, n, k, 1);
    typename Gemm::Arguments args;
    args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
    args.problem_shape = {m, n, k, 1};
    args.mainloop.ptr_A = static_cast<const E4m3*>(g.a);
    args.mainloop.dA = cutlass::make_cute_packed_stride(typename GemmKernel::StrideA{}, {m, k, 1});
    args.mainloop.ptr_B = static_cast<const E4m3*>(g.b);
    args.mainloop.dB = cutlass::make_cute_packed_stride(typename GemmKernel::StrideB{}, {n, k, 1});
    args.mainloop.ptr_SFA = g.a_scales;
    args.mainloop.layout_SFA = ScaleConfig::tile_atom_to_shape_SFA(problem);
    args.mainloop.ptr_SFB = g.b_scales;
    args.mainloop.layout_SFB = ScaleConfig::tile_atom_to_shape_SFB(problem);
    args.epilogue.thread.alpha = 1.0f;
    args.epilogue.thread.beta = g.accumulate ? 1.0f : 0.0f;
    args.epilogue.ptr_C = static_cast<const ElementD*>(g.d);
    args.epilogue.dC = cutlass::make_cute_packed_stride(typename GemmKernel::StrideC{}, {m, n, 1});
    args.epilogue.ptr_D = static_cast<ElementD*>(g.d);
    args.epilogue.dD = cutlass::make_cute_packed_stride(typename GemmKernel::StrideD{}, {m, n, 1});
    return args;
  }
};

using RowsByBlocks = Kernel<128, cutlass::bfloat16_t>;
using RowsByRows = Kernel<1, float>;

bool shape_ok(const Fp8Gemm& g) {
  constexpr int64_t kMax = int64_t{1} << 31;
  return g.m > 0 && g.n > 0 && g.k > 0 && g.k % kAlignAB == 0 && g.n % kAlignAB == 0 &&
         g.m < kMax && g.n < kMax && g.k < kMax;
}

// Calls f with the kind's Kernel type.
template <class F>
auto with_kernel(const Fp8Gemm& g, F f) {
  if (g.kind == Fp8GemmKind::kRowsByBlocks) return f(RowsByBlocks{});
  return f(RowsByRows{});
}

void check_call(const Fp8Gemm& g) {
  TMT_CHECK(shape_ok(g), "fp8_gemm: [{}, {}] x [{}, {}]^T (K and N multiples of 16)", g.m, g.k, g.n,
            g.k);
}

}  // namespace

bool fp8_gemm_sm90_compiled() { return true; }

bool fp8_gemm_supported(const Fp8Gemm& g) {
  if (!shape_ok(g)) return false;
  return with_kernel(g, [&](auto kernel) {
    using K = decltype(kernel);
    return K::Gemm::can_implement(K::arguments(g)) == cutlass::Status::kSuccess;
  });
}

size_t fp8_gemm_workspace(const Fp8Gemm& g) {
  check_call(g);
  return with_kernel(g, [&](auto kernel) {
    using K = decltype(kernel);
    return K::Gemm::get_workspace_size(K::arguments(g));
  });
}

void fp8_gemm(const Fp8Gemm& g, void* workspace, size_t workspace_bytes) {
  check_call(g);
  with_kernel(g, [&](auto kernel) {
    using K = decltype(kernel);
    run_cutlass<typename K::Gemm>("fp8_gemm", K::arguments(g), g.m, g.n, g.k, workspace,
                                  workspace_bytes, g.stream);
  });
}

#else

bool fp8_gemm_sm90_compiled() { return false; }

bool fp8_gemm_supported(const Fp8Gemm&) { return false; }

size_t fp8_gemm_workspace(const Fp8Gemm&) {
  TMT_CHECK(false, "fp8_gemm: this build has no sm_90a kernels (TMT_CUDA_ARCHS)");
  return 0;
}

void fp8_gemm(const Fp8Gemm&, void*, size_t) {
  TMT_CHECK(false, "fp8_gemm: this build has no sm_90a kernels (TMT_CUDA_ARCHS)");
}

#endif

}  // namespace tmt::cuda
