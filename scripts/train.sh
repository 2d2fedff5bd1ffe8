#!/usr/bin/env bash
# Train a recipe (default: recipes/tiny.yaml) on as many local ranks as its layout needs.
#   scripts/train.sh [RECIPE] [--set key.path=value]...
# Builds first if needed. Ranks = tp x dp x pp from the recipe (dp = 1 when it leaves dp open).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

recipe=recipes/tiny.yaml
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
  recipe=$1
  shift
fi
bin=${TMT_BUILD_DIR:-build}/tramontane
ranks=$("$bin" check "$recipe" "$@" --print-world)  # bad recipe or flags: its error, exit 2

if [ "$ranks" -eq 1 ]; then
  exec "$bin" train "$recipe" "$@"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# More ranks than cores is fine for small models: oversubscribe, one BLAS/OpenMP thread per rank.
cores=$(nproc)
threads=$(( cores / ranks > 0 ? cores / ranks : 1 ))
exec mpirun -n "$ranks" --oversubscribe --bind-to none -x OMP_NUM_THREADS="$threads" \
  -x OPENBLAS_NUM_THREADS=1 "$bin" train "$recipe" "$@"
