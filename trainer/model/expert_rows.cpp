#include "trainer/model/expert_rows.h"

#include <algorithm>

namespace tmt {

GrowingStack::GrowingStack(Device device, size_t planned_bytes, std::string name)
    : device_(device), planned_(planned_bytes), name_(std::move(name)) {
  segments_.emplace_back(device_, planned_, name_, Arena::Fill::kUninitialized);
}

size_t GrowingStack::capacity() const {
  size_t total = 0;
  for (const Arena& s : segments_) total += s.capacity();
  return total;
}

Tensor GrowingStack::alloc(DType dtype, Shape shape) {
  const size_t bytes = Arena::footprint(dtype, shape);
  for (; current_ < segments_.size(); ++current_) {
    const Arena& s = segments_[current_];
    if (s.used() + bytes <= s.capacity()) return segments_[current_].alloc(dtype, shape);
  }
  segments_.emplace_back(device_, std::max(bytes, capacity() / 2), name_,
                         Arena::Fill::kUninitialized);
  current_ = segments_.size() - 1;
  return segments_.back().alloc(dtype, shape);
}

void GrowingStack::reset() {
  current_ = 0;
  if (segments_.size() > 1) {
    const size_t total = capacity();
    segments_.clear();  // nothing taken from them is live any more
    segments_.emplace_back(device_, total, name_, Arena::Fill::kUninitialized);
  }
  for (Arena& s : segments_) s.reset();
}

ExpertRows::ExpertRows(Device device, const std::vector<size_t>& kept_bytes, size_t scratch_bytes)
    : scratch_(device, scratch_bytes, "expert scratch") {
  for (const size_t bytes : kept_bytes) kept_.emplace_back(device, bytes, "expert rows");
}

size_t ExpertRows::planned_bytes() const {
  size_t total = scratch_.planned();
  for (const GrowingStack& k : kept_) total += k.planned();
  return total;
}

size_t ExpertRows::capacity_bytes() const {
  size_t total = scratch_.capacity();
  for (const GrowingStack& k : kept_) total += k.capacity();
  return total;
}

}  // namespace tmt
