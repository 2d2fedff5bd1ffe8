#include "trainer/model/layer.h"

namespace tmt {

size_t add_param(ParamStore& store, const std::string& name, Shape shape, ParamKind kind,
                 bool decay, ParamInit init, double init_std) {
  ParamSpec spec;
  spec.name = name;
  spec.global_shape = shape;
  spec.local_shape = shape;
  spec.kind = kind;
  spec.decay = decay;
  spec.init = init;
  spec.init_std = init_std;
  return store.add(std::move(spec));
}

size_t add_param_rows(ParamStore& store, const std::string& name, Shape global, int64_t offset,
                      int64_t rows, ParamKind kind, bool decay, ParamInit init, double init_std) {
  ParamSpec spec;
  spec.name = name;
  spec.global_shape = global;
  spec.local_shape = global.with(0, rows);
  spec.offset[0] = offset;
  spec.kind = kind;
  spec.decay = decay;
  spec.init = init;
  spec.init_std = init_std;
  return store.add(std::move(spec));
}

}  // namespace tmt
