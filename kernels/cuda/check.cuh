// TMT_CUDA_CHECK: a failed CUDA runtime call at run time is fatal, with the library's message.
#pragma once

#include <cuda_runtime.h>

#include "kernels/base/check.h"

#define TMT_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    const cudaError_t tmt_err_ = (call);                                                 \
    if (tmt_err_ != cudaSuccess) [[unlikely]] {                                          \
      ::tmt::fatal(__FILE__, __LINE__, #call, cudaGetErrorString(tmt_err_));              \
    }                                                                                    \
  } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define TMT_CUDA_CHECK_LAUNCH() TMT_CUDA_CHECK(cudaGetLastError())
