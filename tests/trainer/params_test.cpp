// ParamStore: groups, padding, and the compute-dtype copy of mixed precision. On the CPU the copy
// is tested as f32 weights of f64 values (the same mechanism as bf16 weights of f32 values on the
// GPU): every weight sits at its value's flat offset, equals the value rounded to the compute
// dtype after initialize() and after sync_weights(), and a store without a compute dtype of its
// own has weight = value.
#include "trainer/model/params.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tmt {
namespace {

ParamStore make_store() {
  ParamStore s;
  const auto add = [&](const std::string& name, Shape shape, ParamKind kind, bool decay,
                       ParamInit init) {
    ParamSpec spec;
    spec.name = name;
    spec.global_shape = shape;
    spec.local_shape = shape;
    spec.kind = kind;
    spec.decay = decay;
    spec.init = init;
    spec.init_std = 0.5;
    s.add(spec);
  };
  add("a", {7, 5}, ParamKind::kDense, true, ParamInit::kNormal);
  add("norm", {5}, ParamKind::kDense, false, ParamInit::kOnes);
  add("b", {3, 33}, ParamKind::kDense, true, ParamInit::kNormal);
  add("experts", {2, 9, 5}, ParamKind::kExpert, true, ParamInit::kNormal);
  return s;
}

int64_t offset(const Tensor& t, const Tensor& base) {
  return (static_cast<const std::byte*>(t.data) - static_cast<const std::byte*>(base.data)) /
         static_cast<int64_t>(dtype_size(t.dtype));
}

TEST(ParamStore, ComputeCopyMirrorsTheValuesElementForElement) {
  ParamStore s = make_store();
  s.allocate(Device::kCpu, DType::kF64, DType::kF32, 4);
  EXPECT_EQ(s.compute_dtype(), DType::kF32);
  s.initialize(7);
  for (const ParamGroup& g : s.groups()) {
    ASSERT_EQ(g.weights.dtype, DType::kF32);
    ASSERT_EQ(g.weights.numel(), g.values.numel());
    EXPECT_EQ(g.values.numel() % 4, 0);
    EXPECT_NE(g.weights.data, g.values.data);
    EXPECT_EQ(offset(g.weights, s.groups().front().weights),
              offset(g.values, s.groups().front().values));
  }
  const Tensor first_w = s.groups().front().weights, first_v = s.groups().front().values;
  for (const Param& p : s.all()) {
    SCOPED_TRACE(p.spec.name);
    ASSERT_EQ(p.weight.shape, p.value.shape);
    EXPECT_EQ(offset(p.weight, first_w), offset(p.value, first_v));
    for (int64_t i = 0; i < p.value.numel(); ++i) {
      const double v = p.value.ptr<double>()[i];
      ASSERT_EQ(p.weight.ptr<float>()[i], static_cast<float>(v)) << "element " << i;
    }
  }
  // The values change (an optimizer step, a checkpoint load); sync_weights follows them, padding
  // included.
  for (const ParamGroup& g : s.groups()) {
    for (int64_t i = 0; i < g.values.numel(); ++i) g.values.ptr<double>()[i] = 1.0 / (3.0 + i);
  }
  s.sync_weights();
  for (const ParamGroup& g : s.groups()) {
    for (int64_t i = 0; i < g.values.numel(); ++i)
      ASSERT_EQ(g.weights.ptr<float>()[i], static_cast<float>(1.0 / (3.0 + i))) << i;
  }
  const Param* norm = s.find("norm");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->weight.ptr<float>()[0], static_cast<float>(norm->value.ptr<double>()[0]));
}

TEST(ParamStore, WithoutAComputeDtypeTheWeightIsTheValue) {
  ParamStore s = make_store();
  s.allocate(Device::kCpu, DType::kF32, DType::kF32);
  s.initialize(7);
  for (const Param& p : s.all()) {
    EXPECT_EQ(p.weight.data, p.value.data) << p.spec.name;
    EXPECT_EQ(p.weight.dtype, DType::kF32);
  }
  for (const ParamGroup& g : s.groups()) EXPECT_EQ(g.weights.data, g.values.data);
  // Initial values are a pure function of (seed, name, index): the f64 store's, rounded.
  ParamStore wide = make_store();
  wide.allocate(Device::kCpu, DType::kF64, DType::kF32);
  wide.initialize(7);
  const Param& a = *s.find("a");
  const Param& wa = *wide.find("a");
  for (int64_t i = 0; i < a.value.numel(); ++i)
    EXPECT_EQ(a.value.ptr<float>()[i], static_cast<float>(wa.value.ptr<double>()[i]));
}

}  // namespace
}  // namespace tmt
