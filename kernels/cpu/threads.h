// CPU threading policy. The reference kernels parallelise with OpenMP over rows, heads and experts;
// OpenBLAS's own thread pool, running beside OpenMP's, makes both spin against each other
// (measured: 3x slower on 2 cores). So BLAS runs single-threaded inside OpenMP's work unless
// OPENBLAS_NUM_THREADS says otherwise.
#pragma once

namespace tmt::cpu {

void init_threads();

}  // namespace tmt::cpu
