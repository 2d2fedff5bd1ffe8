// The pipeline schedules (trainer/pipeline/schedule.h): 1F1B and interleaved 1F1B, as orders of
// passes, run against each other in a simulation of every stage with the trainer's messaging
// (a pass waits for its input; sends do not block, but a slot's previous send must have been
// received before the slot is reused). The simulated step takes exactly (1 + (pp-1)/(vpp·m))
// times the work: the interleaved schedule's bubble.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "trainer/pipeline/schedule.h"

namespace tmt {
namespace {

TEST(PipelineSchedule, OneChunkIsOneFOneB) {
  // Stage 1 of 4, 6 micro-batches: 2 warm-up forwards, then F B pairs, then the backwards.
  const auto passes = pipeline_schedule(4, 1, 1, 6);
  std::string order;
  for (const PipelinePass& p : passes) order += fmt::format("{}{}", p.forward ? 'F' : 'B', p.micro);
  EXPECT_EQ(order, "F0F1F2B0F3B1F4B2F5B3B4B5");
  EXPECT_EQ(chunk_in_flight(passes, 1), std::vector<int64_t>{3});
  // Fewer micro-batches than the warm-up: all forwards, then all backwards.
  order.clear();
  for (const PipelinePass& p : pipeline_schedule(4, 1, 0, 2))
    order += fmt::format("{}{}", p.forward ? 'F' : 'B', p.micro);
  EXPECT_EQ(order, "F0F1B0B1");
}

TEST(PipelineSchedule, InterleavedOrder) {
  // pp 2, vpp 2, m 4, stage 0: warm-up 2·1 + 1·2 = 4 forwards, in groups of pp micro-batches per
  // chunk; backwards start with the last chunk.
  std::string order;
  for (const PipelinePass& p : pipeline_schedule(2, 2, 0, 4)) {
    order += fmt::format("{}{}.{} ", p.forward ? "F" : "B", p.chunk, p.micro);
  }
  EXPECT_EQ(order,
            "F0.0 F0.1 F1.0 F1.1 F0.2 B1.0 F0.3 B1.1 F1.2 B0.0 F1.3 B0.1 B1.2 B1.3 "
            "B0.2 B0.3 ");
}

TEST(PipelineSchedule, EveryPassOnceInOrder) {
  for (const auto& [pp, vpp, m] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 1, 3},
                                                                                     {2, 1, 1},
                                                                                     {4, 1, 8},
                                                                                     {2, 2, 2},
                                                                                     {2, 2, 6},
                                                                                     {4, 2, 8},
                                                                                     {4, 3, 4},
                                                                                     {3, 4, 9}}) {
    for (int64_t s = 0; s < pp; ++s) {
      const auto passes = pipeline_schedule(pp, vpp, s, m);
      ASSERT_EQ(static_cast<int64_t>(passes.size()), 2 * m * vpp);
      std::map<std::pair<int64_t, bool>, int64_t> next;  // (chunk, forward) -> next micro-batch
      std::map<std::pair<int64_t, int64_t>, bool> forwarded;
      for (const PipelinePass& p : passes) {
        int64_t& expected = next[{p.chunk, p.forward}];
        EXPECT_EQ(p.micro, expected) << pp << " " << vpp << " " << m << " stage " << s;
        ++expected;
        const std::pair<int64_t, int64_t> key{p.chunk, p.micro};
        if (p.forward) {
          forwarded[key] = true;
        } else {
          EXPECT_TRUE(forwarded[key]) << "backward before forward";
        }
      }
      for (int64_t c = 0; c < vpp; ++c) {
        EXPECT_EQ((next[{c, true}]), m);
        EXPECT_EQ((next[{c, false}]), m);
      }
    }
  }
}

