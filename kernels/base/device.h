// Where ops run: the GPUs this process can use, and binding the process to one of them.
#pragma once

#include <cstddef>
#include <string>

#include "kernels/base/context.h"

namespace tmt {

// GPUs this process can use; 0 with the reason in *why (no driver, no device, or a build without
// the CUDA backend).
int usable_gpus(std::string* why);

// A context on `device`. For kCuda, binds this process to GPU `ordinal` mod usable_gpus() (so
// that ranks beyond the GPU count share them) and registers its allocator with the arenas; a
// missing GPU is an internal error here (callers refuse it as bad input first).
Context open_device(Device device, int ordinal);

// The UUID of the GPU open_device bound this process to; "" when it bound none.
std::string bound_gpu_uuid();

// Bytes in use on the GPU open_device bound this process to, by every process on it (total - free
// as the driver reports it: the arenas, the CUDA context, the libraries' workspaces); 0 when it
// bound none.
size_t bound_gpu_memory_used();

}  // namespace tmt
