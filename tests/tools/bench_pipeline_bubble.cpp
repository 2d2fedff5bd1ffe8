// The pipeline bubble measured: every rank of the world is a pipeline stage and runs its passes of
// one step in the order trainer/pipeline/schedule.h gives, with the trainer's messaging (a pass
// receives its input over MPI before it starts, sends its output without blocking, and awaits a
// slot's previous send before reusing the slot), where each pass's compute is a sleep: a forward
// of a whole stage takes FORWARD_MS and its backward twice that, a chunk's 1/vpp of them. So the
// step's ideal is m·3·FORWARD_MS, and what it takes beyond that is the bubble (plus messaging and
// wake-up noise, which the last column shows per pass). Prints one table row (rank 0) of the best
// of REPEATS steps; schedule.h's theory is (pp-1)/(vpp·m). For scripts/bench/pipeline_bubble.sh.
//   mpirun -n PP build/tests/bench_pipeline_bubble VPP M [FORWARD_MS] [REPEATS]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "parallel/comm.h"
#include "parallel/mpi_env.h"
#include "trainer/pipeline/schedule.h"

namespace {

using Clock = std::chrono::steady_clock;

void await(std::unique_ptr<tmt::SendRequest>& r) {
  if (r) r->wait();
  r.reset();
}

}  // namespace

int main(int argc, char** argv) {
  tmt::MpiEnvironment mpi(&argc, &argv);
  if (argc < 3) {
    if (mpi.rank() == 0)
      std::fprintf(stderr, "usage: bench_pipeline_bubble VPP M [FORWARD_MS] [REPEATS]\n");
    return 2;
  }
  const int64_t vpp = std::atoll(argv[1]), m = std::atoll(argv[2]);
  const double forward_ms = argc > 3 ? std::atof(argv[3]) : 40.0;
  const int repeats = argc > 4 ? std::atoi(argv[4]) : 3;
  auto world = tmt::mpi_world();
  const int64_t pp = world->size(), stage = world->rank();
  if (vpp < 1 || m < 1 || (vpp > 1 && m % pp != 0)) {
    if (stage == 0) std::fprintf(stderr, "bench_pipeline_bubble: vpp >= 1, m a multiple of pp\n");
    return 2;
  }
  const std::vector<tmt::PipelinePass> passes = tmt::pipeline_schedule(pp, vpp, stage, m);
  const std::vector<int64_t> slots = tmt::chunk_in_flight(passes, vpp);
  // Per chunk and slot: a small activation / gradient buffer and its send in flight.
  std::vector<std::vector<float>> act(static_cast<size_t>(vpp * m), std::vector<float>(1024));
  std::vector<std::vector<float>> grad(act);
  std::vector<std::unique_ptr<tmt::SendRequest>> act_sent(act.size()), grad_sent(act.size());
  const auto tensor = [](std::vector<float>& v) {
    return tmt::Tensor{v.data(), tmt::DType::kF32, tmt::Device::kCpu,
                       tmt::Shape{static_cast<int64_t>(v.size())}};
  };
  const auto work = [&](double ms) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms));
  };
  double best = 1e30;
  for (int rep = 0; rep < repeats; ++rep) {
    world->barrier();
    const auto t0 = Clock::now();
    for (const tmt::PipelinePass& p : passes) {
      const auto c = static_cast<size_t>(p.chunk);
      const size_t slot = c * static_cast<size_t>(m) + static_cast<size_t>(p.micro % slots[c]);
      const tmt::PipelinePeer prev = tmt::pipeline_prev(pp, vpp, stage, p.chunk);
      const tmt::PipelinePeer next = tmt::pipeline_next(pp, vpp, stage, p.chunk);
      if (p.forward) {
        await(act_sent[slot]);
        if (prev.stage >= 0)
          world->recv(tensor(act[slot]), static_cast<int>(prev.stage),
                      static_cast<int>(1 + 2 * p.chunk));
        work(forward_ms / static_cast<double>(vpp));
        if (next.stage >= 0) {
          act_sent[slot] = world->isend(tensor(act[slot]), static_cast<int>(next.stage),
                                        static_cast<int>(1 + 2 * next.chunk));
        }
      } else {
        await(grad_sent[slot]);
        if (next.stage >= 0)
          world->recv(tensor(grad[slot]), static_cast<int>(next.stage),
                      static_cast<int>(2 + 2 * p.chunk));
        work(2 * forward_ms / static_cast<double>(vpp));
        if (prev.stage >= 0) {
          grad_sent[slot] = world->isend(tensor(grad[slot]), static_cast<int>(prev.stage),
                                         static_cast<int>(2 + 2 * prev.chunk));
        }
      }
    }
    for (auto& r : act_sent) await(r);
    for (auto& r : grad_sent) await(r);
    const double ms = world->all_reduce_scalar(
        std::chrono::duration<double, std::milli>(Clock::now() - t0).count(), tmt::ReduceOp::kMax);
    best = std::min(best, ms);
  }
  if (stage == 0) {
    const double ideal = static_cast<double>(m) * 3 * forward_ms;
    const double theory = static_cast<double>(pp - 1) / static_cast<double>(vpp * m);
    // What the step took beyond the schedule's own bubble, per pass of a rank (2·vpp·m of them):
    // the messaging's and the sleeps' overhead, the floor of this measurement.
    const double excess_ms = (best - ideal * (1 + theory)) / static_cast<double>(2 * vpp * m);
    std::printf("%3lld %4lld %4lld %10.1f %10.1f %9.4f %9.4f %+8.4f %9.2f\n",
                static_cast<long long>(pp), static_cast<long long>(vpp), static_cast<long long>(m),
                best, ideal, (best - ideal) / ideal, theory, (best - ideal) / ideal - theory,
                excess_ms);
  }
  return 0;
}
