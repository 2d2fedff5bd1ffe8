// What every layer of the model shares: where it runs, the micro-batch's shape, and the arenas its
// parameters and activations come from.
#pragma once

#include <cstdint>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "trainer/model/params.h"
#include "trainer/recipe.h"

namespace tmt {

struct LayerEnv {
  Context ctx;
  const Recipe* recipe = nullptr;
  int64_t batch = 0;  // B sequences per micro-batch
  int64_t seq = 0;    // S tokens per sequence
  DType dtype = DType::kF32;
  int64_t tokens() const { return batch * seq; }  // T
};

// Declares a parameter held whole by this rank (no sharding yet).
size_t add_param(ParamStore& store, const std::string& name, Shape shape, ParamKind kind,
                 bool decay, ParamInit init, double init_std);

}  // namespace tmt
