#include "kernels/embedding.h"

#include <algorithm>

#include "kernels/base/profiler.h"
#include "kernels/cpu/embedding.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/embedding.h"
#endif

namespace tmt {
namespace {

// table / dtable: [V_local, D]; rows: out / dout [T, D]; ids: [T] i32; all on ctx.device. With
// `f32_table_ok` (the backward on CUDA) an f32 dtable may take bf16 rows: fp32 accumulation.
void check_args(const char* op, const Context& ctx, const Tensor& table, const Tensor& rows,
                const Tensor& ids, bool f32_table_ok = false) {
  TMT_CHECK(table.rank() == 2 && rows.rank() == 2 && ids.rank() == 1,
            "{}: table {}, rows {}, ids {}", op, table.str(), rows.str(), ids.str());
  TMT_CHECK(rows.size(0) == ids.size(0) && rows.size(1) == table.size(1),
            "{}: rows {} do not match ids {} and table {}", op, rows.str(), ids.str(), table.str());
  TMT_CHECK(ids.dtype == DType::kI32, "{}: ids must be i32, got {}", op, ids.str());
  const bool dtype_ok = rows.dtype == DType::kF32 ||
                        rows.dtype == (ctx.device == Device::kCpu ? DType::kF64 : DType::kBF16);
  const bool f32_table = f32_table_ok && ctx.device == Device::kCuda &&
                         rows.dtype == DType::kBF16 && table.dtype == DType::kF32;
  TMT_CHECK((table.dtype == rows.dtype || f32_table) && dtype_ok,
            "{}: table {} and rows {} must share a dtype (f32|f64 on cpu, f32|bf16 on cuda)", op,
            table.str(), rows.str());
  TMT_CHECK(table.device == ctx.device && rows.device == ctx.device && ids.device == ctx.device,
            "{}: tensors {}, {}, {} not all on {}", op, table.str(), rows.str(), ids.str(),
            device_name(ctx.device));
}

// Costs: ids and the [T, D] rows once; of the table, at most min(T, V_local) rows are touched (read
// forward; read and written, one addition an element, backward).
double table_rows_bytes(const Tensor& table, const Tensor& ids) {
  if (table.size(0) == 0) return 0;
  const auto rows = static_cast<double>(std::min(ids.size(0), table.size(0)));
  return bytes_of(table) * rows / static_cast<double>(table.size(0));
}

}  // namespace

void embedding_fwd(const Context& ctx, const Tensor& out, const Tensor& ids, const Tensor& table,
                   int64_t vocab_start) {
  check_args("embedding_fwd", ctx, table, out, ids);
  const ProfileScope scope(ctx, "embedding_fwd",
                           {0, bytes_of(ids, out) + table_rows_bytes(table, ids)});
  if (ctx.device == Device::kCpu) return cpu::embedding_fwd(out, ids, table, vocab_start);
#if TMT_WITH_CUDA
  return cuda::embedding_fwd(ctx, out, ids, table, vocab_start);
#else
  TMT_CHECK(false, "embedding_fwd: this build has no CUDA backend");
#endif
}

void embedding_bwd(const Context& ctx, const Tensor& dtable, const Tensor& dout, const Tensor& ids,
                   int64_t vocab_start) {
  check_args("embedding_bwd", ctx, dtable, dout, ids, /*f32_table_ok=*/true);
  const ProfileScope scope(
      ctx, "embedding_bwd",
      {static_cast<double>(dout.numel()), bytes_of(ids, dout) + 2 * table_rows_bytes(dtable, ids)});
  if (ctx.device == Device::kCpu) return cpu::embedding_bwd(dtable, dout, ids, vocab_start);
#if TMT_WITH_CUDA
  return cuda::embedding_bwd(ctx, dtable, dout, ids, vocab_start);
#else
  TMT_CHECK(false, "embedding_bwd: this build has no CUDA backend");
#endif
}

}  // namespace tmt
