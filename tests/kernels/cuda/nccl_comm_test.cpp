// The NCCL communicator on one GPU (one rank: NCCL refuses two ranks on a GPU, so the multi-rank
// behaviour is covered by the MPI communicator's tests and by runs on real clusters). Device
// tensors go through NCCL, host tensors through the MPI twin; every call must leave the exact
// values a one-rank group implies, and all_to_all_v must honour send offsets.
#include "parallel/nccl_comm.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "kernels/base/arena.h"
#include "kernels/cuda/runtime.h"
#include "parallel/mpi_env.h"
#include "tests/support/cuda_io.h"

namespace tmt {
namespace {

Communicator& nccl_world() {
  static int argc = 1;
  static char name[] = "nccl_comm_test";
  static char* args[] = {name, nullptr};
  static char** argv = args;
  static MpiEnvironment mpi(&argc, &argv);
  static std::unique_ptr<Communicator> self = mpi_self();
  static std::unique_ptr<Communicator> comm = nccl_communicator(*self, nullptr);
  return *comm;
}

std::vector<float> iota(size_t n, float from) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

std::vector<float> read(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  cuda::synchronize(nullptr);
  cuda::copy(v.data(), t.data, t.nbytes());
  return v;
}

TEST(NcclComm, OneRankCollectivesKeepTheValues) {
  Communicator& c = nccl_world();
  ASSERT_EQ(c.size(), 1);
  Arena dev(Device::kCuda, 1 << 20, "device");
  const std::vector<float> x = iota(24, 1.0f);
  Tensor a = dev.alloc(DType::kF32, {6, 4}), b = dev.alloc(DType::kF32, {6, 4});
  cuda::copy(a.data, x.data(), a.nbytes());
  c.all_reduce(a);
  EXPECT_EQ(read(a), x);
  c.all_reduce(a, ReduceOp::kMax);
  EXPECT_EQ(read(a), x);
  c.reduce_scatter(b, a);
  EXPECT_EQ(read(b), x);
  c.all_gather(b, a);
  EXPECT_EQ(read(b), x);
  c.all_gather(a, a);  // in place
  EXPECT_EQ(read(a), x);
  c.broadcast(a, 0);
  EXPECT_EQ(read(a), x);
  // rows 2..4 of a, sent to this rank from an offset
  Tensor out = dev.alloc(DType::kF32, {3, 4});
  c.all_to_all_v(out, {3}, a, {3}, {2});
  EXPECT_EQ(read(out), std::vector<float>(x.begin() + 8, x.begin() + 20));
  c.barrier();
}

TEST(NcclComm, HostTensorsGoThroughMpiAndSplitsWork) {
  Communicator& c = nccl_world();
  EXPECT_DOUBLE_EQ(c.all_reduce_scalar(3.25), 3.25);
  auto sub = c.split(0, 0);
  ASSERT_EQ(sub->size(), 1);
  Arena dev(Device::kCuda, 1 << 16, "device");
  Tensor t = dev.alloc(DType::kF32, {5});
  const std::vector<float> x = iota(5, -2.0f);
  cuda::copy(t.data, x.data(), t.nbytes());
  sub->all_reduce(t);
  EXPECT_EQ(read(t), x);
}

// A device tensor gathered into a host one (a checkpoint's zero1 moments), and bf16 over NCCL.
TEST(NcclComm, MixedHostAndDeviceTensorsAndBf16) {
  Communicator& c = nccl_world();
  Arena dev(Device::kCuda, 1 << 16, "device");
  const std::vector<float> x = iota(6, 0.5f);
  Tensor d = dev.alloc(DType::kF32, {6});
  cuda::copy(d.data, x.data(), d.nbytes());
  std::vector<float> host(6, -1.0f);
  c.all_gather(Tensor{host.data(), DType::kF32, Device::kCpu, Shape{6}}, d);
  EXPECT_EQ(host, x);
  std::vector<uint16_t> bits(6);
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = float_to_bf16(x[i]);
  Tensor b = dev.alloc(DType::kBF16, {6});
  cuda::copy(b.data, bits.data(), b.nbytes());
  c.all_reduce(b);
  std::vector<uint16_t> back(6);
  cuda::synchronize(nullptr);
  cuda::copy(back.data(), b.data, b.nbytes());
  EXPECT_EQ(back, bits);
}

}  // namespace
}  // namespace tmt
