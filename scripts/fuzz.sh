#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ (docs/FUZZING.md) for SECONDS each (default 600), one after
# the other, each from a copy of its committed corpus (fuzz/corpus/<target>/ is never changed).
# Configures and builds build-fuzz/ with clang (-DTMT_FUZZ=ON, no tests) when needed. Prints a table
# of target, execs, seconds and result; exits 1 when any target crashed, hung, ran out of memory or
# leaked, and keeps its scratch directory (log and the input that did it) for reproducing.
#
#   scripts/fuzz.sh [SECONDS]
# Environment: TMT_FUZZ_BUILD_DIR (default build-fuzz), TMT_FUZZ_TARGETS (names, default all but
#              checkpoint_bytes, which mostly fuzzes HDF5 itself: recipe overrides shard ...),
#              TMT_JOBS (build jobs, default the number of cores), TMT_FUZZ_ARGS (more libFuzzer
#              flags, e.g. -jobs=2).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
build=${TMT_FUZZ_BUILD_DIR:-build-fuzz}
if [ -n "${TMT_FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$TMT_FUZZ_TARGETS"
else
  targets=()
  for f in fuzz/*_fuzz.cpp; do
    n=$(basename "$f" _fuzz.cpp)
    # HDF5's own parser under mutation: it has bugs of its own (docs/FUZZING.md); run when named.
    [ "$n" = checkpoint_bytes ] || targets+=("$n")
  done
fi

# The project's libraries (scripts/setup.sh), and clang with its libFuzzer and sanitizer runtimes.
scripts/setup.sh --deps-only
for p in clang libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang \
      libclang-rt-14-dev >/dev/null
    break
  fi
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  launcher=()
  command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CC=clang CXX=clang++ cmake -S . -B "$build" -DTMT_CUDA=OFF -DTMT_FUZZ=ON -DTMT_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 "${launcher[@]}"
fi
build_targets=()
for t in "${targets[@]}"; do build_targets+=("tmt_fuzz_$t"); done
cmake --build "$build" --target "${build_targets[@]}" -j"${TMT_JOBS:-$(nproc)}"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/tmt-fuzz-run-XXXXXX")
failed=0
rows=()
for t in "${targets[@]}"; do
  dir="$scratch/$t"
  mkdir -p "$dir/corpus" "$dir/tmp"
  [ -d "fuzz/corpus/$t" ] && cp -r "fuzz/corpus/$t/." "$dir/corpus/"
  echo "fuzz: $t for ${seconds}s (log $dir/log)"
  start=$(date +%s)
  set +e
  # shellcheck disable=SC2086
  # A huge malloc returns NULL as it does without ASan (HDF5 then fails the call; our own code's
  # std::bad_alloc still escapes and is a finding), instead of ASan's abort.
  TMPDIR="$dir/tmp" LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
    ASAN_OPTIONS="allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
    "$build/fuzz/tmt_fuzz_$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -close_fd_mask=1 -print_final_stats=1 -artifact_prefix="$dir/" \
    ${TMT_FUZZ_ARGS:-} "$dir/corpus" >"$dir/log" 2>&1
  rc=$?
  set -e
  took=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  artifacts=$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o \
    -name 'oom-*' -o -name 'leak-*' -o -name 'slow-unit-*' \) -printf '%f ' 2>/dev/null)
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc) ${artifacts:-see log}"
    failed=1
    grep -m1 -E 'ERROR: |runtime error|fuzz target exited|a recipe that reads' "$dir/log" >&2 || true
  fi
  rows+=("$(printf '%-12s %12s %8s  %s' "$t" "${execs:-?}" "$took" "$result")")
done

printf '\n%-12s %12s %8s  %s\n' target execs seconds result
for r in "${rows[@]}"; do echo "$r"; done
if [ "$failed" -eq 0 ]; then
  rm -rf "$scratch"
else
  echo "fuzz: logs and inputs kept in $scratch (rerun one: $build/fuzz/tmt_fuzz_<target> <input>)" >&2
fi
exit "$failed"
