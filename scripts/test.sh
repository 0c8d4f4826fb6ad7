#!/usr/bin/env bash
# test.sh - every test tandem has, as CI runs it on a clean clone:
#   1. install what is missing (scripts/setup.sh) and build
#   2. unit tests, then again under AddressSanitizer + UBSan, and the
#      public API's under ThreadSanitizer
#   3. integration tests against XGBoost itself (Debian's python3-xgboost),
#      with the normal build, the Python package's pytest suite, and the
#      CLI tests again under the sanitizers
#   4. the CLI's main commands under valgrind (scripts/valgrind.sh)
#   5. each fuzzer for a bounded time (FUZZ_SECONDS, default 30)
# It ends with the line "N passed, N failed" (one count per test program
# or step) and exits non-zero when any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
failed=()
passed=0
# check NAME COMMAND...: runs one test program or step and counts it.
check() {
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed+=("$name")
  fi
}
# Runs the tests make go to a registry of their own, not the user's.
registry_dir=$(mktemp -d "${TMPDIR:-/tmp}/tandem-test-registry.XXXXXX")
trap 'rm -rf "$registry_dir"' EXIT
export TANDEM_REGISTRY="${TANDEM_REGISTRY:-$registry_dir/registry.db}"
step() { printf '\n=== %s\n' "$*"; }

step "build"
make -j"$jobs"

step "include cycles between modules (scripts/include_cycles.py)"
check "include cycles" /usr/bin/python3 scripts/include_cycles.py

step "the library reads no environment; runners use tandem.h (scripts/library_boundary.py)"
check "library boundary" /usr/bin/python3 scripts/library_boundary.py

# The scoring benchmarks are built only here and by scripts/bench.sh: a
# change to the API or the internals must not leave them unbuildable.
step "the benchmarks build (bench-predict, bench-contribs)"
check "benchmarks build" make -j"$jobs" build/bench-predict build/bench-contribs

step "unit tests"
check "unit tests" build/tandem-unit-tests

step "unit tests under ASan + UBSan"
make -j"$jobs" asan >/dev/null
check "unit tests (sanitizers)" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1 build-asan/tandem-unit-tests

step "the public API's unit tests under ThreadSanitizer"
# Two pipelines, durable states and batch runs in two threads of one
# process (test_api.c): no data race in the library's shared state.
make -j"$jobs" tsan >/dev/null
check "api unit tests (tsan)" env TSAN_OPTIONS=halt_on_error=1 \
  build-tsan/tandem-unit-tests api_version api_pipeline_open_errors_name_where \
  api_state_answers_as_defined api_durable_state_continues_after_reopen \
  api_batch_equals_process api_two_pipelines_in_two_threads \
  atomic_tmp_registry_has_no_limit api_batch_rows_equals_file \
  api_store_options_not_environment api_score_file_in_two_threads
# The same from two Python threads, each with its own pipeline (batch over
# a DataFrame and a durable state), with libtsan preloaded into Python.
check "python threads (tsan)" scripts/tsan_python.sh

step "integration tests"
for t in tests/integration/test_*.py; do
  check "$t" /usr/bin/python3 "$t"
done

step "the Python package (python/) with pytest"
check "python package (build)" make -s python
check "python package" /usr/bin/python3 -m pytest -q -p no:cacheprovider python/tests

step "CLI tests under ASan + UBSan"
# test_soak.py runs its CI length here (SOAK_SECONDS, default 60); its
# heap bound allows for ASan's quarantine when TANDEM is an ASan build.
for t in tests/integration/test_cli.py tests/integration/test_xgboost_fixtures.py \
    tests/integration/test_lightgbm_fixtures.py tests/integration/test_linear_models.py \
    tests/integration/test_shard.py tests/integration/test_streaming.py \
    tests/integration/test_serve_exact.py tests/integration/test_serve_endpoints.py \
    tests/integration/test_serve_operations.py \
    tests/integration/test_hardening.py \
    tests/integration/test_hostile.py \
    tests/integration/test_proxy.py \
    tests/integration/test_http_mutation.py \
    tests/integration/test_pipeline_validation.py \
    tests/integration/test_pipeline_batch.py \
    tests/integration/test_pipeline_reference.py \
    tests/integration/test_pipeline_replay.py \
    tests/integration/test_pipeline_warm_start.py \
    tests/integration/test_time_rules.py \
    tests/integration/test_time_torture.py \
    tests/integration/test_hybrid.py \
    tests/integration/test_hybrid_redis.py \
    tests/integration/test_hybrid_redis_tls.py \
    tests/integration/test_hybrid_replicas.py \
    tests/integration/test_registry.py \
    tests/integration/test_drift.py \
    tests/integration/test_report.py \
    tests/integration/test_report_review.py \
    tests/integration/test_eval.py \
    tests/integration/test_xgboost_trained.py \
    tests/integration/test_contribs.py \
    tests/integration/test_pipeline_reasons.py \
    tests/integration/test_xgboost_categorical_edges.py \
    tests/integration/test_model_load_memory.py \
    tests/integration/test_fast_layout_edges.py \
    tests/integration/test_stream.py \
    tests/integration/test_stream_failover.py \
    tests/integration/test_stream_decision_log.py \
    tests/integration/test_tls.py \
    tests/integration/test_crash.py \
    tests/integration/test_docs.py \
    tests/integration/test_help.py \
    tests/integration/test_header_hints.py \
    tests/integration/test_missing_columns.py \
    tests/integration/test_listen_errors.py \
    tests/integration/test_eval_label_default.py \
    tests/integration/test_inspect_types.py \
    tests/integration/test_wrong_file_kind.py \
    tests/integration/test_time_unit_rfc3339.py \
    tests/integration/test_decision_log.py \
    tests/integration/test_live_eval.py \
    tests/integration/test_shadow.py \
    tests/integration/test_alert_rules.py \
    tests/integration/test_openapi.py \
    tests/integration/test_access_log.py \
    tests/integration/test_categories.py \
    tests/integration/test_pipeline_usage_errors.py \
    tests/integration/test_serve_messages.py \
    tests/integration/test_serve_binary.py \
    tests/integration/test_serve_binary_matrix.py \
    tests/integration/test_serve_body_reserve.py \
    tests/integration/test_number_text.py \
    tests/integration/test_float32_text.py \
    tests/integration/test_score_csv_tokenizer.py \
    tests/integration/test_serve_threads.py \
    tests/integration/test_hot_entity.py \
    tests/integration/test_batch_order.py \
    tests/integration/test_contribs_lanes.py \
    tests/integration/test_contribs_large.py \
    tests/integration/test_pipeline_latency_metrics.py \
    tests/integration/test_pipeline_snapshot_round.py \
    tests/integration/test_soak.py; do
  check "$t (sanitizers)" env TANDEM=build-asan/tandem ASAN_OPTIONS=detect_leaks=1 \
    /usr/bin/python3 "$t"
done

step "the CLI's commands under valgrind (memcheck, leaks)"
check "valgrind" scripts/valgrind.sh build/tandem

step "fuzzers (${FUZZ_SECONDS:-30} s each)"
check "fuzzers" scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

if [[ ${#failed[@]} -gt 0 ]]; then
  printf '\nFAILED: %s\n' "${failed[@]}"
fi
printf '\n%d passed, %d failed\n' "$passed" "${#failed[@]}"
[[ ${#failed[@]} -eq 0 ]]