// Every stage's passes with forward 1/vpp and backward 2/vpp time units each (a chunk holds
// 1/vpp of the stage's layers). Returns the step's length, or -1 when the stages deadlock.
double simulate(int64_t pp, int64_t vpp, int64_t m) {
  const int64_t v_stages = pp * vpp;
  std::vector<std::vector<PipelinePass>> passes;
  std::vector<std::vector<int64_t>> slots;
  for (int64_t s = 0; s < pp; ++s) {
    passes.push_back(pipeline_schedule(pp, vpp, s, m));
    slots.push_back(chunk_in_flight(passes.back(), vpp));
  }
  // (kind, virtual stage, micro-batch) -> time; kind 0/1: forward/backward done, 2/3: its input
  // received (the pass started).
  std::map<std::tuple<int, int64_t, int64_t>, double> at;
  std::vector<size_t> next(static_cast<size_t>(pp), 0);
  std::vector<double> clock(static_cast<size_t>(pp), 0.0);
  for (bool moved = true; moved;) {
    moved = false;
    for (int64_t s = 0; s < pp; ++s) {
      const auto si = static_cast<size_t>(s);
      if (next[si] == passes[si].size()) continue;
      const PipelinePass& p = passes[si][next[si]];
      const int64_t v = p.chunk * pp + s;
      const int64_t reused = p.micro - slots[si][static_cast<size_t>(p.chunk)];
      std::vector<std::tuple<int, int64_t, int64_t>> needs;
      if (p.forward) {
        if (v > 0) needs.emplace_back(0, v - 1, p.micro);  // the activations
        if (reused >= 0 && v + 1 < v_stages) needs.emplace_back(2, v + 1, reused);
      } else {
        needs.emplace_back(v + 1 < v_stages ? 1 : 0, v + 1 < v_stages ? v + 1 : v, p.micro);
        if (reused >= 0 && v > 0) needs.emplace_back(3, v - 1, reused);
      }
      double start = clock[si];
      bool ready = true;
      for (const auto& n : needs) {
        const auto it = at.find(n);
        if (it == at.end()) {
          ready = false;
          break;
        }
        start = std::max(start, it->second);
      }
      if (!ready) continue;
      const double length = (p.forward ? 1.0 : 2.0) / static_cast<double>(vpp);
      at[{p.forward ? 2 : 3, v, p.micro}] = start;
      at[{p.forward ? 0 : 1, v, p.micro}] = start + length;
      clock[si] = start + length;
      ++next[si];
      moved = true;
    }
  }
  for (int64_t s = 0; s < pp; ++s) {
    if (next[static_cast<size_t>(s)] != passes[static_cast<size_t>(s)].size()) return -1;
  }
  return *std::max_element(clock.begin(), clock.end());
}

TEST(PipelineSchedule, BubbleIsPpMinusOneOverVppM) {
  for (const auto& [pp, vpp, m] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{2, 1, 4},
                                                                                     {4, 1, 8},
                                                                                     {2, 2, 2},
                                                                                     {2, 2, 4},
                                                                                     {4, 2, 4},
                                                                                     {4, 2, 8},
                                                                                     {4, 4, 8},
                                                                                     {4, 3, 4},
                                                                                     {3, 2, 6},
                                                                                     {2, 3, 4},
                                                                                     {8, 2, 16},
                                                                                     {4, 2, 64}}) {
    const double length = simulate(pp, vpp, m);
    ASSERT_GT(length, 0) << "deadlock at pp " << pp << " vpp " << vpp << " m " << m;
    const double work = 3.0 * static_cast<double>(m);
    const double bubble = static_cast<double>(pp - 1) / static_cast<double>(vpp * m);
    EXPECT_NEAR((length - work) / work, bubble, 1e-12)
        << "pp " << pp << " vpp " << vpp << " m " << m;
  }
}

TEST(PipelineSchedule, InFlightPerChunk) {
  // 1F1B: stage s keeps pp - s micro-batches.
  for (int64_t s = 0; s < 4; ++s)
    EXPECT_EQ(chunk_in_flight(pipeline_schedule(4, 1, s, 8), 1), std::vector<int64_t>{4 - s});
  // Interleaved, pp 4 vpp 2 m 8: stage 0 runs 10 forwards before its first backward, 6 of them
  // chunk 0's, which keeps all 8 before its first backward; the last stage's last chunk one.
  EXPECT_EQ(chunk_in_flight(pipeline_schedule(4, 2, 0, 8), 2), (std::vector<int64_t>{8, 4}));
  EXPECT_EQ(chunk_in_flight(pipeline_schedule(4, 2, 3, 8), 2), (std::vector<int64_t>{5, 1}));
  // The warm-up bounds it however many micro-batches there are.
  EXPECT_EQ(chunk_in_flight(pipeline_schedule(4, 2, 0, 64), 2), (std::vector<int64_t>{8, 4}));
}

}  // namespace
}  // namespace tmt
