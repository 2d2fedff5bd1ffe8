// Context: where an op runs. Ops take it first-class rather than reading globals, so two streams
// (or a CPU reference and a GPU run in the same test) never interfere.
#pragma once

#include "kernels/base/tensor.h"

namespace tmt {

class Profiler;   // profiler.h
class Workspace;  // workspace.h

struct Context {
  Device device = Device::kCpu;
  void* stream = nullptr;  // cudaStream_t on CUDA; unused on the CPU
  // When set, the ops record their times and costs into it (profiler.h); shared by every copy.
  Profiler* profiler = nullptr;
  // The device scratch memory the ops that need some borrow for one call (workspace.h); shared by
  // every copy. Null where no op needs any (the CPU).
  Workspace* workspace = nullptr;
};

}  // namespace tmt
