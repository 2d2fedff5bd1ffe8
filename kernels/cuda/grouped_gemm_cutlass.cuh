// The CUTLASS grouped GEMMs of grouped_gemm.h, one template for every tile configuration, included
// only by grouped_gemm_cutlass_<tile>.cu (each instantiates its configuration's four kernels).
//
// CUTLASS computes D [M, N] = A [M, K] · B [K, N] per group, A and B in either major order, with
// D = alpha · acc + beta · C in the epilogue. The three passes, R_e the rows of expert e starting at
// row r_e, rows of x, dx K elements long, rows of y, dy N long, W[e] and dW[e] [N, K] row-major:
//
//   pass   M    N  K    A (major)                B (major)               C, D         beta
//   fwd    R_e  N  K    x + r_e·K     (K, ld K)  W[e]  (K, ld K)          -, y + r_e·N  0
//   dgrad  R_e  K  N    dy + r_e·N    (K, ld N)  W[e]  (N-dim, ld K)      -, dx + r_e·K 0
//   wgrad  N    K  R_e  dy + r_e·N    (M, ld N)  x + r_e·K (N-dim, ld K)  dW[e], dW[e]  1
//
// (MN-major operands are fine for 16-bit types on Hopper: TMA loads them and GMMA reads them
// transposed from shared memory.) An empty group gets M = 0, so it has no tiles: nothing is
// written, and dW[e] keeps its value. fwd and dgrad have no C operand (ElementC void); wgrad reads
// C = D = dW[e] in dW's dtype (f32 or bf16) and writes it back.
//
// The problem sizes, pointers and strides live in device tables in the workspace, written by
// build_tables from the device counts; CUTLASS gets no host problem sizes (GroupProblemShape's
// host pointer is null), which it needs only to launch a smaller grid than one CTA per SM and to
// check alignment in can_implement (grouped_gemm_supported checks it instead).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cub/block/block_scan.cuh>
#include <type_traits>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/group_array_problem_shape.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/grouped_gemm_cutlass.h"

namespace tmt::cuda::cutlass_grouped {

// ---- tile configurations ------------------------------------------------------------------------
struct Cooperative128x256 {
  using Tile = cute::Shape<cute::_128, cute::_256, cute::_64>;
  using Cluster = cute::Shape<cute::_2, cute::_1, cute::_1>;
  using MainloopSchedule = cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative;
  using EpilogueSchedule = cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative;
};
struct Cooperative128x128 {
  using Tile = cute::Shape<cute::_128, cute::_128, cute::_64>;
  using Cluster = cute::Shape<cute::_2, cute::_1, cute::_1>;
  using MainloopSchedule = cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative;
  using EpilogueSchedule = cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative;
};
struct Pingpong128x128 {
  using Tile = cute::Shape<cute::_128, cute::_128, cute::_64>;
  using Cluster = cute::Shape<cute::_2, cute::_1, cute::_1>;
  using MainloopSchedule = cutlass::gemm::KernelPtrArrayTmaWarpSpecializedPingpong;
  using EpilogueSchedule = cutlass::epilogue::PtrArrayTmaWarpSpecializedPingpong;
};

// ---- the kernel of one configuration and pass ---------------------------------------------------
using ProblemShape = cutlass::gemm::GroupProblemShape<cute::Shape<int, int, int>>;
using Bf16 = cutlass::bfloat16_t;

template <class Config, GroupedPass kPass, class ElementD>
struct Kernel {
  static constexpr GroupedPass pass = kPass;
  static constexpr bool kWgrad = kPass == GroupedPass::kWgrad;
  using RowMajor = cutlass::layout::RowMajor;
  using ColumnMajor = cutlass::layout::ColumnMajor;
  // The pointer layouts (LayoutA* ...) ask the builders for per-group strides: a grouped GEMM.
  using LayoutA = std::conditional_t<kWgrad, ColumnMajor, RowMajor>;
  using LayoutB = std::conditional_t<kPass == GroupedPass::kFwd, ColumnMajor, RowMajor>;
  using LayoutD = RowMajor;
  using ElementC = std::conditional_t<kWgrad, ElementD, void>;
  static constexpr int kAlignAB = 16 / sizeof(Bf16);  // elements in 16 bytes, TMA's unit
  static constexpr int kAlignD = 16 / sizeof(ElementD);

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, typename Config::Tile,
      typename Config::Cluster, cutlass::epilogue::collective::EpilogueTileAuto, float, float,
      ElementC, LayoutD*, kAlignD, ElementD, LayoutD*, kAlignD, typename Config::EpilogueSchedule,
      cutlass::epilogue::fusion::LinearCombination<ElementD, float, ElementC, float>>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Bf16, LayoutA*, kAlignAB, Bf16, LayoutB*,
      kAlignAB, float, typename Config::Tile, typename Config::Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename Epilogue::SharedStorage))>,
      typename Config::MainloopSchedule>::CollectiveOp;
  using GemmKernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, Mainloop, Epilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<GemmKernel>;
};

