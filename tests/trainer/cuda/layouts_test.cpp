// Parallel layouts on the GPU: several ranks share one GPU (the MPI communicator stages device
// tensors through host memory; NCCL refuses two ranks on one GPU) and must compute the same
// training run as one rank on the GPU — every step's loss, the validation loss and the final
// master weights — in fp32 to 1e-5, like the CPU layouts (tests/parallel/layout_equivalence_test),
// and in bf16 mixed precision losses to 3e-2 and weights to 1e-1 by norm (each layout rounds its
// partial sums to bf16 at different points, and a token whose two best experts are nearly tied
// may go to another expert, whose weights then move differently). 10 optimizer steps of the small
// MoE (tests/support/small_moe.h). Tensor, expert, pipeline and context parallelism.
//
// ranks: 2 4
// timeout: 900
#include <gtest/gtest.h>

#include "parallel/comm.h"
#include "tests/support/layout_run.h"
#include "tests/support/small_moe.h"

namespace tmt {
namespace {

const test::Equivalence kFp32{test::kSmallMoeRecipe, {"train.device=cuda"}, 1e-5, 1e-5};
const test::Equivalence kBf16{
    test::kSmallMoeRecipe, {"train.device=cuda", "train.dtype=bf16"}, 3e-2, 1e-1};

TEST(CudaLayouts, TensorAndExpertParallel) {
  // 2 ranks: tp2 ep2; 4 ranks: tp2 ep2 dp2
  test::expect_same_run(kFp32, {"parallel.tp=2", "parallel.ep=2"});
  test::expect_same_run(kBf16, {"parallel.tp=2", "parallel.ep=2"});
}

TEST(CudaLayouts, PipelineAndExpertParallelWithZero1) {
  // 2 ranks: pp2 ep1; 4 ranks: pp2 dp2 ep2 with the distributed optimizer
  const int n = mpi_world()->size();
  const std::vector<std::string> layout =
      n == 4 ? std::vector<std::string>{"parallel.pp=2", "parallel.ep=2", "parallel.zero1=true"}
             : std::vector<std::string>{"parallel.pp=2"};
  test::expect_same_run(kFp32, layout);
  test::expect_same_run(kBf16, layout);
}

TEST(CudaLayouts, ContextParallel) {
  // 2 ranks: cp2; 4 ranks: cp2 tp2, then cp2 ep2 with a sliding window. Each rank's query chunks
  // attend to the gathered keys with queries shorter than keys (the kernels' bottom-right causal).
  const int n = mpi_world()->size();
  const std::vector<std::vector<std::string>> layouts =
      n == 4 ? std::vector<std::vector<std::string>>{{"parallel.cp=2", "parallel.tp=2"},
                                                     {"parallel.cp=2", "parallel.ep=2",
                                                      "model.sliding_window=5"}}
             : std::vector<std::vector<std::string>>{{"parallel.cp=2"}};
  for (const std::vector<std::string>& layout : layouts) {
    test::expect_same_run(kFp32, layout);
    test::expect_same_run(kBf16, layout);
  }
}

}  // namespace
}  // namespace tmt
