#!/usr/bin/env bash
# Installs what tramontane needs from Debian packages (when missing), then configures and builds into
# build/. Idempotent: with everything installed and built it only runs an incremental build.
#
#   scripts/setup.sh                 install + build
#   scripts/setup.sh --deps-only     install only
# Environment: TMT_BUILD_DIR (default build), TMT_CMAKE_ARGS (extra cmake arguments),
#              TMT_JOBS (parallel build jobs, default: number of cores),
#              TMT_DEPS_DIR (the cache of header-only wheels, default ~/.cache/tramontane).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ cmake make pkg-config            # toolchain
  libopenmpi-dev openmpi-bin           # MPI (the CPU communicator, and the launcher)
  libyaml-cpp-dev                      # recipes
  libhdf5-openmpi-dev                  # checkpoints (the Open MPI flavour of HDF5)
  libopenblas-dev                      # CPU GEMMs
  nlohmann-json3-dev                   # metrics.jsonl, JSONL inputs, tekken tokenizers
  libpcre2-dev                         # tekken's pre-split regex
  libsentencepiece-dev                 # SentencePiece tokenizers
  libfmt-dev                           # formatting
  libcli11-dev                         # the command line
  libgtest-dev                         # tests
  python3-h5py                         # tests: checkpoints read with h5py alone
  python3-matplotlib                   # scripts/plot.py (and its test)
  slurm-wlm munge                      # tests: a one-node Slurm for the batch-script test
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Header-only NVIDIA libraries for the CUDA backend, as NVIDIA's own PyPI wheels at pinned versions:
# fetched once (no dependencies), their headers unpacked into a cache outside the source tree, which
# CMake searches (TMT_DEPS_DIR; default ~/.cache/tramontane). Skipped where there is no nvcc.
deps_dir=${TMT_DEPS_DIR:-$HOME/.cache/tramontane}
wheels=(
  "nvidia-cudnn-frontend 1.32.0 include"                                        # cudnn_frontend.h
  "nvidia-cutlass 4.2.0.0 cutlass_library/source/include cutlass_library/source/tools/util/include"
)
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  for w in "${wheels[@]}"; do
    read -r name version paths <<<"$w"
    dest="$deps_dir/$name-$version"
    [ -f "$dest/.complete" ] && continue
    echo "setup: fetching $name==$version into $dest"
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$name==$version" -d "$tmp" ||
      { echo "setup: cannot download $name==$version from PyPI" >&2; exit 1; }
    rm -rf "$dest" && mkdir -p "$dest"
    # shellcheck disable=SC2086
    python3 - "$tmp"/*.whl "$dest" $paths <<'PY'
import sys, zipfile
wheel, dest, prefixes = sys.argv[1], sys.argv[2], [p.rstrip("/") + "/" for p in sys.argv[3:]]
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        if any(n.startswith(p) for p in prefixes):
            z.extract(n, dest)
PY
    touch "$dest/.complete"
    rm -rf "$tmp"
  done
fi

# Mistral's tokenizer files, for the tokenizer tests: mistral_common/data/ of the mistral-common wheel
# (always: the tests need no GPU), unpacked beside the NVIDIA headers.
mc_dest="$deps_dir/mistral-common-1.13.1"
if [ ! -f "$mc_dest/.complete" ]; then
  echo "setup: fetching mistral-common==1.13.1 (its tokenizer files) into $mc_dest"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: "mistral-common==1.13.1" -d "$tmp" ||
    { echo "setup: cannot download mistral-common==1.13.1 from PyPI" >&2; exit 1; }
  rm -rf "$mc_dest" && mkdir -p "$mc_dest"
  python3 - "$tmp"/*.whl "$mc_dest" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.startswith("mistral_common/data/"):
            z.extract(n, sys.argv[2])
PY
  touch "$mc_dest/.complete"
  rm -rf "$tmp"
fi

[ "${1:-}" = "--deps-only" ] && exit 0

build_dir=${TMT_BUILD_DIR:-build}
jobs=${TMT_JOBS:-$(nproc)}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  # shellcheck disable=SC2086
  mkdir -p "$build_dir"
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DTMT_DEPS_DIR="$deps_dir" ${TMT_CMAKE_ARGS:-} >"$build_dir/configure.log" 2>&1 ||
    { cat "$build_dir/configure.log"; exit 1; }
elif [ -n "${TMT_CMAKE_ARGS:-}" ]; then
  # shellcheck disable=SC2086
  cmake "$build_dir" ${TMT_CMAKE_ARGS} >/dev/null
fi
# The build's own output goes to a log; on failure it is shown.
echo "setup: building in $build_dir/ (log: $build_dir/build.log)" >&2
cmake --build "$build_dir" -j "$jobs" >"$build_dir/build.log" 2>&1 || { tail -n 60 "$build_dir/build.log"; exit 1; }