// ---- the device tables ------------------------------------------------------------------------
template <class K>
struct Tables {
  using GK = typename K::GemmKernel;
  typename ProblemShape::UnderlyingProblemShape* shapes;
  const typename GK::ElementA** a;
  const typename GK::ElementB** b;
  const typename GK::ElementC** c;  // wgrad only
  typename GK::ElementD** d;
  typename GK::InternalStrideA* stride_a;
  typename GK::InternalStrideB* stride_b;
  typename GK::InternalStrideC* stride_c;
  typename GK::InternalStrideD* stride_d;
};

// Each of the tables in its kTableAlign-aligned slot of the workspace, in the order of kTables.
template <class K>
Tables<K> carve(void* workspace, int64_t experts) {
  using T = Tables<K>;
  using GK = typename K::GemmKernel;
  static_assert(sizeof(typename ProblemShape::UnderlyingProblemShape) <= kTableEntryBytes &&
                sizeof(typename GK::InternalStrideA) <= kTableEntryBytes &&
                sizeof(typename GK::InternalStrideB) <= kTableEntryBytes &&
                sizeof(typename GK::InternalStrideC) <= kTableEntryBytes &&
                sizeof(typename GK::InternalStrideD) <= kTableEntryBytes);
  auto* base = static_cast<std::byte*>(workspace);
  const size_t step = table_bytes(experts);
  const auto slot = [&](int i) { return static_cast<void*>(base + static_cast<size_t>(i) * step); };
  T t;
  t.shapes = static_cast<decltype(t.shapes)>(slot(0));
  t.a = static_cast<decltype(t.a)>(slot(1));
  t.b = static_cast<decltype(t.b)>(slot(2));
  t.c = static_cast<decltype(t.c)>(slot(3));
  t.d = static_cast<decltype(t.d)>(slot(4));
  t.stride_a = static_cast<decltype(t.stride_a)>(slot(5));
  t.stride_b = static_cast<decltype(t.stride_b)>(slot(6));
  t.stride_c = static_cast<decltype(t.stride_c)>(slot(7));
  t.stride_d = static_cast<decltype(t.stride_d)>(slot(8));
  return t;
}

// A CUTLASS stride (one mode _1, the other the leading dimension, the group mode _0) with its
// dynamic mode set to `ld` elements.
template <class Stride>
__device__ Stride leading(int64_t ld) {
  Stride s{};
  if constexpr (cute::is_static<std::remove_reference_t<decltype(cute::get<0>(s))>>::value) {
    cute::get<1>(s) = ld;
  } else {
    cute::get<0>(s) = ld;
  }
  return s;
}

struct TableArgs {
  const void* a;
  const void* b;
  void* out;
  const int64_t* counts;
  int64_t experts, rows, n, k;
};

// One block, a thread an expert: the exclusive prefix sum of the counts gives each group's first
// row; then each thread writes its group's problem size, pointers and strides (table above).
template <class K>
__global__ void __launch_bounds__(kGroupedGemmMaxExperts)
    build_tables(Tables<K> t, TableArgs args) {
  using GK = typename K::GemmKernel;
  using ElementA = typename GK::ElementA;
  using ElementB = typename GK::ElementB;
  using ElementD = typename GK::ElementD;
  using Scan = cub::BlockScan<int64_t, kGroupedGemmMaxExperts>;
  __shared__ typename Scan::TempStorage scan;

  const int e = static_cast<int>(threadIdx.x);
  const int64_t given = e < args.experts ? args.counts[e] : 0;
  const int64_t count = given > 0 ? given : 0;
  int64_t first = 0;
  Scan(scan).ExclusiveSum(count, first);
  if (e >= args.experts) return;
  first = first < args.rows ? first : args.rows;
  const int64_t rows = count < args.rows - first ? count : args.rows - first;  // ends by row R
  const int64_t n = args.n, k = args.k;
  const auto* a = static_cast<const ElementA*>(args.a);
  const auto* b = static_cast<const ElementB*>(args.b);
  auto* out = static_cast<ElementD*>(args.out);
  const auto r = static_cast<int>(rows);

  if constexpr (K::pass == GroupedPass::kFwd) {
    t.shapes[e] = cute::make_shape(r, static_cast<int>(n), static_cast<int>(k));
    t.a[e] = a + first * k;
    t.b[e] = b + e * n * k;
    t.d[e] = out + first * n;
    t.stride_a[e] = leading<typename GK::InternalStrideA>(k);
    t.stride_b[e] = leading<typename GK::InternalStrideB>(k);
    t.stride_d[e] = leading<typename GK::InternalStrideD>(n);
  } else if constexpr (K::pass == GroupedPass::kDgrad) {
    t.shapes[e] = cute::make_shape(r, static_cast<int>(k), static_cast<int>(n));
    t.a[e] = a + first * n;
    t.b[e] = b + e * n * k;
    t.d[e] = out + first * k;
    t.stride_a[e] = leading<typename GK::InternalStrideA>(n);
    t.stride_b[e] = leading<typename GK::InternalStrideB>(k);
    t.stride_d[e] = leading<typename GK::InternalStrideD>(k);
  } else {
    t.shapes[e] = cute::make_shape(r > 0 ? static_cast<int>(n) : 0, static_cast<int>(k), r);
    t.a[e] = a + first * n;
    t.b[e] = b + first * k;
    t.c[e] = out + e * n * k;
    t.d[e] = out + e * n * k;
    t.stride_a[e] = leading<typename GK::InternalStrideA>(n);
    t.stride_b[e] = leading<typename GK::InternalStrideB>(k);
    t.stride_c[e] = leading<typename GK::InternalStrideC>(k);
    t.stride_d[e] = leading<typename GK::InternalStrideD>(k);
  }
}

