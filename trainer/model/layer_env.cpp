#include "trainer/model/layer_env.h"

#include <cmath>

namespace tmt {

double LayerEnv::out_init_std() const {
  return model->init_std / std::sqrt(2.0 * static_cast<double>(model->n_layers));
}

}  // namespace tmt
