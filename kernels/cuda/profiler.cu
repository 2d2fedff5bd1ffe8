#include "kernels/cuda/check.cuh"
#include "kernels/cuda/profiler.h"

namespace tmt::cuda {

void* event_create() {
  cudaEvent_t e = nullptr;
  TMT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDefault));
  return e;
}

void event_destroy(void* event) {
  // Not checked: it runs from destructors, possibly after the runtime has shut down.
  cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

void event_record(void* event, void* stream) {
  TMT_CUDA_CHECK(
      cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)));
}

double event_elapsed_ms(void* start, void* end) {
  float ms = 0;
  TMT_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}

}  // namespace tmt::cuda
