#include <gtest/gtest.h>
#include "kernels/base/dtype.h"
TEST(DType, Placeholder) { EXPECT_EQ(tmt::dtype_size(tmt::DType::kBF16), 2u); }
