// The training path on the GPU against the CPU, in fp32, on the small MoE the parallel tests train
// (tests/support/small_moe.h): (a) one micro-batch's forward and backward through the whole model —
// the loss parts and every parameter's gradient; (b) 20 optimizer steps of the Trainer — every
// step's loss. Both within 1e-4 relative (by norm for the gradients).
//
// timeout: 300
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "kernels/base/rng.h"
#include "parallel/mpi_env.h"
#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/small_moe.h"
#include "trainer/trainer.h"

namespace tmt {
namespace {

constexpr double kRtol = 1e-4;

Recipe small_moe(const std::vector<std::string>& overrides = {}) {
  Recipe r = parse_recipe(test::kSmallMoeRecipe, "small_moe", overrides);
  resolve_layout(r, 1);
  return r;
}

TEST(CudaTraining, ModelForwardBackwardMatchesCpu) {
  const Recipe r = small_moe();
  const int64_t b = r.train.micro_batch, s = r.data.seq_len, t = b * s;
  Arena host(Device::kCpu, 1 << 20, "host");
  Arena device(Device::kCuda, 1 << 20, "device");
  const MicroBatch cpu_batch{host.alloc(DType::kI32, {b, s}), host.alloc(DType::kI32, {b, s})};
  for (int64_t i = 0; i < t; ++i) {
    const auto k = static_cast<uint64_t>(i);
    cpu_batch.inputs.ptr<int32_t>()[i] =
        static_cast<int32_t>(random_bits(11, 1, k) % static_cast<uint64_t>(r.model.vocab_size));
    cpu_batch.targets.ptr<int32_t>()[i] =
        i % 9 == 4 ? -1
                   : static_cast<int32_t>(random_bits(11, 2, k) %
                                          static_cast<uint64_t>(r.model.vocab_size));
  }
  const MicroBatch gpu_batch{test::to_device(device, cpu_batch.inputs),
                             test::to_device(device, cpu_batch.targets)};

  Model cpu(r, Context{Device::kCpu, nullptr}, DType::kF32, b);
  Model gpu(r, Context{Device::kCuda, nullptr}, DType::kF32, b);
  cpu.params().zero_grads();
  gpu.params().zero_grads();
  const LossParts want = cpu.forward_backward(cpu_batch, 1.0 / 29.0, 0.5);
  const LossParts got = gpu.forward_backward(gpu_batch, 1.0 / 29.0, 0.5);
  EXPECT_EQ(got.lm_tokens, want.lm_tokens);
  test::expect_close(std::vector<double>{got.lm_loss_sum, got.aux_loss, got.z_loss},
                     std::vector<double>{want.lm_loss_sum, want.aux_loss, want.z_loss}, kRtol,
                     "loss parts (lm sum, aux, z)");
  ASSERT_EQ(cpu.params().size(), gpu.params().size());
  for (size_t i = 0; i < cpu.params().size(); ++i) {
    const Param& c = cpu.params()[i];
    const Param& g = gpu.params()[i];
    ASSERT_EQ(c.spec.name, g.spec.name);
    const size_t mark = host.mark();
    const Tensor g_value = test::to_host(host, g.value);
    const Tensor g_grad = test::to_host(host, g.grad);
    EXPECT_TRUE(test::all_close(g_value, c.value, 0.0)) << c.spec.name << " initial values";
    test::expect_close(test::to_doubles(g_grad), test::to_doubles(c.grad), kRtol,
                       ("gradient of " + c.spec.name).c_str());
    host.reset(mark);
  }
}

std::vector<double> train_losses(const Recipe& r) {
  auto world = mpi_world();
  const DataSources data = open_data(r);
  ParallelEnv env = ParallelEnv::create(*world, r.parallel);
  Trainer trainer(r, data, env);
  std::vector<double> losses;
  for (int64_t i = 0; i < r.train.steps; ++i) losses.push_back(trainer.step().loss);
  return losses;
}

TEST(CudaTraining, TwentyStepsMatchCpu) {
  static MpiEnvironment mpi(nullptr, nullptr);
  const Recipe cpu = small_moe({"train.steps=20"});
  const Recipe gpu = small_moe({"train.steps=20", "train.device=cuda"});
  const std::vector<double> want = train_losses(cpu);
  const std::vector<double> got = train_losses(gpu);
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double rel = std::abs(got[i] - want[i]) / std::abs(want[i]);
    worst = std::max(worst, rel);
    EXPECT_LE(rel, kRtol) << "step " << i + 1 << ": gpu " << got[i] << ", cpu " << want[i];
    EXPECT_TRUE(std::isfinite(got[i])) << "step " << i + 1;
  }
  std::printf("20 steps: loss %.6f -> %.6f (cpu %.6f -> %.6f), worst relative difference %.3g\n",
              got.front(), got.back(), want.front(), want.back(), worst);
  EXPECT_LT(want.back(), want.front());  // it trains
}

}  // namespace
}  // namespace tmt
