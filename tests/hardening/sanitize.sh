#!/usr/bin/env bash
# Builds dl4c with a sanitizer in its own build directory and runs C tests there.
#   usage: tests/hardening/sanitize.sh KIND BUILD_DIR [ctest arguments...]
#   KIND: asan | ubsan | asan+ubsan | tsan
# Default tests: every C test (label "c": the cmocka suites and the fuzz corpus replays); tsan:
# the threaded ones (local workers, prefetch, the CPU thread pool and minibatch slices,
# divergence/interruption/streaming with workers).
# Any sanitizer report fails the test it occurs in (halt_on_error / exitcode).
set -euo pipefail
kind=${1:?usage: sanitize.sh asan|ubsan|asan+ubsan|tsan BUILD_DIR [ctest args]}
build=${2:?usage: sanitize.sh asan|ubsan|asan+ubsan|tsan BUILD_DIR [ctest args]}
shift 2
src=$(cd "$(dirname "$0")/../.." && pwd)
case $kind in
  asan) san=address ;;
  ubsan) san=undefined ;;
  asan+ubsan) san=address,undefined ;;
  tsan) san=thread ;;
  *) echo "sanitize.sh: unknown kind $kind" >&2; exit 2 ;;
esac
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$src" -B "$build" -DDL4C_SANITIZE="$san" -DDL4C_MPI=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j "${JOBS:-$(nproc)}" >/dev/null
sup="$src/tests/hardening"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$sup/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$sup/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  if [ "$kind" = tsan ]; then
    args=(-R '^(train/|dist/|data/test_batch|nn/test_cpu_kernels|nn/test_slices|backend/test_pool|hardening/test_divergence)')
  else
    args=(-L '^c$')
  fi
fi
cd "$build"
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "${args[@]}"