// ---- one call -----------------------------------------------------------------------------------
// The SM count and how many clusters of this kernel fit on the GPU at once (CUTLASS sizes the
// persistent grid from them), asked once per kernel.
template <class GK>
cutlass::KernelHardwareInfo hardware(int sm_count) {
  static const cutlass::KernelHardwareInfo info = [sm_count] {
    int device = 0;
    TMT_CUDA_CHECK(cudaGetDevice(&device));
    return cutlass::KernelHardwareInfo::make_kernel_hardware_info<GK>(device, sm_count);
  }();
  return info;
}

#define TMT_CUTLASS_CHECK(call, what)                                                          \
  do {                                                                                         \
    const cutlass::Status tmt_status_ = (call);                                                \
    TMT_CHECK(tmt_status_ == cutlass::Status::kSuccess, "grouped GEMM (CUTLASS {}): {} -> {}", \
              what, #call, cutlassGetStatusString(tmt_status_));                               \
  } while (0)

template <class K>
void run(const Call& call, const char* name) {
  using Gemm = typename K::Gemm;
  using GK = typename K::GemmKernel;
  const Tables<K> t = carve<K>(call.workspace, call.experts);
  const auto stream = static_cast<cudaStream_t>(call.stream);
  const TableArgs table_args{call.a,       call.b,    call.out, call.counts,
                             call.experts, call.rows, call.n,   call.k};
  build_tables<K><<<1, kGroupedGemmMaxExperts, 0, stream>>>(t, table_args);
  TMT_CUDA_CHECK_LAUNCH();

  typename Gemm::Arguments args{};
  args.mode = cutlass::gemm::GemmUniversalMode::kGrouped;
  args.problem_shape = {static_cast<int>(call.experts), t.shapes, nullptr};
  args.mainloop = {t.a, t.stride_a, t.b, t.stride_b};
  args.epilogue.thread.alpha = 1.0f;
  args.epilogue.thread.beta = K::kWgrad ? 1.0f : 0.0f;
  if constexpr (K::kWgrad) {
    args.epilogue.ptr_C = t.c;
    args.epilogue.dC = t.stride_c;
  }
  args.epilogue.ptr_D = t.d;
  args.epilogue.dD = t.stride_d;
  args.hw_info = hardware<GK>(call.sm_count);

  Gemm gemm;
  TMT_CUTLASS_CHECK(gemm.can_implement(args), name);
  const size_t offset = kTables * table_bytes(call.experts);
  const size_t needed = Gemm::get_workspace_size(args);
  TMT_CHECK(offset + needed <= call.workspace_bytes,
            "grouped GEMM (CUTLASS {}): needs {} bytes of workspace after its tables, has {}", name,
            needed, call.workspace_bytes - offset);
  void* cutlass_workspace = static_cast<std::byte*>(call.workspace) + offset;
  TMT_CUTLASS_CHECK(gemm.initialize(args, cutlass_workspace, stream), name);
  TMT_CUTLASS_CHECK(gemm.run(stream), name);
  TMT_CUDA_CHECK_LAUNCH();
}

// The configuration's kernel for the call's pass and output dtype.
template <class Config>
void dispatch(const Call& call, const char* name) {
  switch (call.pass) {
    case GroupedPass::kFwd:
      return run<Kernel<Config, GroupedPass::kFwd, Bf16>>(call, name);
    case GroupedPass::kDgrad:
      return run<Kernel<Config, GroupedPass::kDgrad, Bf16>>(call, name);
    case GroupedPass::kWgrad:
      if (call.out_f32) return run<Kernel<Config, GroupedPass::kWgrad, float>>(call, name);
      return run<Kernel<Config, GroupedPass::kWgrad, Bf16>>(call, name);
  }
}

}  // namespace tmt::cuda::cutlass_grouped
