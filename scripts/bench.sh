#!/usr/bin/env bash
# bench.sh - tandem against XGBoost's C API, same models, rows and threads,
# in one run. Prints a table per case and saves JSON in build/bench/.
#   scripts/bench.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
make -s build/bench-predict
seconds=${1:-2}
mkdir -p build/bench
threads=$(nproc 2>/dev/null || echo 2)
for name in credit_data_binary synth_regression lending_club_cat synth_multiclass4; do
  for t in 1 "$threads"; do
    build/bench-predict "tests/fixtures/xgboost/$name.model.json" \
      "tests/fixtures/xgboost/$name.input.csv" --rows 100000 --threads "$t" \
      --seconds "$seconds" --json "build/bench/predict-$name-t$t.json"
    echo
  done
done
