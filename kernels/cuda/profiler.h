// The CUDA side of the op profiler (kernels/base/profiler.h): timing events behind opaque
// pointers (cudaEvent_t), so that plain C++ needs no CUDA types.
#pragma once

namespace tmt::cuda {

// A new event that records time (cudaEventDefault).
void* event_create();
void event_destroy(void* event);
// Records `event` on `stream` (cudaStream_t; nullptr = the default stream).
void event_record(void* event, void* stream);
// Milliseconds from `start` to `end`, both recorded and complete (after a synchronize).
double event_elapsed_ms(void* start, void* end);

}  // namespace tmt::cuda
