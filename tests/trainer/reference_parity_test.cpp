// Parity with an independent PyTorch implementation (scripts/reference/mixtral_reference.py): the
// same weights and batch give the same loss (relative error < 1e-5) and the same gradient for every
// parameter (< 1e-4 relative by norm), in fp32. The fixtures are committed; this test needs no
// PyTorch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tests/support/compare.h"
#include "tests/support/reference_fixture.h"
#include "tests/support/run.h"

namespace tmt {
namespace {

class ReferenceParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceParity, LossAndEveryGradientMatchPyTorch) {
  const std::string name = GetParam();
  const std::string dir = test::source_path("tests/fixtures/reference/");
  SafetensorsFile inputs = SafetensorsFile::read(dir + name + ".inputs.safetensors");
  const SafetensorsFile expected = SafetensorsFile::read(dir + name + ".expected.safetensors");
  const Recipe recipe = test::reference_recipe(name);
  ASSERT_EQ(inputs.metadata.at("config"), test::reference_config_json(recipe))
      << "the recipe changed since the fixture was made: regenerate it "
         "(scripts/reference/README.md)";

  Model model(recipe.model,
              {.micro_batch = recipe.train.micro_batch,
               .seq_len = recipe.data.seq_len,
               .seed = recipe.train.seed},
              Context{});
  for (Param& p : model.params().all()) {
    const StoredTensor* w = inputs.find(p.spec.name);
    ASSERT_NE(w, nullptr) << p.spec.name;
    ASSERT_EQ(w->bytes.size(), p.value.nbytes()) << p.spec.name;
    std::memcpy(p.value.data, w->bytes.data(), w->bytes.size());
  }
  StoredTensor* tokens = const_cast<StoredTensor*>(inputs.find("tokens"));
  StoredTensor* targets = const_cast<StoredTensor*>(inputs.find("targets"));
  const MicroBatch batch{tokens->view(), targets->view()};
  int64_t counted = 0;
  for (int64_t i = 0; i < targets->numel(); ++i) counted += targets->at(i) >= 0 ? 1 : 0;

  model.params().zero_grads();
  const LossParts parts = model.forward_backward(batch, 1.0 / static_cast<double>(counted), 1.0);
  const double lm = parts.lm_loss_sum / static_cast<double>(parts.lm_tokens);
  const double loss = lm + parts.aux_loss + parts.z_loss;
  auto rel = [](double got, double want) { return std::fabs(got - want) / std::fabs(want); };
  EXPECT_EQ(parts.lm_tokens, counted);
  EXPECT_LT(rel(loss, expected.find("loss")->at(0)), 1e-5)
      << loss << " vs " << expected.find("loss")->at(0);
  EXPECT_LT(rel(lm, expected.find("lm_loss")->at(0)), 1e-5);
  EXPECT_LT(rel(parts.aux_loss, expected.find("aux_loss")->at(0)), 1e-5);
  EXPECT_LT(rel(parts.z_loss, expected.find("z_loss")->at(0)), 1e-5);

  std::printf("  %s: loss rel err %.2e (lm %.2e, aux %.2e, z %.2e)\n", name.c_str(),
              rel(loss, expected.find("loss")->at(0)), rel(lm, expected.find("lm_loss")->at(0)),
              rel(parts.aux_loss, expected.find("aux_loss")->at(0)),
              rel(parts.z_loss, expected.find("z_loss")->at(0)));
  double worst = 0;
  std::string worst_name;
  size_t checked = 0;
  for (const Param& p : model.params().all()) {
    const StoredTensor* g = expected.find("grad." + p.spec.name);
    ASSERT_NE(g, nullptr) << p.spec.name;
    std::vector<double> want(static_cast<size_t>(g->numel()));
    for (size_t i = 0; i < want.size(); ++i) want[i] = g->at(static_cast<int64_t>(i));
    const std::vector<double> got = test::to_doubles(p.grad);
    EXPECT_TRUE(test::all_close(got, want, 1e-4)) << "grad." << p.spec.name;
    double diff = 0, norm = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      diff += (got[i] - want[i]) * (got[i] - want[i]);
      norm += want[i] * want[i];
    }
    if (std::sqrt(diff / norm) > worst) {
      worst = std::sqrt(diff / norm);
      worst_name = p.spec.name;
    }
    ++checked;
  }
  EXPECT_EQ(checked, model.params().size());
  std::printf("  %s: %zu gradients, worst relative error by norm %.2e (%s)\n", name.c_str(),
              checked, worst, worst_name.c_str());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceParity,
                         ::testing::ValuesIn(test::reference_fixture_names()));

}  // namespace
}  // namespace tmt
