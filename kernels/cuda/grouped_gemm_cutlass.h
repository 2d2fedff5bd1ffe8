// Between grouped_gemm.cu and the CUTLASS instantiations (grouped_gemm_cutlass.cuh), which live
// in one translation unit per tile configuration (grouped_gemm_cutlass_<tile>.cu) so that they
// compile in parallel and a change to one does not rebuild the others. Plain C++: no CUTLASS or
// CUDA types.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/grouped_gemm.h"

namespace tmt::cuda::cutlass_grouped {

// One pass's operands (grouped_gemm.h has the formulas): raw device pointers, the shapes, the
// device counts and the workspace the tables and CUTLASS's own scratch are carved from.
struct Call {
  GroupedPass pass = GroupedPass::kFwd;
  const void* a = nullptr;  // bf16
  const void* b = nullptr;  // bf16
  void* out = nullptr;      // bf16, or f32 for kWgrad with out_f32
  bool out_f32 = false;
  int64_t rows = 0, n = 0, k = 0, experts = 0;
  const int64_t* counts = nullptr;  // device, [experts]
  void* workspace = nullptr;        // device, workspace_bytes(experts) bytes
  size_t workspace_bytes = 0;
  int sm_count = 0;
  void* stream = nullptr;  // cudaStream_t
};

// Each table entry is at most this many bytes (problem size, pointer or stride; checked by
// static_assert where the tables are written), each table starts at a kTableAlign boundary.
constexpr size_t kTableEntryBytes = 16;
constexpr size_t kTableAlign = 256;
constexpr int kTables = 9;  // problem sizes; pointers A, B, C, D; strides A, B, C, D
// CUTLASS's workspace for a grouped kernel is a copy of each TMA descriptor (128 bytes) per SM:
// A and B for the mainloop, D of each of the two epilogue warp groups and C. The bound below is
// twice that for 256 SMs; each call checks what CUTLASS asks against what it was given.
constexpr size_t kCutlassWorkspaceBytes = size_t{2} * 5 * 128 * 256;

inline size_t round_up(size_t bytes, size_t to) { return (bytes + to - 1) / to * to; }
inline size_t table_bytes(int64_t experts) {
  return round_up(static_cast<size_t>(experts) * kTableEntryBytes, kTableAlign);
}
inline size_t workspace_bytes(int64_t experts) {
  return kTables * table_bytes(experts) + kCutlassWorkspaceBytes;
}

// Whether this binary holds the sm_90a kernels (TMT_CUDA_ARCHS includes 90a).
bool compiled();

// One a tile configuration. Fatal when CUTLASS refuses the arguments or fails to launch.
void run_cooperative_128x256(const Call& call);
void run_cooperative_128x128(const Call& call);
void run_pingpong_128x128(const Call& call);

}  // namespace tmt::cuda::cutlass_grouped
