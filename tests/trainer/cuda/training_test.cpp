// The training path on the GPU against the CPU, on the small MoE the parallel tests train
// (tests/support/small_moe.h): (a) one micro-batch's forward and backward through the whole model —
// the loss parts and every parameter's gradient; (b) 20 optimizer steps of the Trainer — every
// step's loss. In fp32 both within 1e-4 relative (by norm for the gradients); in bf16 mixed
// precision (bf16 weights and activations, f32 master weights and gradients) against the CPU's
// fp32, within bf16 tolerances: loss parts 2e-2, every step's loss 3e-2, and gradients 5e-2 by
// norm on the dense variant of the model (with experts, bf16 rounding flips the choice of a few
// tokens between near-tied experts, which moves those experts' gradients by tens of percent: a
// property of the routing, not an error).
// (f) FP8 training (train.precision fp8, blockwise) in bf16 on the GPU: 20 steps against the CPU's
// FP8 fake quantization in fp32, within the bf16 step tolerance.
// (e) the same for multi-head latent attention as Mistral Large 3 builds it (interleaved RoPE,
// YaRN's softmax scale, Llama 4's query scale, sigmoid routing with the expert bias): forward and
// backward in fp32 and bf16, and 20 steps in fp32 and bf16 — the latent layer's column moves
// (kernels/slice.h) and the attention with Dqk != Dv on the GPU.
// (d) `tramontane train` on the GPU, the way users run it: the tiny recipe at one rank in bf16,
// its groups over NCCL (one rank, one GPU), validation and a checkpoint; it learns, and a second
// run with more steps resumes from the checkpoint.
// (c) bf16 on the GPU with a checkpoint: 6 steps saving after 3; a second trainer loads it and
// runs steps 4..6 and a validation pass — the same losses (1e-3: f32 atomics in the embedding's
// backward add in no fixed order) and a finite validation loss. Without the bf16 weights
// refreshed from the loaded master weights the resumed losses would be those of a fresh model.
//
// timeout: 300
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/base/rng.h"
#include "kernels/base/workspace.h"
#include "parallel/mpi_env.h"
#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/run.h"
#include "tests/support/small_moe.h"
#include "tests/support/temp_dir.h"
#include "trainer/trainer.h"

