// The README's tutorial (fine-tune published weights on a JSONL corpus, export the result), run as
// it stands: the block between <!-- tutorial --> and <!-- /tutorial --> with this build's binary,
// the tokenizer files setup.sh fetched and a fresh directory in place of /tmp/tutorial.
//
// timeout: 600
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;

std::string tutorial_script() {
  std::ifstream in(test::source_path("README.md"));
  std::stringstream text;
  text << in.rdbuf();
  const std::string s = text.str();
  const auto begin = s.find("<!-- tutorial -->"), end = s.find("<!-- /tutorial -->");
  EXPECT_NE(begin, std::string::npos);
  EXPECT_NE(end, std::string::npos);
  std::string block = s.substr(begin, end - begin);
  const auto code = block.find("```sh\n");
  EXPECT_NE(code, std::string::npos);
  block = block.substr(code + 6);
  return block.substr(0, block.rfind("```"));
}

TEST(Tutorial, TheReadmesFineTuningTutorialRunsAsWritten) {
  const fs::path data_dir(TMT_MISTRAL_DATA_DIR);
  if (!fs::exists(data_dir / "tokenizer.model.v1"))
    GTEST_SKIP() << data_dir << " has no tokenizer.model.v1 (scripts/setup.sh fetches it)";
  test::TempDir dir;
  std::string script = tutorial_script();
  // This build's binary, this machine's tokenizer files, a fresh directory.
  script = std::regex_replace(script, std::regex(R"(tramontane=\$OLDPWD/build/tramontane)"),
                              "tramontane=" + test::tramontane_binary());
  script = std::regex_replace(
      script, std::regex(R"(~/\.cache/tramontane/mistral-common-1\.13\.1/mistral_common/data)"),
      data_dir.string());
  script = std::regex_replace(script, std::regex("/tmp/tutorial"), dir.path().string());
  ASSERT_NE(script.find(test::tramontane_binary()), std::string::npos) << script;
  const auto r = test::run_command({"bash", "-euo", "pipefail", "-c", script}, 540);
  ASSERT_EQ(r.exit_code, 0) << script << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err;

  // eval printed its line for the fine-tuned checkpoint, and the export is a whole HF directory.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(\{"perplexity".*"step":30.*\})"))) << r.out;
  const auto e = nlohmann::json::parse(m[0].str());
  EXPECT_GT(e["tokens"].get<int64_t>(), 0);
  EXPECT_LT(e["val_loss"].get<double>(), std::log(32000.0));  // it learnt something
  for (const char* f : {"finetuned-hf/config.json", "finetuned-hf/model.safetensors",
                        "run/checkpoints/step-0000030/index.h5", "data/val/shard-00000.bin"}) {
    EXPECT_TRUE(fs::exists(dir.path() / f)) << f;
  }
}

}  // namespace
}  // namespace tmt
