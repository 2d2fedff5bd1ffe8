// The CUDA backend's entry points that plain C++ may call (no CUDA types here).
#pragma once

#include <string>

namespace tmt::cuda {

// Number of usable GPUs; 0 with the reason in *why when there are none or the driver is missing.
int device_count(std::string* why);

// Binds this process to `device`, registers the device allocator with the arenas.
void init(int device);
// The UUID of the GPU this process is bound to, as hex ("GPU-" and 32 digits): what tells two
// ranks apart that see different GPUs under the same ordinal (per-task GPU binding).
std::string current_device_uuid();

// Waits until all work on the stream is done (nullptr = the default stream).
void synchronize(void* stream);
// Waits until all work on the current device is done, whatever its stream.
void synchronize_device();

// Copies between host and device memory (direction from the pointers' kinds).
void copy(void* dst, const void* src, size_t bytes);
// The same, ordered on `stream` (cudaStream_t; nullptr = the default stream).
void copy_async(void* dst, const void* src, size_t bytes, void* stream);

// Sets `bytes` bytes of device memory to zero, ordered on `stream` (nullptr = the default stream).
void memset_zero(void* ptr, size_t bytes, void* stream);

// Bytes of the current device's memory in use, by this process and any other (cudaMemGetInfo:
// total - free; the CUDA context and library workspaces included).
size_t device_memory_used();
// GPU `device` in words: "NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB".
std::string device_description(int device);

}  // namespace tmt::cuda
