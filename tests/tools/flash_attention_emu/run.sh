#!/bin/bash
# Runs the tensor-core attention kernels (kernels/cuda/flash_attention.cu) on the CPU, against the
# CPU reference, for checking their indexing, fragment layouts and barriers without a GPU. Each
# CUDA thread is a fiber; mma.sync, ldmatrix, shuffles and __syncthreads are emulated as warp or
# block barriers (emu.h) with the fragment layouts of the PTX ISA; shared memory starts as NaN,
# cp.async lands either at issue or at the wait (at random), and the fibers run in a random order.
# It checks the kernels against the emulator's reading of the PTX ISA, not against the hardware.
# Slow (a second to half a minute a case); not part of ctest. Needs a kernels library of any
# build, build/libtmt_kernels.a unless EMU_KERNELS_LIB names another (a CPU-only build's will do).
#
#   tests/tools/flash_attention_emu/run.sh test          the 168 cases (and inputs) of
#                                                        TensorCoresMatchReference
#   tests/tools/flash_attention_emu/run.sh SEED          the same shapes on other random inputs
#   tests/tools/flash_attention_emu/run.sh queries-last  queries shorter than keys (Sk > S)
#   tests/tools/flash_attention_emu/run.sh SEED B S H Hk Dh WINDOW [SK]    one case
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${EMU_BUILD:-$root/build/flash_attention_emu}
mkdir -p "$out"
# The two things plain C++ cannot take: the dynamic shared-memory declaration and the launch.
sed -e 's/extern __shared__ __align__(16) unsigned char flash_smem\[\];/unsigned char* flash_smem = ::emu::smem();/' \
    -e 's/Kernel<<<grid, kBlockThreads, kSmem, stream_of(ctx)>>>(args...);/::emu::launch(Kernel, grid, kBlockThreads, kSmem, args...);/' \
    "$root/kernels/cuda/flash_attention.cu" > "$out/flash_attention_emu.cpp"
if grep -q -e '<<<' -e '__shared__' "$out/flash_attention_emu.cpp"; then
  echo "run.sh: flash_attention.cu changed its launch or shared-memory lines; update the sed" >&2
  exit 1
fi
g++ -std=c++20 -O2 -I"$here" -I"$here/shadow" -I"$root" -DTMT_WITH_CUDA=1 \
    "$out/flash_attention_emu.cpp" "$here/main.cpp" "$root/tests/support/random.cpp" \
    "${EMU_KERNELS_LIB:-$root/build/libtmt_kernels.a}" -lfmt -fopenmp -o "$out/emu"
exec "$out/emu" "$@"
