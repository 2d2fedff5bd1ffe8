// Context: where an op runs. Ops take it first-class rather than reading globals, so two streams
// (or a CPU reference and a GPU run in the same test) never interfere.
#pragma once

#include "kernels/base/tensor.h"

namespace tmt {

struct Context {
  Device device = Device::kCpu;
  void* stream = nullptr;  // cudaStream_t on CUDA; unused on the CPU
};

}  // namespace tmt
