#include "kernels/base/workspace.h"

#include <algorithm>
#include <string>

#include "kernels/base/check.h"

namespace tmt {
namespace {

// What a workspace that cannot serve a context has, for the message.
std::string describe(const Workspace& ws) {
  if (!ws.allocated()) return fmt::format("none allocated yet ({} reserved)", ws.reserved());
  return fmt::format("{} bytes on {}", ws.capacity(), device_name(ws.device()));
}

}  // namespace

void Workspace::reserve(size_t bytes) {
  TMT_CHECK(!allocated_, "workspace: {} bytes reserved after allocate() ({} allocated)", bytes,
            capacity());
  reserved_ = std::max(reserved_, bytes);
}

void Workspace::allocate(Device device) {
  TMT_CHECK(!allocated_, "workspace: allocated twice ({} bytes on {})", capacity(),
            device_name(this->device()));
  allocated_ = true;
  if (reserved_ == 0) {  // an empty arena on the device: no allocation
    memory_ = Arena(device, 0, "workspace");
    return;
  }
  memory_ = Arena(device, reserved_, "workspace", Arena::Fill::kUninitialized);
  // One opaque block, the whole arena (its capacity is reserved_ rounded up to kAlignment).
  const auto words = static_cast<int64_t>(memory_.capacity() / sizeof(int64_t));
  data_ = memory_.alloc(DType::kI64, {words}).data;
}

void* workspace_for(const Context& ctx, size_t bytes, const char* op) {
  const Workspace* ws = ctx.workspace;
  if (bytes == 0) return ws != nullptr ? ws->data() : nullptr;
  TMT_CHECK(ws != nullptr,
            "{}: needs {} bytes of {} workspace, but the context has none (its owner reserves "
            "the op's *_workspace_bytes() and sets Context::workspace; kernels/base/workspace.h)",
            op, bytes, device_name(ctx.device));
  TMT_CHECK(ws->allocated() && ws->device() == ctx.device && ws->capacity() >= bytes,
            "{}: needs {} bytes of {} workspace, but the context's has {} (its owner reserves the "
            "op's *_workspace_bytes() before allocate())",
            op, bytes, device_name(ctx.device), describe(*ws));
  return ws->data();
}

}  // namespace tmt
