#include "kernels/cpu/threads.h"

#include <cblas.h>

#include <cstdlib>

namespace tmt::cpu {

void init_threads() {
  if (std::getenv("OPENBLAS_NUM_THREADS") == nullptr) openblas_set_num_threads(1);
}

}  // namespace tmt::cpu
