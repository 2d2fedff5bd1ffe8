// ShapeOnlyComm: a group that has a size and a rank but moves nothing — what a model needs to lay
// out its shards for a layout this process does not run (sizing: trainer/memory_plan.h). Every
// collective and message is a fatal error.
#pragma once

#include "parallel/comm.h"

namespace tmt {

class ShapeOnlyComm final : public Communicator {
 public:
  ShapeOnlyComm(int size, int rank) : size_(size), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce(const Tensor&, ReduceOp) override { refuse("all_reduce"); }
  void reduce_scatter(const Tensor&, const Tensor&) override { refuse("reduce_scatter"); }
  void all_gather(const Tensor&, const Tensor&) override { refuse("all_gather"); }
  void all_to_all_v(const Tensor&, const std::vector<int64_t>&, const Tensor&,
                    const std::vector<int64_t>&, const std::vector<int64_t>&) override {
    refuse("all_to_all_v");
  }
  void send(const Tensor&, int, int) override { refuse("send"); }
  void recv(const Tensor&, int, int) override { refuse("recv"); }
  std::unique_ptr<SendRequest> isend(const Tensor&, int, int) override {
    refuse("isend");
    return nullptr;
  }
  void broadcast(const Tensor&, int) override { refuse("broadcast"); }
  void barrier() override { refuse("barrier"); }
  std::unique_ptr<Communicator> split(int, int) const override {
    refuse("split");
    return nullptr;
  }

 private:
  [[noreturn]] static void refuse(const char* what) {
    TMT_CHECK(false, "{} on a shape-only group (it sizes a layout, it does not run one)", what);
    __builtin_unreachable();
  }
  int size_, rank_;
};

}  // namespace tmt
