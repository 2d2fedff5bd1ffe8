// The MXFP8 GEMM of mxfp8_gemm_sm100.h: one CUTLASS 4.2 block-scaled kernel for sm_100a, 128 x 128
// x 128 tiles on one SM (1 x 1 x 1 clusters), the mainloop and epilogue schedules CUTLASS's
// builders pick for them (warp-specialized, tcgen05 MMAs accumulating in tensor memory, TMA loads
// of the elements and of the scales). Without TMT_CUTLASS_SM100 the file compiles to stubs.
#include "kernels/base/check.h"
#include "kernels/cuda/mxfp8_gemm_sm100.h"

#if TMT_CUTLASS_SM100
#include <cuda_runtime.h>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/detail/sm100_blockscaled_layout.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"
#include "kernels/cuda/cutlass_run.cuh"
#endif

namespace tmt::cuda {

#if TMT_CUTLASS_SM100
namespace {

namespace sm100 {

using cute::Shape;
using Element = cutlass::mx_float8_t<cutlass::float_e4m3_t>;  // e4m3 with e8m0 scales per 32
using Out = cutlass::bfloat16_t;
constexpr int kAlignment = 16;  // elements of a 16-byte access (e4m3)
constexpr int kOutAlignment = 128 / cutlass::sizeof_bits<Out>::value;
using Tile = Shape<cute::_128, cute::_128, cute::_128>;
using Cluster = Shape<cute::_1, cute::_1, cute::_1>;

using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    cutlass::arch::Sm100, cutlass::arch::OpClassBlockScaledTensorOp, Tile, Cluster,
    cutlass::epilogue::collective::EpilogueTileAuto, float, float, Out, cutlass::layout::RowMajor,
    kOutAlignment, Out, cutlass::layout::RowMajor, kOutAlignment,
    cutlass::epilogue::collective::EpilogueScheduleAuto>::CollectiveOp;

// A [M, K] K-major (row-major); B [N, K] K-major, which CUTLASS calls column-major B [K, N].
using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    cutlass::arch::Sm100, cutlass::arch::OpClassBlockScaledTensorOp, Element,
    cutlass::layout::RowMajor, kAlignment, Element, cutlass::layout::ColumnMajor, kAlignment, float,
    Tile, Cluster,
    cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
        sizeof(typename Epilogue::SharedStorage))>,
    cutlass::gemm::collective::KernelScheduleAuto>::CollectiveOp;

using Kernel =
    cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue, void>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
using ScaleConfig = typename Mainloop::Sm1xxBlkScaledConfig;

typename Gemm::Arguments arguments(const Mxfp8Gemm& g) {
  const int m = static_cast<int>(g.m), n = static_cast<int>(g.n), k = static_cast<int>(g.k);
  const auto problem = cute::make_shape(m, n, k, 1);
  using Data = typename Element::DataType;
  using Scale = typename Element::ScaleFactorType;
  typename Gemm::Arguments args{
      cutlass::gemm::GemmUniversalMode::kGemm,
      {m, n, k, 1},
      {static_cast<const Data*>(g.a),
       cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, {m, k, 1}),
       static_cast<const Data*>(g.b),
       cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, {n, k, 1}),
       static_cast<const Scale*>(g.a_scales), ScaleConfig::tile_atom_to_shape_SFA(problem),
       static_cast<const Scale*>(g.b_scales), ScaleConfig::tile_atom_to_shape_SFB(problem)},
      {{1.0f, 0.0f},  // D = acc (beta 0: C is not read)
       static_cast<const Out*>(g.d),
       cutlass::make_cute_packed_stride(typename Kernel::StrideC{}, {m, n, 1}),
       static_cast<Out*>(g.d),
       cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, {m, n, 1})}};
  return args;
}

}  // namespace sm100

void check_shape(const Mxfp8Gemm& g) {
  TMT_CHECK(g.m > 0 && g.n > 0 && g.k > 0 && g.k % 32 == 0 && g.n % 8 == 0 &&
                g.m < (int64_t{1} << 31) && g.n < (int64_t{1} << 31) && g.k < (int64_t{1} << 31),
            "mxfp8_gemm_sm100: [{}, {}] x [{}, {}]^T (K a multiple of 32, N of 8)", g.m, g.k, g.n,
            g.k);
}

}  // namespace

bool mxfp8_gemm_sm100_compiled() { return true; }

size_t mxfp8_gemm_sm100_workspace(const Mxfp8Gemm& g) {
  check_shape(g);
  return sm100::Gemm::get_workspace_size(sm100::arguments(g));
}

void mxfp8_gemm_sm100(const Mxfp8Gemm& g, void* workspace, size_t workspace_bytes) {
  check_shape(g);
  run_cutlass<sm100::Gemm>("mxfp8_gemm_sm100", sm100::arguments(g), g.m, g.n, g.k, workspace,
                           workspace_bytes, g.stream);
}

#else

bool mxfp8_gemm_sm100_compiled() { return false; }

size_t mxfp8_gemm_sm100_workspace(const Mxfp8Gemm&) {
  TMT_CHECK(false, "mxfp8_gemm_sm100: this build has no sm_100a kernels (TMT_CUDA_ARCHS)");
  return 0;
}

void mxfp8_gemm_sm100(const Mxfp8Gemm&, void*, size_t) {
  TMT_CHECK(false, "mxfp8_gemm_sm100: this build has no sm_100a kernels (TMT_CUDA_ARCHS)");
}

#endif

size_t mxfp8_scale_bytes(int64_t rows, int64_t k) {
  const int64_t padded_rows = (rows + 127) / 128 * 128;
  const int64_t scales = (k / 32 + 3) / 4 * 4;
  return static_cast<size_t>(padded_rows * scales);
}

}  // namespace tmt::cuda