namespace tmt {
namespace {

constexpr double kRtol = 1e-4;
constexpr double kBf16LossRtol = 2e-2, kBf16GradRtol = 5e-2, kBf16StepRtol = 3e-2;

Recipe small_moe(const std::vector<std::string>& overrides = {}) {
  Recipe r = parse_recipe(test::kSmallMoeRecipe, "small_moe", overrides);
  resolve_layout(r, 1);
  return r;
}

// One micro-batch through a CPU fp32 model and a GPU model computing in `gpu_dtype`, from the same
// initial master weights; loss parts within loss_rtol, and the gradients within grad_rtol unless
// it is 0.
void compare_forward_backward(const Recipe& r, DType gpu_dtype, double loss_rtol,
                              double grad_rtol) {
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

  const ModelRun run{.micro_batch = b, .seq_len = r.data.seq_len, .seed = r.train.seed};
  Model cpu(r.model, run, Context{Device::kCpu, nullptr});
  Workspace workspace;  // the GPU model's, sized by it before its first op
  Model gpu(r.model,
            {.dtype = gpu_dtype, .micro_batch = b, .seq_len = r.data.seq_len, .seed = r.train.seed},
            Context{Device::kCuda, nullptr, nullptr, &workspace});
  workspace.reserve(gpu.workspace_bytes());
  workspace.allocate(Device::kCuda);
  cpu.params().zero_grads();
  gpu.params().zero_grads();
  const LossParts want = cpu.forward_backward(cpu_batch, 1.0 / 29.0, 0.5);
  const LossParts got = gpu.forward_backward(gpu_batch, 1.0 / 29.0, 0.5);
  EXPECT_EQ(got.lm_tokens, want.lm_tokens);
  test::expect_close(std::vector<double>{got.lm_loss_sum, got.aux_loss, got.z_loss},
                     std::vector<double>{want.lm_loss_sum, want.aux_loss, want.z_loss}, loss_rtol,
                     "loss parts (lm sum, aux, z)");
  ASSERT_EQ(cpu.params().size(), gpu.params().size());
  for (size_t i = 0; i < cpu.params().size(); ++i) {
    const Param& c = cpu.params()[i];
    const Param& g = gpu.params()[i];
    ASSERT_EQ(c.spec.name, g.spec.name);
    const size_t mark = host.mark();
    const Tensor g_value = test::to_host(host, g.value);
    const Tensor g_grad = test::to_host(host, g.grad);
    EXPECT_EQ(g_grad.dtype, DType::kF32) << c.spec.name << ": gradients accumulate in f32";
    EXPECT_TRUE(test::all_close(g_value, c.value, 0.0)) << c.spec.name << " initial values";
    if (gpu_dtype != DType::kF32) {  // the compute copy is the master rounded
      const Tensor g_weight = test::to_host(host, g.weight);
      EXPECT_EQ(g_weight.dtype, gpu_dtype);
      EXPECT_TRUE(test::all_close(g_weight, c.value, 4e-3)) << c.spec.name << " weights";
    }
    if (grad_rtol > 0) {
      test::expect_close(test::to_doubles(g_grad), test::to_doubles(c.grad), grad_rtol,
                         ("gradient of " + c.spec.name).c_str());
    }
    host.reset(mark);
  }
}

TEST(CudaTraining, ModelForwardBackwardMatchesCpu) {
  compare_forward_backward(small_moe(), DType::kF32, kRtol, kRtol);
}

TEST(CudaTraining, Bf16ModelForwardBackwardNearCpuFp32) {
  // The MoE model's loss parts; the gradients on the same model without experts.
  compare_forward_backward(small_moe(), DType::kBF16, kBf16LossRtol, 0.0);
  compare_forward_backward(small_moe({"model.moe=null"}), DType::kBF16, kBf16LossRtol,
                           kBf16GradRtol);
}

std::vector<double> train_losses(const Recipe& r) {
  auto world = mpi_world();
  const DataSources data = open_data(r);
  ParallelEnv env = ParallelEnv::create(*world, layout_of(r.parallel));
  Trainer trainer(r, data, env);
  std::vector<double> losses;
  for (int64_t i = 0; i < r.train.steps; ++i) losses.push_back(trainer.step().loss);
  return losses;
}

void expect_same_curve(const std::vector<std::string>& gpu_sets, double rtol, const char* what,
                       const std::vector<std::string>& common = {}) {
  static MpiEnvironment mpi(nullptr, nullptr);
  std::vector<std::string> sets = {"train.steps=20"};
  sets.insert(sets.end(), common.begin(), common.end());
  const Recipe cpu = small_moe(sets);
  sets.insert(sets.end(), gpu_sets.begin(), gpu_sets.end());
  const Recipe gpu = small_moe(sets);
  const std::vector<double> want = train_losses(cpu);
  const std::vector<double> got = train_losses(gpu);
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double rel = std::abs(got[i] - want[i]) / std::abs(want[i]);
    worst = std::max(worst, rel);
    EXPECT_LE(rel, rtol) << "step " << i + 1 << ": gpu " << got[i] << ", cpu " << want[i];
    EXPECT_TRUE(std::isfinite(got[i])) << "step " << i + 1;
  }
  std::printf(
      "%s, 20 steps: loss %.6f -> %.6f (cpu fp32 %.6f -> %.6f), worst relative "
      "difference %.3g\n",
      what, got.front(), got.back(), want.front(), want.back(), worst);
  EXPECT_LT(want.back(), want.front());  // it trains
  EXPECT_LT(got.back(), got.front());
}

TEST(CudaTraining, TwentyStepsMatchCpu) {
  expect_same_curve({"train.device=cuda"}, kRtol, "gpu fp32");
}

TEST(CudaTraining, Bf16TwentyStepsFollowCpuFp32) {
  expect_same_curve({"train.device=cuda", "train.dtype=bf16"}, kBf16StepRtol, "gpu bf16");
}

// FP8 (blockwise, kernels/cuda/fp8_linear.h) on the GPU with bf16 operands against the CPU's FP8
// fake quantization in fp32: the same tiles and scales, so what differs is bf16's rounding (the
// bf16 tolerance). The experts 32 wide instead of 24: the FP8 GEMMs take whole 16-byte rows.
TEST(CudaTraining, Fp8TwentyStepsFollowCpuFp8) {
  expect_same_curve({"train.device=cuda", "train.dtype=bf16"}, kBf16StepRtol, "gpu fp8",
                    {"train.precision=fp8", "model.moe.expert_ffn_hidden=32"});
}

// The small recipe's attention as Mistral Large 3's: latent attention with the query latent, Dqk
// 16 + 16 = 32 and Dv 16 (sizes cuDNN takes, so bf16 runs its fused attention), and its routing.
const std::vector<std::string> kLatentAsLarge3 = {
    "model.attention=mla",
    "model.mla.q_lora_rank=24",
    "model.mla.kv_lora_rank=16",
    "model.mla.qk_nope_head_dim=16",
    "model.mla.qk_rope_head_dim=16",
    "model.mla.v_head_dim=16",
    "model.rope_interleaved=true",
    "model.rope_scaling.type=yarn",
    "model.rope_scaling.factor=4",
    "model.rope_scaling.original_max_seq_len=8",
    "model.rope_scaling.mscale=1",
    "model.rope_scaling.mscale_all_dim=1",
    "model.rope_scaling.llama_4_beta=0.1",
    "model.rope_scaling.llama_4_original_max_seq_len=8",
    "model.moe.score=sigmoid",
    "model.moe.bias_update_rate=0.001"};

TEST(CudaTraining, LatentAttentionForwardBackwardMatchesCpu) {
  compare_forward_backward(small_moe(kLatentAsLarge3), DType::kF32, kRtol, kRtol);
  compare_forward_backward(small_moe(kLatentAsLarge3), DType::kBF16, kBf16LossRtol, 0.0);
  std::vector<std::string> dense = kLatentAsLarge3;
  dense.erase(dense.end() - 2, dense.end());  // the routing keys need the experts
  dense.push_back("model.moe=null");
  compare_forward_backward(small_moe(dense), DType::kBF16, kBf16LossRtol, kBf16GradRtol);
}

TEST(CudaTraining, LatentAttentionTwentyStepsMatchCpu) {
  expect_same_curve({"train.device=cuda"}, kRtol, "mla gpu fp32", kLatentAsLarge3);
  expect_same_curve({"train.device=cuda", "train.dtype=bf16"}, kBf16StepRtol, "mla gpu bf16",
                    kLatentAsLarge3);
}

// Steps 1..6 (saving after 3 when `save`), or 4..6 after loading `load`; the losses of steps 4..6,
// then the validation loss.
std::vector<double> run_with_checkpoint(const std::string& dir, bool save,
                                        const std::string& load) {
  static MpiEnvironment mpi(nullptr, nullptr);
  const Recipe r = small_moe({"train.steps=6", "train.device=cuda", "train.dtype=bf16",
                              "data.source=synthetic", "run.dir=" + dir});
  auto world = mpi_world();
  const DataSources data = open_data(r);
  ParallelEnv env = ParallelEnv::create(*world, layout_of(r.parallel));
  Trainer trainer(r, data, env);
  if (!load.empty()) {
    check_checkpoint(load, r, trainer.model().params(), 0, 1);
    const TrainingState s = load_checkpoint(load, trainer.model().params(), trainer.optimizer());
    EXPECT_EQ(s.step, 3);
    trainer.resume_at(s.step);
  }
  std::vector<double> out;
  while (trainer.steps_done() < 6) {
    const StepMetrics m = trainer.step();
    if (m.step > 3) out.push_back(m.loss);
    if (save && m.step == 3) {
      save_checkpoint(r, env, trainer.model().params(), trainer.optimizer(),
                      {3, trainer.optimizer().steps_taken(), 0});
    }
  }
  const std::optional<double> val = trainer.validate();
  EXPECT_TRUE(val.has_value());
  out.push_back(val.value_or(NAN));
  return out;
}

TEST(CudaTraining, Bf16CheckpointResumesAndValidates) {
  const std::string dir = "/tmp/tmt-cuda-ckpt-" + std::to_string(getpid());
  const std::vector<double> original = run_with_checkpoint(dir, true, "");
  const std::vector<double> resumed =
      run_with_checkpoint(dir + "-2", false, dir + "/checkpoints/step-0000003");
  ASSERT_EQ(original.size(), 4u);
  ASSERT_EQ(resumed.size(), 4u);
  double worst = 0;
  for (size_t i = 0; i < 4; ++i) {
    const double rel = std::abs(resumed[i] - original[i]) / std::abs(original[i]);
    worst = std::max(worst, rel);
    EXPECT_TRUE(std::isfinite(resumed[i])) << i;
    EXPECT_LE(rel, 1e-3) << (i < 3 ? "step " + std::to_string(i + 4) : std::string("validation"))
                         << ": resumed " << resumed[i] << ", original " << original[i];
  }
  std::printf(
      "bf16 resume from step 3: steps 4..6 %.6f %.6f %.6f, val %.6f; worst relative "
      "difference %.3g\n",
      resumed[0], resumed[1], resumed[2], resumed[3], worst);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::remove_all(dir + "-2", ec);
}

std::vector<nlohmann::json> read_metrics(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(nlohmann::json::parse(l));
  return lines;
}

test::RunResult train_tiny(const std::string& dir, int steps) {
  std::vector<std::string> argv = {test::tramontane_binary(), "train",
                                   test::source_path("recipes/tiny.yaml")};
  for (const std::string& s : std::vector<std::string>{
           "parallel.tp=1", "parallel.pp=1", "parallel.ep=1", "train.device=cuda",
           "train.dtype=bf16", "log.eval_every=10", "checkpoint.every=10",
           "train.steps=" + std::to_string(steps), "run.dir=" + dir}) {
    argv.push_back("--set");
    argv.push_back(s);
  }
  return test::run_command(argv, 300);
}

TEST(CudaTraining, Bf16BinaryTrainsOverNcclAndResumes) {
  test::TempDir dir;
  const std::string run_dir = dir.file("run");
  const test::RunResult first = train_tiny(run_dir, 40);
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  EXPECT_NE((first.out + first.err).find("communicating over NCCL"), std::string::npos)
      << first.out << first.err;
  const std::vector<nlohmann::json> m = read_metrics(run_dir);
  ASSERT_EQ(m.size(), 40u);
  const double loss0 = m.front()["loss"].get<double>(), loss1 = m.back()["loss"].get<double>();
  EXPECT_LT(loss1, loss0 - 0.3) << "bf16 on the GPU did not learn";
  ASSERT_TRUE(m.back().contains("val_loss"));
  EXPECT_TRUE(std::isfinite(m.back()["val_loss"].get<double>()));
  EXPECT_TRUE(std::filesystem::exists(run_dir + "/checkpoints/step-0000040/index.h5"));
  std::printf("tiny, bf16 on the GPU: loss %.4f -> %.4f, val %.4f\n", loss0, loss1,
              m.back()["val_loss"].get<double>());

  const test::RunResult more = train_tiny(run_dir, 50);
  ASSERT_EQ(more.exit_code, 0) << more.out << more.err;
  EXPECT_NE((more.out + more.err).find("resumed from"), std::string::npos) << more.out << more.err;
  const std::vector<nlohmann::json> m2 = read_metrics(run_dir);
  ASSERT_EQ(m2.size(), 50u);
  EXPECT_EQ(m2[40]["step"].get<int64_t>(), 41);
  // Resumed from the step-40 master weights: it goes on from where the first run ended.
  EXPECT_LT(m2[40]["loss"].get<double>(), loss0 - 0.3);
}

}  // namespace
}  // namespace tmt
