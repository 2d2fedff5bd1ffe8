// The time of one MoE layer's token dispatch and combine on the CPU over MPI, for
// scripts/bench/moe_dispatch.sh: each rank routes T tokens of width D to top-K of E experts drawn
// at random, builds the plan, permutes, exchanges with the expert-parallel ranks (all of the
// world), reorders expert-major, and back. Prints one table row (rank 0).
//   mpirun -n P build/tests/bench_moe_dispatch T D E K [REPEATS]
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "kernels/base/arena.h"
#include "kernels/base/rng.h"
#include "kernels/moe_dispatch.h"
#include "parallel/comm.h"
#include "parallel/expert_exchange.h"
#include "parallel/mpi_env.h"

int main(int argc, char** argv) {
  tmt::MpiEnvironment mpi(&argc, &argv);
  if (argc < 5) {
    if (mpi.rank() == 0) std::fprintf(stderr, "usage: bench_moe_dispatch T D E K [REPEATS]\n");
    return 2;
  }
  const int64_t t = std::atoll(argv[1]), d = std::atoll(argv[2]), e = std::atoll(argv[3]),
                k = std::atoll(argv[4]);
  const int repeats = argc > 5 ? std::atoi(argv[5]) : 20;
  auto world = tmt::mpi_world();
  const tmt::Context ctx{};
  tmt::Arena a(tmt::Device::kCpu,
               static_cast<size_t>(4 * world->size() * t * k * d * 4 + 2 * t * d * 4 + t * k * 8) +
                   (1 << 20),
               "bench");
  const tmt::Tensor idx = a.alloc(tmt::DType::kI32, {t, k});
  for (int64_t i = 0; i < t; ++i) {
    // k distinct experts per token
    for (int64_t c = 0; c < k; ++c) {
      int32_t pick = 0;
      for (uint64_t n = 0;; ++n) {
        pick = static_cast<int32_t>(
            tmt::random_bits(world->rank(), static_cast<uint64_t>(i * k + c), n) %
            static_cast<uint64_t>(e));
        bool seen = false;
        for (int64_t c2 = 0; c2 < c; ++c2) seen = seen || idx.ptr<int32_t>()[i * k + c2] == pick;
        if (!seen) break;
      }
      idx.ptr<int32_t>()[i * k + c] = pick;
    }
  }
  const tmt::Tensor x = a.alloc(tmt::DType::kF32, {t, d});
  const tmt::Tensor y = a.alloc(tmt::DType::kF32, {t, d});
  const tmt::Tensor w = a.alloc(tmt::DType::kF32, {t, k});
  const int64_t rows = t * k, most = world->size() * rows;
  const tmt::Tensor xp = a.alloc(tmt::DType::kF32, {rows, d}),
                    xr = a.alloc(tmt::DType::kF32, {most, d}),
                    xe = a.alloc(tmt::DType::kF32, {most, d});
  tmt::DispatchPlan plan;
  tmt::ExpertExchange exchange(world.get(), 1, e);
  double dispatch_s = 0, combine_s = 0;
  int64_t moved = 0;
  for (int r = -2; r < repeats; ++r) {  // two warm-up rounds
    world->barrier();
    const auto t0 = std::chrono::steady_clock::now();
    tmt::make_dispatch_plan(plan, idx, e, 0, e, std::nullopt);
    exchange.plan(plan.counts);
    const int64_t recv = exchange.received_rows();
    tmt::permute_fwd(ctx, xp, x, plan);
    exchange.to_experts(ctx, xe.slice(0, recv), xr.slice(0, recv), xp);
    world->barrier();
    const auto t1 = std::chrono::steady_clock::now();
    exchange.from_experts(ctx, xp, xp, xr.slice(0, recv), xe.slice(0, recv));
    tmt::unpermute_fwd(ctx, y, xp, w, plan);
    world->barrier();
    const auto t2 = std::chrono::steady_clock::now();
    if (r >= 0) {
      dispatch_s += std::chrono::duration<double>(t1 - t0).count();
      combine_s += std::chrono::duration<double>(t2 - t1).count();
      moved = rows;
    }
  }
  const double bytes = static_cast<double>(moved * d * 4);
  if (world->rank() == 0) {
    std::printf("%5d %7lld %5lld %4lld %2lld %12.3f %12.3f %12.0f\n", world->size(),
                static_cast<long long>(t), static_cast<long long>(d), static_cast<long long>(e),
                static_cast<long long>(k), 1e3 * dispatch_s / repeats, 1e3 * combine_s / repeats,
                bytes / (dispatch_s / repeats) / 1e6);
  }
  return 0;
}
