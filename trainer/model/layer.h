// What every layer of the model shares: where it runs, the micro-batch's shape, and the arenas its
// parameters and activations come from.
#pragma once

#include <cstdint>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "parallel/comm.h"
#include "trainer/model/params.h"
#include "trainer/recipe.h"

namespace tmt {

struct LayerEnv {
  Context ctx;
  const Recipe* recipe = nullptr;
  int64_t batch = 0;  // B sequences per micro-batch
  int64_t seq = 0;    // S tokens per sequence
  DType dtype = DType::kF32;
  // Expert parallelism: the group that shares the experts out (size 1 when not expert-parallel).
  Communicator* ep = nullptr;
  int64_t tokens() const { return batch * seq; }  // T
  int64_t ep_size() const { return ep != nullptr ? ep->size() : 1; }
};

// Declares a parameter held whole by this rank (no sharding yet).
size_t add_param(ParamStore& store, const std::string& name, Shape shape, ParamKind kind,
                 bool decay, ParamInit init, double init_std);
// Declares this rank's block [offset, offset + rows) of the leading dimension of a parameter.
size_t add_param_rows(ParamStore& store, const std::string& name, Shape global, int64_t offset,
                      int64_t rows, ParamKind kind, bool decay, ParamInit init, double init_std);

}  // namespace tmt
