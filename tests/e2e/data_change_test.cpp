// A data shard that changes under a running 2-rank job, through the binary: shrunk (the next read
// finds it before the mapping could raise SIGBUS) or its header rewritten at the same size (the
// check before each checkpoint, or every 50 steps, finds it, all ranks agreeing). Either way the
// job ends with exit 2 and `error:` naming the shard file, and no rank hangs.
//
// timeout: 300
#include <gtest/gtest.h>

#include <random>

#include "data/shard.h"
#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {

// Starts a long 2-rank run on `shard`, waits for step 3 in metrics.jsonl, runs `change` (a shell
// command) and waits for the job to end.
test::RunResult train_and_change(const test::TempDir& dir, const std::string& shard,
                                 const std::string& change) {
  std::string cmd = std::string(TMT_MPIEXEC) +
                    " -n 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x "
                    "OPENBLAS_NUM_THREADS=1 " +
                    test::tramontane_binary() + " train";
  for (const std::string& s :
       {std::string("parallel.tp=1"), std::string("parallel.pp=1"), std::string("parallel.ep=2"),
        std::string("train.steps=1000"), std::string("checkpoint.every=50"),
        std::string("log.eval_every=0"), std::string("data.source=shards"),
        "data.paths=[" + shard + "]", "run.dir=" + dir.file("run")}) {
    cmd += " --set '" + s + "'";
  }
  const std::string metrics = dir.file("run/metrics.jsonl");
  const std::string script = cmd + " & job=$!\nfor i in $(seq 600); do grep -q '\"step\":3,' " +
                             metrics + " 2>/dev/null && break; sleep 0.1; done\n" + change +
                             "\nwait $job";
  return test::run_command({"bash", "-c", script}, 240);
}

std::string random_shard(const test::TempDir& dir) {
  std::mt19937 rng(20261204);
  std::vector<uint32_t> tokens(200000);
  for (auto& t : tokens) t = static_cast<uint32_t>(rng() % 256);
  const std::string path = dir.file("train.bin");
  write_shard(path, tokens, 256);
  return path;
}

TEST(DataChange, ShrunkShardEndsTheJobWithExit2NamingIt) {
  test::TempDir dir;
  const std::string shard = random_shard(dir);
  const auto r = train_and_change(dir, shard, "truncate -s 100000 " + shard);
  ASSERT_FALSE(r.timed_out) << r.out << r.err;
  EXPECT_EQ(r.exit_code, 2) << r.err;
  // Each rank that read past the new end before the job ended says so (one or both).
  const auto errors = test::error_lines(r.err);
  ASSERT_GE(errors.size(), 1u) << r.err;
  ASSERT_LE(errors.size(), 2u) << r.err;
  for (const std::string& e : errors) {
    EXPECT_NE(e.find(shard + ": the shard changed while the job was reading it (400032 bytes when "
                             "opened, 100000 now)"),
              std::string::npos)
        << e;
  }
}

TEST(DataChange, RewrittenHeaderIsFoundBeforeTheNextCheckpoint) {
  test::TempDir dir;
  const std::string shard = random_shard(dir);
  // The vocabulary field (byte 24) rewritten in place: the same size, every read still succeeds.
  const auto r = train_and_change(
      dir, shard, "printf '\\377' | dd of=" + shard + " bs=1 seek=24 conv=notrunc status=none");
  ASSERT_FALSE(r.timed_out) << r.out << r.err;
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_NE(errors[0].find(shard + ": the shard changed while the job was reading it (its header "
                                   "is not the one it had when opened)"),
            std::string::npos)
      << errors[0];
  // It was found by step 50 at the latest, at the check before the first checkpoint.
  EXPECT_EQ(r.out.find("checkpoint: "), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tmt
