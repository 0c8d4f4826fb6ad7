#!/usr/bin/env bash
# bench.sh - tandem against XGBoost's C API, same models, rows and threads,
# in one run, then end-to-end `tandem score` beside the evaluator, then
# `tandem serve` over HTTP against nginx with wrk (bench/bench_serve.py).
#   scripts/bench.sh [SECONDS] [BIG_GB] [SERVE_SECONDS]
# Trains the benchmark models with python3-xgboost the first time (into
# build/bench/models), prints a table per case, saves JSON in build/bench/.
# BIG_GB > 0 also scores a file of that many GiB and reports peak RSS.
# SERVE_SECONDS (default 10) is the length of each HTTP measurement; 0
# skips the HTTP benchmark. Last, `tandem stream` through librdkafka's mock
# cluster against a pass-through of the same messages
# (bench/bench_stream.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --bench
make -s build/tandem build/bench-predict
seconds=${1:-2}
big_gb=${2:-0}
serve_seconds=${3:-10}
mkdir -p build/bench
if [[ ! -f build/bench/models/classes.model.json ]]; then
  /usr/bin/python3 bench/make_models.py build/bench/models
fi
threads=$(nproc 2>/dev/null || echo 2)
run() { # NAME MODEL ROWS
  for t in 1 "$threads"; do
    build/bench-predict "$2" "$3" --rows 100000 --threads "$t" \
      --seconds "$seconds" --json "build/bench/predict-$1-t$t.json"
    echo
  done
}
for name in large medium classes; do
  run "$name" "build/bench/models/$name.model.json" \
    "build/bench/models/$name.input.csv"
done
for name in credit_data_binary synth_regression lending_club_cat synth_multiclass4; do
  run "$name" "tests/fixtures/xgboost/$name.model.json" \
    "tests/fixtures/xgboost/$name.input.csv"
done
/usr/bin/python3 bench/end_to_end.py build/bench/models build/bench \
  --rows 500000 --big-gb "$big_gb"
if [[ "$serve_seconds" != 0 ]]; then
  echo
  /usr/bin/python3 bench/bench_serve.py --seconds "$serve_seconds" \
    --json build/bench/serve.json
fi
echo
/usr/bin/python3 bench/bench_stream.py --json build/bench/stream.json
