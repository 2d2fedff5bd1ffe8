// The MPI communicator: every collective with rank-dependent values whose results are known in
// closed form, ragged all-to-all (including ranks that send nothing), a send/recv ring, and split.
// ranks: 1 2 3 4
#include "parallel/comm.h"

#include <gtest/gtest.h>

#include "kernels/base/arena.h"
#include "kernels/base/dtype.h"

namespace tmt {
namespace {

TEST(Comm, AllReduceSumMaxAndScalar) {
  auto world = mpi_world();
  const int r = world->rank(), n = world->size();
  Arena a(Device::kCpu, 1 << 12, "t");
  Tensor t = a.alloc(DType::kF64, {5});
  for (int i = 0; i < 5; ++i) t.ptr<double>()[i] = (r + 1) * (i + 1);
  world->all_reduce(t, ReduceOp::kSum);
  for (int i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(t.ptr<double>()[i], (i + 1) * n * (n + 1) / 2.0);
  Tensor m = a.alloc(DType::kI64, {1});
  m.ptr<int64_t>()[0] = 10 * r;
  world->all_reduce(m, ReduceOp::kMax);
  EXPECT_EQ(m.ptr<int64_t>()[0], 10 * (n - 1));
  EXPECT_DOUBLE_EQ(world->all_reduce_scalar(0.5, ReduceOp::kSum), 0.5 * n);
}

TEST(Comm, ReduceScatterAndAllGather) {
  auto world = mpi_world();
  const int r = world->rank(), n = world->size();
  Arena a(Device::kCpu, 1 << 14, "t");
  Tensor in = a.alloc(DType::kF32, {n * 3}), out = a.alloc(DType::kF32, {3});
  for (int i = 0; i < n * 3; ++i) in.ptr<float>()[i] = static_cast<float>(i + 100 * r);
  world->reduce_scatter(out, in);
  // chunk r summed over ranks q: Σ_q (3r + j + 100 q)
  for (int j = 0; j < 3; ++j)
    EXPECT_FLOAT_EQ(out.ptr<float>()[j],
                    static_cast<float>(n * (3 * r + j) + 100 * n * (n - 1) / 2));
  Tensor gathered = a.alloc(DType::kF32, {n * 3});
  world->all_gather(gathered, out);
  for (int q = 0; q < n; ++q) {
    EXPECT_FLOAT_EQ(gathered.ptr<float>()[q * 3],
                    static_cast<float>(n * 3 * q + 100 * n * (n - 1) / 2));
  }
}

// Every collective and message at sizes that do not divide into the pieces a call moves at most
// (run again as comm_test_in_pieces with pieces of 3 elements: tests/CMakeLists.txt), bf16
// reductions included; the results in closed form.
TEST(Comm, TensorsOfManyPiecesArriveWhole) {
  auto world = mpi_world();
  const int r = world->rank(), n = world->size();
  constexpr int kLen = 11;  // 3 + 3 + 3 + 2
  Arena a(Device::kCpu, 1 << 16, "t");
  Tensor t = a.alloc(DType::kF64, {kLen});
  for (int i = 0; i < kLen; ++i) t.ptr<double>()[i] = (r + 1) * (i + 1);
  world->all_reduce(t);
  for (int i = 0; i < kLen; ++i) EXPECT_DOUBLE_EQ(t.ptr<double>()[i], (i + 1) * n * (n + 1) / 2.0);

  Tensor h = a.alloc(DType::kBF16, {kLen});
  for (int i = 0; i < kLen; ++i) h.ptr<uint16_t>()[i] = float_to_bf16(static_cast<float>(i + r));
  world->all_reduce(h);
  for (int i = 0; i < kLen; ++i)
    EXPECT_EQ(bf16_to_float(h.ptr<uint16_t>()[i]), static_cast<float>(n * i + n * (n - 1) / 2));

  Tensor in = a.alloc(DType::kF32, {n * kLen}), out = a.alloc(DType::kF32, {kLen});
  for (int i = 0; i < n * kLen; ++i) in.ptr<float>()[i] = static_cast<float>(i + 1000 * r);
  world->reduce_scatter(out, in);
  for (int j = 0; j < kLen; ++j) {
    EXPECT_FLOAT_EQ(out.ptr<float>()[j],
                    static_cast<float>(n * (kLen * r + j) + 1000 * n * (n - 1) / 2));
  }
  Tensor mine = a.alloc(DType::kI32, {kLen}), all = a.alloc(DType::kI32, {n * kLen});
  for (int i = 0; i < kLen; ++i) mine.ptr<int32_t>()[i] = 100 * r + i;
  world->all_gather(all, mine);
  for (int q = 0; q < n; ++q) {
    for (int i = 0; i < kLen; ++i) EXPECT_EQ(all.ptr<int32_t>()[q * kLen + i], 100 * q + i);
  }

  // Rank q sends q + 4 rows of two values to each rank.
  std::vector<int64_t> send(static_cast<size_t>(n), r + 4), recv(static_cast<size_t>(n));
  for (int q = 0; q < n; ++q) recv[static_cast<size_t>(q)] = q + 4;
  int64_t received = 0;
  for (int64_t c : recv) received += c;
  Tensor rows_in = a.alloc(DType::kI32, {n * (r + 4), 2}),
         rows_out = a.alloc(DType::kI32, {received, 2});
  for (int64_t i = 0; i < rows_in.numel(); ++i)
    rows_in.ptr<int32_t>()[i] = 1000 * r + static_cast<int32_t>(i);
  world->all_to_all_v(rows_out, recv, rows_in, send);
  int64_t row = 0;
  for (int q = 0; q < n; ++q) {
    // rows [r·(q+4), (r+1)·(q+4)) of rank q's input
    for (int64_t k = 0; k < 2 * (q + 4); ++k) {
      EXPECT_EQ(rows_out.ptr<int32_t>()[2 * row + k], 1000 * q + 2 * r * (q + 4) + k)
          << "from rank " << q;
    }
    row += q + 4;
  }

  Tensor b = a.alloc(DType::kF32, {kLen});
  for (int i = 0; i < kLen; ++i) b.ptr<float>()[i] = r == 0 ? static_cast<float>(i) : -1.0f;
  world->broadcast(b, 0);
  for (int i = 0; i < kLen; ++i) EXPECT_EQ(b.ptr<float>()[i], static_cast<float>(i));

  if (n > 1) {  // a ring: to the next rank, from the previous
    Tensor msg = a.alloc(DType::kI64, {kLen}), got = a.alloc(DType::kI64, {kLen});
    for (int i = 0; i < kLen; ++i) msg.ptr<int64_t>()[i] = 10 * r + i;
    auto request = world->isend(msg, (r + 1) % n, 5);
    world->recv(got, (r + n - 1) % n, 5);
    request->wait();
    for (int i = 0; i < kLen; ++i) EXPECT_EQ(got.ptr<int64_t>()[i], 10 * ((r + n - 1) % n) + i);
  }
}

// bf16 has no MPI type: it moves as 16-bit words and is summed through f32. Small integers are
// exact in bf16, so the results are known exactly; 1 + 2^-9 per rank is not, and shows that the sum
// is rounded once, at the end (bf16 sums rank by rank would stay at 1 each time).
TEST(Comm, Bf16ReducesThroughF32AndMovesBitExactly) {
  auto world = mpi_world();
  const int r = world->rank(), n = world->size();
  Arena a(Device::kCpu, 1 << 14, "t");
  const auto bf = [](const Tensor& t, int64_t i) {
    return bf16_to_float(t.ptr<uint16_t>()[static_cast<size_t>(i)]);
  };
  const auto set = [](const Tensor& t, int64_t i, float v) {
    t.ptr<uint16_t>()[static_cast<size_t>(i)] = float_to_bf16(v);
  };
  Tensor t = a.alloc(DType::kBF16, {4});
  for (int i = 0; i < 3; ++i) set(t, i, static_cast<float>((r + 1) * (i + 1)));
  set(t, 3, 1.0f + 1.0f / 512);  // rounds to 1 in bf16: each rank adds 1
  world->all_reduce(t, ReduceOp::kSum);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(bf(t, i), static_cast<float>((i + 1) * n * (n + 1) / 2));
  EXPECT_EQ(bf(t, 3), static_cast<float>(n));
  Tensor mx = a.alloc(DType::kBF16, {1});
  set(mx, 0, static_cast<float>(-r));
  world->all_reduce(mx, ReduceOp::kMin);
  EXPECT_EQ(bf(mx, 0), static_cast<float>(-(n - 1)));

  Tensor in = a.alloc(DType::kBF16, {n * 2}), out = a.alloc(DType::kBF16, {2});
  for (int i = 0; i < n * 2; ++i) set(in, i, static_cast<float>(i + 10 * r));
  world->reduce_scatter(out, in);
  for (int j = 0; j < 2; ++j)
    EXPECT_EQ(bf(out, j), static_cast<float>(n * (2 * r + j) + 10 * n * (n - 1) / 2));
  Tensor gathered = a.alloc(DType::kBF16, {n * 2});
  world->all_gather(gathered, out);
  for (int q = 0; q < n; ++q)
    EXPECT_EQ(gathered.ptr<uint16_t>()[2 * q + 1],
              float_to_bf16(static_cast<float>(n * (2 * q + 1) + 10 * n * (n - 1) / 2)));
}

TEST(Comm, AllToAllVWithRaggedCounts) {
  auto world = mpi_world();
  const int r = world->rank(), n = world->size();
  // rank r sends (r + q) % 3 rows of width 2 to rank q; row values encode (sender, receiver, row).
  std::vector<int64_t> send(static_cast<size_t>(n)), recv(static_cast<size_t>(n));
  int64_t send_total = 0, recv_total = 0;
  for (int q = 0; q < n; ++q) {
    send[static_cast<size_t>(q)] = (r + q) % 3;
    recv[static_cast<size_t>(q)] = (q + r) % 3;
    send_total += send[static_cast<size_t>(q)];
    recv_total += recv[static_cast<size_t>(q)];
  }
  Arena a(Device::kCpu, 1 << 14, "t");
  Tensor in = a.alloc(DType::kF64, {send_total, 2}), out = a.alloc(DType::kF64, {recv_total, 2});
  int64_t row = 0;
  for (int q = 0; q < n; ++q) {
    for (int64_t i = 0; i < send[static_cast<size_t>(q)]; ++i, ++row) {
      in.ptr<double>()[row * 2] = 1000 * r + 10 * q + static_cast<double>(i);
      in.ptr<double>()[row * 2 + 1] = -1;
    }
  }
  world->all_to_all_v(out, recv, in, send);
  row = 0;
  for (int q = 0; q < n; ++q) {
    for (int64_t i = 0; i < recv[static_cast<size_t>(q)]; ++i, ++row) {
      EXPECT_DOUBLE_EQ(out.ptr<double>()[row * 2], 1000 * q + 10 * r + static_cast<double>(i));
      EXPECT_DOUBLE_EQ(out.ptr<double>()[row * 2 + 1], -1);
    }
  }
}

TEST(Comm, AllToAllVSendsOverlappingBlocks) {
  // Every rank sends its rows [q/2, q/2 + 2) to rank q: neighbouring ranks get overlapping blocks.
  auto world = mpi_world();
  const int r = world->rank(), n = world->size();
  const int64_t rows = n / 2 + 2;
  Arena a(Device::kCpu, 1 << 14, "t");
  Tensor in = a.alloc(DType::kF32, {rows, 3}), out = a.alloc(DType::kF32, {2 * n, 3});
  for (int64_t i = 0; i < rows * 3; ++i) in.ptr<float>()[i] = static_cast<float>(100 * r + i);
  std::vector<int64_t> count(static_cast<size_t>(n), 2), first(static_cast<size_t>(n));
  for (int q = 0; q < n; ++q) first[static_cast<size_t>(q)] = q / 2;
  world->all_to_all_v(out, count, in, count, first);
  for (int q = 0; q < n; ++q) {
    for (int64_t i = 0; i < 6; ++i) {  // from rank q: its rows r/2, r/2 + 1
      EXPECT_EQ(out.ptr<float>()[q * 6 + i], static_cast<float>(100 * q + (r / 2) * 3 + i));
    }
  }
}

TEST(Comm, NonBlockingSendsArriveInOrder) {
  // Each rank posts three sends to the next before it receives from the previous.
  auto world = mpi_world();
  const int r = world->rank(), n = world->size();
  Arena a(Device::kCpu, 1 << 12, "t");
  std::vector<Tensor> out;
  std::vector<std::unique_ptr<SendRequest>> sent;
  for (int i = 0; i < 3; ++i) {
    out.push_back(a.alloc(DType::kF64, {4}));
    for (int j = 0; j < 4; ++j) out.back().ptr<double>()[j] = 10 * r + i;
    sent.push_back(world->isend(out.back(), (r + 1) % n, 5));
  }
  Tensor in = a.alloc(DType::kF64, {4});
  for (int i = 0; i < 3; ++i) {
    world->recv(in, (r + n - 1) % n, 5);
    EXPECT_EQ(in.ptr<double>()[3], 10 * ((r + n - 1) % n) + i);
  }
  for (auto& s : sent) s->wait();
}

TEST(Comm, RingSendRecvBroadcastAndSplit) {
  auto world = mpi_world();
  const int r = world->rank(), n = world->size();
  Arena a(Device::kCpu, 1 << 12, "t");
  Tensor x = a.alloc(DType::kI32, {2}), y = a.alloc(DType::kI32, {2});
  x.ptr<int32_t>()[0] = r;
  x.ptr<int32_t>()[1] = r * r;
  if (n > 1) {
    // even ranks send first, odd ranks receive first: no deadlock with blocking calls
    const int next = (r + 1) % n, prev = (r + n - 1) % n;
    if (r % 2 == 0) {
      world->send(x, next, 7);
      world->recv(y, prev, 7);
    } else {
      world->recv(y, prev, 7);
      world->send(x, next, 7);
    }
    EXPECT_EQ(y.ptr<int32_t>()[0], prev);
    EXPECT_EQ(y.ptr<int32_t>()[1], prev * prev);
  }
  Tensor b = a.alloc(DType::kF64, {1});
  b.ptr<double>()[0] = r == n - 1 ? 3.25 : 0.0;
  world->broadcast(b, n - 1);
  EXPECT_DOUBLE_EQ(b.ptr<double>()[0], 3.25);
  // Split into even and odd ranks, ordered by descending rank.
  auto half = world->split(r % 2, -r);
  EXPECT_EQ(half->size(), (n + 1 - r % 2) / 2);
  EXPECT_DOUBLE_EQ(half->all_reduce_scalar(r),
                   r % 2 == 0 ? (n - 1) / 2 * ((n - 1) / 2 + 1) : ((n / 2) * (n / 2)));
  world->barrier();
}

}  // namespace
}  // namespace tmt
