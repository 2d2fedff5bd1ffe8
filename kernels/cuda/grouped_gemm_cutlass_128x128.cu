// CUTLASS grouped GEMM, cooperative 128x128x64 tiles in 2x1 clusters: the four kernels of
// grouped_gemm_cutlass.cuh (fwd, dgrad, wgrad into bf16 or f32). Without sm_90a in TMT_CUDA_ARCHS
// this file compiles to a stub (grouped_gemm_supported never picks it).
#if TMT_CUTLASS_SM90
#include "kernels/cuda/grouped_gemm_cutlass.cuh"
#else
#include "kernels/base/check.h"
#include "kernels/cuda/grouped_gemm_cutlass.h"
#endif

namespace tmt::cuda::cutlass_grouped {

void run_cooperative_128x128([[maybe_unused]] const Call& call) {
#if TMT_CUTLASS_SM90
  dispatch<Cooperative128x128>(call, "cooperative 128x128x64 tiles");
#else
  TMT_CHECK(false, "grouped GEMM: this build has no sm_90a kernels (TMT_CUDA_ARCHS)");
#endif
}

}  // namespace tmt::cuda::cutlass_grouped
