#include "kernels/base/arena.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "kernels/base/check.h"

namespace tmt {
namespace {

DeviceAllocator g_cuda_allocator;
thread_local int g_dry_runs = 0;

size_t round_up(size_t n) {
  return (n + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment;
}

}  // namespace

void register_device_allocator(Device device, DeviceAllocator allocator) {
  TMT_CHECK(device == Device::kCuda, "only CUDA takes a device allocator");
  g_cuda_allocator = allocator;
}

Arena::DryRun::DryRun() { ++g_dry_runs; }
Arena::DryRun::~DryRun() { --g_dry_runs; }
bool Arena::DryRun::active() { return g_dry_runs > 0; }

bool has_device_allocator(Device device) {
  return device == Device::kCpu || g_cuda_allocator.allocate != nullptr;
}

Arena::Arena(Device device, size_t capacity_bytes, std::string name, Fill fill)
    : capacity_(round_up(capacity_bytes)),
      device_(device),
      zero_fill_(fill == Fill::kZeroed),
      name_(std::move(name)) {
  if (capacity_ == 0) return;
  if (DryRun::active()) {
    // Address space only: nothing is committed, and touching it faults.
    void* p =
        mmap(nullptr, capacity_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    // A size beyond the address space is the input's doing (a recipe too large to size here),
    // not a broken invariant: the caller names what made it (memory_plan.cpp).
    if (p == MAP_FAILED) {
      input_error(
          "arena '{}' of {} bytes ({:.1f} TiB) is more than the address space to size "
          "it in",
          name_, capacity_, static_cast<double>(capacity_) / static_cast<double>(1ull << 40));
    }
    base_ = static_cast<std::byte*>(p);
    dry_ = true;
    return;
  }
  if (device == Device::kCpu) {
    base_ = static_cast<std::byte*>(std::aligned_alloc(kAlignment, capacity_));
    TMT_CHECK(base_ != nullptr, "arena '{}': cannot allocate {} bytes on the host", name_,
              capacity_);
    if (!zero_fill_) std::memset(base_, 0xff, capacity_);  // NaN: reads before writes show
  } else {
    TMT_CHECK(g_cuda_allocator.allocate != nullptr, "arena '{}': no CUDA backend in this build",
              name_);
    base_ = static_cast<std::byte*>(g_cuda_allocator.allocate(capacity_));
    if (!zero_fill_ && g_cuda_allocator.poison != nullptr)
      g_cuda_allocator.poison(base_, capacity_);
  }
}

Arena Arena::counting(Device device) {
  Arena a;
  a.device_ = device;
  a.counting_ = true;
  a.capacity_ = SIZE_MAX;
  a.name_ = "counting";
  return a;
}

Arena::~Arena() {
  if (base_ == nullptr) return;
  if (dry_) {
    munmap(base_, capacity_);
  } else if (device_ == Device::kCpu) {
    std::free(base_);
  } else {
    g_cuda_allocator.release(base_);
  }
}

Arena::Arena(Arena&& other) noexcept { *this = std::move(other); }

Arena& Arena::operator=(Arena&& other) noexcept {
  if (this != &other) {
    this->~Arena();
    base_ = std::exchange(other.base_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    used_ = std::exchange(other.used_, 0);
    peak_ = std::exchange(other.peak_, 0);
    device_ = other.device_;
    counting_ = other.counting_;
    dry_ = other.dry_;
    zero_fill_ = other.zero_fill_;
    name_ = std::move(other.name_);
  }
  return *this;
}

size_t Arena::footprint(DType dtype, Shape shape) {
  return round_up(static_cast<size_t>(shape.numel()) * dtype_size(dtype));
}

Tensor Arena::alloc(DType dtype, Shape shape) {
  const size_t bytes = footprint(dtype, shape);
  if (counting_) {
    used_ += bytes;
    peak_ = std::max(peak_, used_);
    Tensor t;
    t.dtype = dtype;
    t.device = device_;
    t.shape = shape;
    return t;
  }
  TMT_CHECK(used_ + bytes <= capacity_,
            "arena '{}' is full: {} bytes used of {}, {} more asked for {}{}", name_, used_,
            capacity_, bytes, dtype_name(dtype), shape.str());
  Tensor t;
  t.data = base_ + used_;
  t.dtype = dtype;
  t.device = device_;
  t.shape = shape;
  if (bytes > 0 && zero_fill_ && !dry_) {
    if (device_ == Device::kCpu) {
      std::memset(t.data, 0, bytes);
    } else {
      g_cuda_allocator.zero(t.data, bytes);
    }
  }
  used_ += bytes;
  peak_ = std::max(peak_, used_);
  return t;
}

}  // namespace tmt
