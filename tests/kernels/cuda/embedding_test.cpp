// embedding on CUDA against the CPU reference: whole and vocab-parallel tables (vocab_start > 0),
// ids outside the table (zero rows forward, nothing backward), repeated ids (accumulated backward).
// f32 to 1e-5, bf16 to 1e-2 against the reference run in f32 on the bf16-rounded inputs; bf16 rows
// into an f32 dtable (fp32 gradient accumulation) to 1e-5, since only the inputs are rounded.
#include "kernels/embedding.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

void check(DType dtype, int64_t tokens, int64_t v_local, int64_t d, int64_t vocab_start,
           uint64_t seed, DType grad_dtype) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " dtable " + std::string(dtype_name(grad_dtype)) +
               " T=" + std::to_string(tokens) + " V_local=" + std::to_string(v_local) +
               " D=" + std::to_string(d) + " vocab_start=" + std::to_string(vocab_start));
  const size_t bytes = 8 * 8 * static_cast<size_t>((tokens + v_local) * d) + 65536;
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const double tol = grad_dtype == DType::kBF16 ? 1e-2 : 1e-5;

  // ids reach below and above this shard's rows, and below zero.
  Tensor ids = host.alloc(DType::kI32, {tokens});
  test::fill_uniform(ids, seed, static_cast<double>(vocab_start - 20),
                     static_cast<double>(vocab_start + v_local + 20));
  store_element(DType::kI32, ids.data, 0, -1.0);
  Tensor table = host.alloc(DType::kF32, {v_local, d});
  Tensor dtable = host.alloc(DType::kF32, {v_local, d});
  Tensor dout = host.alloc(DType::kF32, {tokens, d});
  test::fill_normal(table, seed + 1);
  test::fill_normal(dtable, seed + 2);
  test::fill_normal(dout, seed + 3);
  for (const Tensor& t : {table, dout}) test::round_to(t, dtype);
  test::round_to(dtable, grad_dtype);

  Tensor idsd = test::to_device(dev, ids);
  Tensor tabled = test::to_device_as(dev, host, table, dtype);
  Tensor dtabled = test::to_device_as(dev, host, dtable, grad_dtype);
  Tensor doutd = test::to_device_as(dev, host, dout, dtype);

  Tensor out = host.alloc(DType::kF32, {tokens, d});
  embedding_fwd(kCpu, out, ids, table, vocab_start);
  Tensor outd = dev.alloc(dtype, {tokens, d});
  test::poison(outd);
  embedding_fwd(test::gpu(), outd, idsd, tabled, vocab_start);
  // A lookup copies values: exact.
  EXPECT_TRUE(test::all_close(test::to_host(host, outd), out, 0.0)) << "out";

  embedding_bwd(kCpu, dtable, dout, ids, vocab_start);
  embedding_bwd(test::gpu(), dtabled, doutd, idsd, vocab_start);
  test::expect_close(test::to_doubles(test::to_host(host, dtabled)), test::to_doubles(dtable), tol,
                     "dtable");
}

TEST(CudaEmbedding, MatchesReference) {
  uint64_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    check(dtype, 37, 1001, 100, 0, seed += 10, dtype);
    check(dtype, 513, 1001, 64, 500, seed += 10, dtype);
    check(dtype, 300, 101, 33, 7, seed += 10, dtype);
  }
  // Many tokens into few rows: the atomics' order must not matter beyond rounding.
  check(DType::kF32, 4000, 5, 128, 0, seed += 10, DType::kF32);
}

TEST(CudaEmbedding, Bf16RowsIntoF32TableMatchReference) {
  uint64_t seed = 500;
  check(DType::kBF16, 37, 1001, 100, 0, seed += 10, DType::kF32);
  check(DType::kBF16, 513, 1001, 64, 500, seed += 10, DType::kF32);
  check(DType::kBF16, 4000, 5, 128, 0, seed += 10, DType::kF32);
}

}  // namespace
}  // namespace tmt
