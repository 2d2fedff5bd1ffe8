// The CUDA libraries' check macros, one family: a failed call at run time is fatal, through
// ::tmt::fatal (kernels/base/check.h), with the call and the library's message:
//   TMT_CUDA_CHECK(call)      the CUDA runtime (cudaError_t)
//   TMT_CUDA_CHECK_LAUNCH()   after every kernel launch: catches bad launch configurations there
//   TMT_CUBLAS_CHECK(call)    cuBLASLt (cublasStatus_t)
// Plain C++ that includes the CUDA headers may use them too (parallel/nccl_comm.cpp does).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "kernels/base/check.h"

#define TMT_CUDA_CHECK(call)                                                 \
  do {                                                                       \
    const cudaError_t tmt_err_ = (call);                                     \
    if (tmt_err_ != cudaSuccess) [[unlikely]] {                              \
      ::tmt::fatal(__FILE__, __LINE__, #call, cudaGetErrorString(tmt_err_)); \
    }                                                                        \
  } while (0)

#define TMT_CUDA_CHECK_LAUNCH() TMT_CUDA_CHECK(cudaGetLastError())

#define TMT_CUBLAS_CHECK(call)                                                       \
  do {                                                                               \
    const cublasStatus_t tmt_status_ = (call);                                       \
    if (tmt_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]] {                         \
      ::tmt::fatal(__FILE__, __LINE__, #call, cublasLtGetStatusString(tmt_status_)); \
    }                                                                                \
  } while (0)
