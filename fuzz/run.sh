#!/usr/bin/env bash
# Runs the libFuzzer targets for a bounded time each.
#   usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]     (default: every target)
# Configures BUILD_DIR with clang and DL4C_FUZZ=ON, builds the fuzz_* binaries, then runs each
# target for SECONDS over a working copy of its seed corpus (BUILD_DIR/fuzz-corpus/<target>, so
# the repository's corpus only changes by hand). FUZZ_JOBS targets run at once (default 1).
# FUZZ_SEED fixes libFuzzer's seed (make test's smoke run uses 1, so it replays the same inputs).
# A crash leaves its input in BUILD_DIR/fuzz-artifacts/<target>/ and fails the run; keep it in
# fuzz/regressions/<target>/ once fixed. Prints each target's executions.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
secs=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config_json config_yaml idx csv model)
jobs=${FUZZ_JOBS:-1}
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang cmake -S "$src" -B "$build" -DDL4C_FUZZ=ON -DDL4C_MPI=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${targets[@]/#/fuzz_}" >/dev/null

max_len() {
  case $1 in config_json|config_yaml) echo 16384;; idx|csv) echo 8192;; model) echo 65536;; esac
}
dict() {
  case $1 in config_json|config_yaml) echo "-dict=$src/fuzz/config.dict";; model) echo "-dict=$src/fuzz/model.dict";; esac
}
run_one() {
  local t=$1 work="$build/fuzz-corpus/$t" art="$build/fuzz-artifacts/$t" log="$build/fuzz-logs/$t.log"
  mkdir -p "$work" "$art" "$build/fuzz-logs"
  local seeds=("$src/fuzz/corpus/$t") rc=0
  [ -d "$src/fuzz/regressions/$t" ] && seeds+=("$src/fuzz/regressions/$t")
  # allocator_may_return_null: an impossible allocation is the library's NOMEM path, not a crash.
  ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  OPENBLAS_NUM_THREADS=1 "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 ${FUZZ_SEED:+-seed=$FUZZ_SEED} \
      -max_len="$(max_len "$t")" $(dict "$t") -print_final_stats=1 -artifact_prefix="$art/" \
      "$work" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  local execs
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  if [ $rc -eq 0 ]; then
    echo "fuzz $t: ${execs:-?} executions in ${secs} s, no findings (corpus $(ls "$work" | wc -l) inputs)"
  else
    echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} executions; log $log, inputs in $art"
    grep -E 'ERROR|SUMMARY|property violated|Test unit written' "$log" | head -5
  fi
  return $rc
}
status=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
