// The workspace the ops borrow (kernels/base/workspace.h): reserve keeps the largest request,
// allocate makes one aligned block (none for 0 bytes), and an op asking for more than its context
// has stops with a message naming the op and both sizes.
#include "kernels/base/workspace.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace tmt {
namespace {

TEST(Workspace, ReserveKeepsTheLargestAndAllocatesOnce) {
  Workspace ws;
  ws.reserve(1000);
  ws.reserve(300);
  ws.reserve(5000);
  ws.reserve(0);
  EXPECT_EQ(ws.reserved(), 5000u);
  EXPECT_FALSE(ws.allocated());
  ws.allocate(Device::kCpu);
  EXPECT_TRUE(ws.allocated());
  EXPECT_GE(ws.capacity(), 5000u);
  EXPECT_EQ(ws.capacity() % Arena::kAlignment, 0u);
  ASSERT_NE(ws.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ws.data()) % Arena::kAlignment, 0u);

  const Context ctx{Device::kCpu, nullptr, nullptr, &ws};
  EXPECT_EQ(workspace_for(ctx, 5000, "op"), ws.data());
  EXPECT_EQ(workspace_for(ctx, 1, "op"), ws.data());
}

TEST(Workspace, NothingReservedAllocatesNothing) {
  Workspace ws;
  ws.allocate(Device::kCuda);  // no device allocator needed for 0 bytes
  EXPECT_TRUE(ws.allocated());
  EXPECT_EQ(ws.capacity(), 0u);
  EXPECT_EQ(ws.data(), nullptr);
  const Context ctx{Device::kCuda, nullptr, nullptr, &ws};
  EXPECT_EQ(workspace_for(ctx, 0, "op"), nullptr);
  EXPECT_EQ(workspace_for(Context{}, 0, "op"), nullptr);  // 0 bytes: no workspace needed
}

TEST(WorkspaceDeathTest, AnOpAskingForTooMuchNamesItselfAndBothSizes) {
  Workspace ws;
  ws.reserve(256);
  ws.allocate(Device::kCpu);
  const Context ctx{Device::kCpu, nullptr, nullptr, &ws};
  EXPECT_DEATH(workspace_for(ctx, 4096, "sum_squares"),
               "sum_squares: needs 4096 bytes of cpu workspace, but the context's has 256 bytes");
  EXPECT_DEATH(workspace_for(Context{}, 64, "linear"),
               "linear: needs 64 bytes of cpu workspace, but the context has none");
  Workspace later;
  const Context unallocated{Device::kCpu, nullptr, nullptr, &later};
  EXPECT_DEATH(workspace_for(unallocated, 8, "z_loss"), "z_loss: .* none allocated yet");
  EXPECT_DEATH(ws.reserve(512), "reserved after allocate");
  EXPECT_DEATH(ws.allocate(Device::kCpu), "allocated twice");
}

}  // namespace
}  // namespace tmt
