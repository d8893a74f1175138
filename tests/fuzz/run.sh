#!/usr/bin/env bash
# Builds the fuzz targets (clang++, libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer) in
# build-fuzz/, replays the regression inputs, then fuzzes each target for SECONDS from the seed
# corpus (tests/fuzz/make_corpus.py) and the corpus earlier runs left in build-fuzz/corpus/.
# Fails on any finding; its input is kept in build-fuzz/findings/<target>/.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]     SECONDS per target (default 30); TARGET: safetensors,
#                                               lm_checkpoint, config_json, kernels, tokenizer,
#                                               xlstm_large (default all)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-30}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then targets=(safetensors lm_checkpoint config_json kernels tokenizer xlstm_large); fi

scripts/install-deps --fuzz
build=build-fuzz
cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DMLSTM_FUZZ=ON \
  -DMLSTM_BUILD_TESTS=OFF -DMLSTM_BUILD_BENCHMARKS=OFF -DMLSTM_BUILD_EXAMPLES=OFF \
  -DMLSTM_INSTALL=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"
/usr/bin/python3 tests/fuzz/make_corpus.py "$build/seeds"

# Valid inputs of these targets never need more than a few MB at once: a larger allocation is a
# loader trusting what a file claims.
options=(-rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=30 -print_final_stats=1)
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
failed=()
summary=()
for target in "${targets[@]}"; do
  binary=$build/tests/fuzz/fuzz_$target
  corpus=$build/corpus/$target
  findings=$build/findings/$target
  log=$build/fuzz_$target.log
  mkdir -p "$corpus" "$findings"
  regressions=(tests/fuzz/regressions/"$target"/*)
  status=0
  if [[ -e ${regressions[0]} ]] &&
    ! "$binary" "${options[@]}" -artifact_prefix="$findings/" "${regressions[@]}" >"$log" 2>&1; then
    status=1
  elif ! "$binary" "${options[@]}" -artifact_prefix="$findings/" -max_total_time="$seconds" \
    "$corpus" "$build/seeds/$target" >>"$log" 2>&1; then
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  summary+=("$(printf '%-14s %10s executions %8s exec/s' "$target" "${runs:-?}" "${rate:-?}")")
  if ((status != 0)); then
    failed+=("$target")
    echo "fuzz_$target: FINDING (log: $log, input in $findings/)" >&2
    grep -E 'ERROR|SUMMARY|what\(\)|runtime error' "$log" | head -20 >&2 || true
  fi
done
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzzing found faults in: ${failed[*]}" >&2
  exit 1
fi
