#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] - builds the libFuzzer harnesses (`make fuzz`)
# and runs each one for SECONDS (default 30) over a temporary copy of its
# seed corpus, so the corpus in the repository is never modified. Crash,
# leak and timeout inputs go to build-fuzz/artifacts/. Prints the
# executions and coverage of each harness and exits non-zero if any of them
# found a problem.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS]  (a positive whole number, default 30)" >&2
  exit 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

make fuzz

artifacts="$root/build-fuzz/artifacts"
mkdir -p "$artifacts"
work="$(mktemp -d "${TMPDIR:-/tmp}/tandem-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# UBSan reports are fatal, so libFuzzer saves the input like a crash.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"

# The seed corpus and dictionary of a harness.
corpus_of() {
  case "$1" in
    *) echo "tests/fuzz/corpus/${1#fuzz_}" ;; # fuzz_model: corpus/model
  esac
}
dict_of() {
  case "$1" in
    fuzz_model | fuzz_infer | fuzz_events | fuzz_kafka) echo tests/fuzz/json.dict ;;
    fuzz_expr) echo tests/fuzz/expr.dict ;;
    *) echo "" ;;
  esac
}

failed=0
summary=()
for src in tests/fuzz/fuzz_*.c; do
  name="$(basename "$src" .c)"
  bin="build-fuzz/$name"
  corpus="$work/$name"
  mkdir -p "$corpus"
  seeds="$(corpus_of "$name")"
  if [ -d "$seeds" ]; then
    cp -R "$seeds"/. "$corpus"/
  fi
  args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10
        -print_final_stats=1 -artifact_prefix="$artifacts/$name-")
  dict="$(dict_of "$name")"
  if [ -n "$dict" ]; then
    args+=(-dict="$dict")
  fi
  log="$work/$name.log"
  echo "== $name: ${seconds}s over $(find "$corpus" -type f | wc -l) seeds"
  status=0
  "$bin" "${args[@]}" "$corpus" >"$log" 2>&1 || status=$?
  # The final status line: "#N DONE cov: C ft: F corp: ...".
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  cov="$(sed -n 's/.*[[:space:]]cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)"
  ft="$(sed -n 's/.*[[:space:]]ft: \([0-9]*\).*/\1/p' "$log" | tail -n 1)"
  if [ "$status" -ne 0 ] || [ -z "$done_line" ]; then
    failed=1
    echo "!! $name FAILED (exit status $status); the end of its log:"
    tail -n 60 "$log"
    cp "$log" "$artifacts/$name.log"
    summary+=("$name: FAILED after ${execs:-?} executions, cov: ${cov:-?} (log: build-fuzz/artifacts/$name.log)")
  else
    summary+=("$name: ${execs:-?} executions, cov: ${cov:-?} ft: ${ft:-?}")
  fi
done

echo
echo "== summary (${seconds}s per harness)"
for line in "${summary[@]}"; do
  echo "$line"
done
exit "$failed"
