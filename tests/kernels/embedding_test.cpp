// embedding: hand-checked lookup with a vocab shard and out-of-range ids; fp64 finite differences
// of the table gradient (accumulated on top of existing values); f32 against f64.
#include "kernels/embedding.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "kernels/base/arena.h"
#include "tests/support/compare.h"
#include "tests/support/grad_check.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

// EXPECT_TRUE(all_close(...)) that also prints the error it saw, for the record.
TEST(Embedding, ShardLookupByHand) {
  Arena a(Device::kCpu, 1 << 16, "test");
  // This rank owns ids [5, 8) of the vocabulary.
  Tensor table = a.alloc(DType::kF64, {3, 2});
  const std::vector<double> rows = {1, 2, 3, 4, 5, 6};
  std::copy(rows.begin(), rows.end(), table.ptr<double>());
  Tensor ids = a.alloc(DType::kI32, {6});
  const std::vector<int32_t> id = {5, 7, 4, 8, 6, 7};
  std::copy(id.begin(), id.end(), ids.ptr<int32_t>());
  Tensor out = a.alloc(DType::kF64, {6, 2});
  test::fill_uniform(out, 1);  // must be overwritten, zeros included
  embedding_fwd(kCpu, out, ids, table, 5);
  const std::vector<double> want = {1, 2, 5, 6, 0, 0, 0, 0, 3, 4, 5, 6};
  EXPECT_TRUE(test::all_close(test::to_doubles(out), want, 0.0));

  Tensor dout = a.alloc(DType::kF64, {6, 2});
  const std::vector<double> g = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
  std::copy(g.begin(), g.end(), dout.ptr<double>());
  Tensor dtable = a.alloc(DType::kF64, {3, 2});
  std::fill_n(dtable.ptr<double>(), 6, 1.0);
  embedding_bwd(kCpu, dtable, dout, ids, 5);
  // row 0 <- token 0; row 1 <- token 4; row 2 <- tokens 1 and 5; tokens 2, 3 are out of range.
  const std::vector<double> want_d = {11, 21, 91, 101, 1 + 30 + 110, 1 + 40 + 120};
  EXPECT_TRUE(test::all_close(test::to_doubles(dtable), want_d, 0.0));
}

TEST(Embedding, GradientCheckF64) {
  const int64_t n_tokens = 7, d = 12, v_local = 5, vocab_start = 3;
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor table = a.alloc(DType::kF64, {v_local, d});
  Tensor ids = a.alloc(DType::kI32, {n_tokens});
  Tensor out = a.alloc(DType::kF64, {n_tokens, d});
  Tensor dy = a.alloc(DType::kF64, {n_tokens, d});
  Tensor dtable = a.alloc(DType::kF64, {v_local, d});
  test::fill_normal(table, 11);
  test::fill_uniform(ids, 12, 0, 11);  // ids in [0, 11): some below 3, some above 7, some repeated
  test::fill_normal(dy, 13);
  test::fill_normal(dtable, 14);  // existing gradient: the backward must add to it
  const std::vector<double> before = test::to_doubles(dtable);

  auto loss = [&] {
    embedding_fwd(kCpu, out, ids, table, vocab_start);
    return test::dot(dy, out);
  };
  const std::vector<double> numeric = test::numeric_gradient(loss, table);
  embedding_bwd(kCpu, dtable, dy, ids, vocab_start);
  std::vector<double> added = test::to_doubles(dtable);
  for (size_t i = 0; i < added.size(); ++i) added[i] -= before[i];
  test::expect_close(added, numeric, 1e-8, "dtable vs finite differences");
}

TEST(Embedding, F32MatchesF64) {
  const int64_t n_tokens = 13, d = 9, v_local = 6, vocab_start = 2;
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor ids = a.alloc(DType::kI32, {n_tokens});
  test::fill_uniform(ids, 21, -1, 10);
  Tensor out[2], dtable[2], table[2], dout[2];
  const DType types[2] = {DType::kF32, DType::kF64};
  for (int k = 0; k < 2; ++k) {
    table[k] = a.alloc(types[k], {v_local, d});
    dout[k] = a.alloc(types[k], {n_tokens, d});
    out[k] = a.alloc(types[k], {n_tokens, d});
    dtable[k] = a.alloc(types[k], {v_local, d});
    test::fill_normal(table[k], 22);
    test::fill_normal(dout[k], 23);
    test::fill_normal(dtable[k], 24);
    embedding_fwd(kCpu, out[k], ids, table[k], vocab_start);
    embedding_bwd(kCpu, dtable[k], dout[k], ids, vocab_start);
  }
  EXPECT_TRUE(test::all_close(out[0], out[1], 1e-6));
  EXPECT_TRUE(test::all_close(dtable[0], dtable[1], 1e-6));
}

TEST(EmbeddingDeathTest, BadArgumentsAreFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Arena a(Device::kCpu, 1 << 12, "test");
  Tensor table = a.alloc(DType::kF32, {4, 3}), ids = a.alloc(DType::kI32, {2});
  EXPECT_EXIT(embedding_fwd(kCpu, a.alloc(DType::kF64, {2, 3}), ids, table),
              ::testing::ExitedWithCode(1), "embedding_fwd: table .* must share a dtype");
  EXPECT_EXIT(embedding_fwd(kCpu, a.alloc(DType::kF32, {2, 4}), ids, table),
              ::testing::ExitedWithCode(1), "embedding_fwd: rows .* do not match");
  // A CUDA context is checked by the same dispatch, with CUDA's dtypes (no f64): refused before any
  // kernel runs (the pointers are never read).
  const Context gpu{Device::kCuda, nullptr};
  auto on_gpu = [](Tensor t) {
    t.device = Device::kCuda;
    return t;
  };
  Tensor table64 = a.alloc(DType::kF64, {4, 3}), out64 = a.alloc(DType::kF64, {2, 3});
  EXPECT_EXIT(embedding_fwd(gpu, on_gpu(out64), on_gpu(ids), on_gpu(table64)),
              ::testing::ExitedWithCode(1), "embedding_fwd: table .* must share a dtype");
}

}  // namespace
}  // namespace tmt
