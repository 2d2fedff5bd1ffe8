// Arena: one large allocation on one device, handed out as Tensors by bumping an offset.
//
// Parameters, gradients, optimizer state and activations each live in an arena sized at setup, so a
// training step allocates nothing. `mark()`/`reset(mark)` give stack-like reuse for scratch memory.
// Every allocation is aligned to kAlignment bytes (enough for vectorised loads and cuBLASLt).
//
// A scratch arena (Fill::kUninitialized) skips the zeroing: its tensors hold whatever the last user
// left (a fresh one, on the CPU and on the GPU, is all 0xff bytes, a NaN in every float type, so
// that a read before a write shows in the tests); for temporaries that the ops write before reading, where a
// memset per allocation would cost a pass over them.
//
// A counting arena (Arena::counting()) holds no memory: its tensors have no data, it only adds up
// what was asked. Running the same allocation code on one first gives the exact size of the real
// arena, so sizes are never computed twice by hand.
//
// While an Arena::DryRun lives on a thread, the arenas made there hold no memory: they reserve
// address space only (any access faults), and hand out tensors at distinct addresses as usual. It
// sizes a model that does not fit this machine with the code that allocates it (Model under
// ModelRun::dry: tramontane check --memory).
#pragma once

#include <cstddef>
#include <string>

#include "kernels/base/tensor.h"

namespace tmt {

// How an arena obtains memory on a device other than the CPU; the CUDA backend registers one.
struct DeviceAllocator {
  void* (*allocate)(size_t bytes) = nullptr;
  void (*release)(void* ptr) = nullptr;
  void (*zero)(void* ptr, size_t bytes) = nullptr;
  void (*poison)(void* ptr, size_t bytes) = nullptr;  // every byte 0xff: NaN in every float type
};
void register_device_allocator(Device device, DeviceAllocator allocator);
bool has_device_allocator(Device device);

class Arena {
 public:
  static constexpr size_t kAlignment = 256;

  enum class Fill : uint8_t { kZeroed, kUninitialized };

  class DryRun {
   public:
    DryRun();
    ~DryRun();
    DryRun(const DryRun&) = delete;
    DryRun& operator=(const DryRun&) = delete;
    static bool active();
  };

  Arena() = default;
  Arena(Device device, size_t capacity_bytes, std::string name, Fill fill = Fill::kZeroed);
  static Arena counting(Device device);
  ~Arena();
  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // A tensor of this shape, zero-filled unless the arena is kUninitialized; fatal if the arena is
  // too small (its size is a setup bug).
  Tensor alloc(DType dtype, Shape shape);

  size_t mark() const { return used_; }
  void reset(size_t mark = 0) { used_ = mark; }
  size_t used() const { return used_; }
  size_t peak() const { return peak_; }
  size_t capacity() const { return capacity_; }
  const std::byte* data() const { return base_; }  // where the first allocation starts
  Device device() const { return device_; }
  bool is_counting() const { return counting_; }

  // Bytes an allocation of this size takes, alignment included: for sizing arenas up front.
  static size_t footprint(DType dtype, Shape shape);

 private:
  std::byte* base_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  size_t peak_ = 0;
  Device device_ = Device::kCpu;
  bool counting_ = false;
  bool dry_ = false;  // address space only (DryRun)
  bool zero_fill_ = true;
  std::string name_;
};

}  // namespace tmt
