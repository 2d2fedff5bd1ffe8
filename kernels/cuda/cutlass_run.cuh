// One CUTLASS 3.x device GEMM (GemmUniversalAdapter) run on a stream, each step checked: the
// workspace the caller gives against what CUTLASS asks, can_implement (with the shape in the
// message), initialize, run. For the single-problem kernels (fp8_gemm_sm90.cu,
// mxfp8_gemm_sm100.cu); include after CUTLASS's headers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cutlass/cutlass.h"
#include "kernels/base/check.h"

namespace tmt::cuda {

template <class Gemm>
void run_cutlass(const char* op, const typename Gemm::Arguments& args, int64_t m, int64_t n,
                 int64_t k, void* workspace, size_t workspace_bytes, void* stream) {
  const size_t needed = Gemm::get_workspace_size(args);
  TMT_CHECK(needed <= workspace_bytes, "{}: {} workspace bytes, CUTLASS asks {}", op,
            workspace_bytes, needed);
  Gemm gemm;
  TMT_CHECK(gemm.can_implement(args) == cutlass::Status::kSuccess,
            "{}: CUTLASS cannot run [{}, {}] x [{}, {}]^T", op, m, k, n, k);
  const auto s = static_cast<cudaStream_t>(stream);
  TMT_CHECK(gemm.initialize(args, workspace, s) == cutlass::Status::kSuccess,
            "{}: initialize failed", op);
  TMT_CHECK(gemm.run(s) == cutlass::Status::kSuccess, "{}: launch failed", op);
}

}  // namespace tmt::cuda
