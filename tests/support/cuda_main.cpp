// main() for tests that need a GPU. Without one it says why and exits 77, which ctest reports as
// "Not Run" (SKIP_RETURN_CODE), never as a pass.
#include <gtest/gtest.h>

#include <cstdio>

#include "kernels/cuda/runtime.h"

int main(int argc, char** argv) {
  std::string why;
  if (tmt::cuda::device_count(&why) == 0) {
    std::printf("SKIPPED: needs a CUDA GPU (%s)\n", why.c_str());
    return 77;
  }
  tmt::cuda::init(0);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
