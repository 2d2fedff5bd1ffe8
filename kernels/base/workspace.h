// Workspace: the device scratch memory an op borrows for the length of one call. Ops never
// allocate device memory themselves (CUTLASS's and llm.c's rule): an op that needs scratch
// declares a size query next to itself in its header (`linear_workspace_bytes(device)`,
// `attention_bwd_workspace_bytes(device, shape, params)`, ...: 0 on the CPU) and, when it runs,
// takes its bytes from Context::workspace.
//
// Whoever owns a context (the Trainer, a test, a benchmark) reserves the most that any op it runs
// will ask for — several reserve() calls keep the largest — and allocates once, before the first
// op, then points its context at it:
//
//   Workspace ws;
//   ws.reserve(linear_workspace_bytes(device));
//   ws.reserve(attention_bwd_workspace_bytes(device, shape, params));
//   ws.allocate(device);
//   const Context ctx{device, stream, nullptr, &ws};
//
// The ops of one stream run one after another, so they all share the one block; nothing in it
// survives from one op to the next. Ops running at the same time on two streams need a workspace
// each. On the CPU every query is 0 and allocate() allocates nothing.
#pragma once

#include <cstddef>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"

namespace tmt {

class Workspace {
 public:
  Workspace() = default;
  // Contexts point at it: it stays where it is.
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // Asks for at least `bytes`; the largest request wins. Only before allocate().
  void reserve(size_t bytes);
  // Allocates what was reserved on `device` (contents uninitialized), once. With nothing reserved
  // it allocates nothing.
  void allocate(Device device);

  size_t reserved() const { return reserved_; }
  bool allocated() const { return allocated_; }
  size_t capacity() const { return memory_.capacity(); }  // bytes allocated; 0 before allocate()
  Device device() const { return memory_.device(); }
  void* data() const { return data_; }

 private:
  size_t reserved_ = 0;
  bool allocated_ = false;
  Arena memory_;
  void* data_ = nullptr;
};

// The first `bytes` of ctx.workspace, for one call of `op` (aligned to Arena::kAlignment). A
// context without a workspace, with one not allocated on ctx.device, or with one smaller than
// `bytes` is a setup bug: fatal, with the op, the bytes it needs and the bytes there are. Asking
// for 0 bytes always succeeds (nullptr when the context has no workspace).
void* workspace_for(const Context& ctx, size_t bytes, const char* op);
// The same, as an array of T: `double* partial = workspace_for<double>(ctx, bytes, "op");`.
template <class T>
T* workspace_for(const Context& ctx, size_t bytes, const char* op) {
  return static_cast<T*>(workspace_for(ctx, bytes, op));
}

}  // namespace tmt
