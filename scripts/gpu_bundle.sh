#!/usr/bin/env bash
# Packs the programs scripts/gpu_check.sh runs on a lent GPU machine, built here, so that device
# minutes go to running, not compiling. That machine's image has CUDA, PyTorch and NVIDIA's
# libraries (cuBLAS, cuDNN, NCCL as pip wheels) but none of tramontane's Debian dependencies and no
# network, so the bundle carries, beside the programs, every shared library they need that is
# neither glibc's nor CUDA's (Open MPI with its plugins and launcher, HDF5, OpenBLAS, yaml-cpp,
# fmt, ...). The CUDA libraries come from the machine's own wheels (gpu_check.sh finds them).
#
#   scripts/gpu_bundle.sh            build (TMT_BUILD_DIR, default build; CUDA on, warnings as
#                                    errors) and write build-gpu-bundle.tar.xz
# Then carry it: run(command="scripts/gpu_check.sh", carry=["build-gpu-bundle.tar.xz"]).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${TMT_BUILD_DIR:-build}
out=build-gpu-bundle
TMT_CMAKE_ARGS="-DTMT_CUDA=ON -DTMT_WERROR=ON ${TMT_CMAKE_ARGS:-}" TMT_BUILD_DIR=$build scripts/setup.sh

rm -rf "$out" && mkdir -p "$out/bin" "$out/lib"
# The programs: every cuda test, the benchmarks, the trainer.
programs=("$build/tramontane" "$build/tests/bench_train" "$build/tests/bench_cuda_kernels")
for p in "$build"/tests/cuda_*_test; do programs+=("$p"); done
for p in "${programs[@]}"; do cp "$p" "$out/bin/"; done
# ctest's list of the cuda tests (name, rank counts, environment), as gpu_check.sh runs them.
ctest --test-dir "$build" -L cuda --show-only=json-v1 >"$out/cuda-tests.json"

# Open MPI, relocatable under OPAL_PREFIX: the launcher, the daemon, the libraries and plugins and
# the help texts, in the layout this build of Open MPI expects below its prefix.
ompi_lib=$(ompi_info --path libdir --parsable | sed 's/.*://')
ompi_pkglib=$(ompi_info --path pkglibdir --parsable | sed 's/.*://')
mkdir -p "$out/ompi/bin" "$out/ompi${ompi_lib#/usr}" "$out/ompi/share"
cp -L /usr/bin/orterun /usr/bin/orted "$out/ompi/bin/"
ln -sf orterun "$out/ompi/bin/mpirun"
cp -a "$ompi_lib"/. "$out/ompi${ompi_lib#/usr}/"
cp -a /usr/share/openmpi "$out/ompi/share/"

# The shared libraries all of these need, less glibc's, the compiler runtime's and CUDA's.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libutil\.|libresolv\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcudnn|libnccl|libnvrtc|libnvJitLink|libcufile)'
objects=("$out"/bin/* "$out"/ompi/bin/orted "$out"/ompi/bin/orterun)
while IFS= read -r f; do objects+=("$f"); done < <(find "$out/ompi" -name '*.so*' -type f)
for o in "${objects[@]}"; do
  ldd "$o" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] && continue
  [[ $path == "$ompi_lib"/* ]] && continue  # already in the bundle's Open MPI
  cp -L "$path" "$out/lib/$name"
done
strip --strip-unneeded "$out"/bin/* "$out"/lib/* 2>/dev/null || true

tar -C "$out" -cJf "$out.tar.xz" .
echo "gpu_bundle: $out.tar.xz, $(du -h "$out.tar.xz" | cut -f1) ($(du -sh "$out" | cut -f1) unpacked):" \
  "$(ls "$out/bin" | wc -l) programs, $(ls "$out/lib" | wc -l) libraries"
