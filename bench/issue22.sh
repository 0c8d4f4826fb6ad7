#!/usr/bin/env bash
# issue22.sh - every measurement of issue 22 ("speed where users feel it"),
# one after another, each against its peer in the same run:
#   bench/issue22.sh [OUTDIR]        (default build/bench/issue22)
# Run it on a quiet machine: items 2, 3 and 7 measure latency, and wrk,
# nginx and the load generator share the CPUs with tandem. Each step's full
# output is kept in OUTDIR/<step>.out and its JSON beside it; OUTDIR/log
# has the time and load average after each step. bench/README.md's
# "Issue 22: every item" table is read from these files.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/bench/issue22}
mkdir -p "$out"
M=build/bench/models
log() { echo "$1 $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/log"; }
make -s -j2 build/tandem build/bench-predict build/bench-load build/open-loop
[[ -f $M/small.model.json ]] || /usr/bin/python3 bench/make_models.py $M
log start

# Item 0: one hot entity against the same events over 4,000 entities.
/usr/bin/python3 bench/bench_hot_entity.py --json "$out/hot.json" > "$out/hot.out" 2>&1
log hot

# Item 1: the fraud pipeline in batch against the pandas peer, 1 and 2
# threads, user+system CPU and peak memory from /usr/bin/time.
d=$(mktemp -d "${TMPDIR:-/tmp}/issue22.XXXXXX")
/usr/bin/python3 examples/fraud/generate.py --cards 17000 --out "$d/ev.csv" > /dev/null
for t in 1 2; do
  /usr/bin/time -f "tandem threads=$t wall %e user %U sys %S maxrss_kb %M" \
    build/tandem batch examples/fraud/pipeline.yaml --in "$d/ev.csv" \
    --out "$d/out$t.csv" --threads $t --no-registry --store "$d/tables$t" \
    >> "$out/batch.out" 2>&1
  /usr/bin/time -f "peer threads=$t wall %e user %U sys %S maxrss_kb %M" \
    /usr/bin/python3 ../shared/peers/pandas_fraud_batch.py --in "$d/ev.csv" \
    --out "$d/peer$t.csv" --threads $t >> "$out/batch.out" 2>&1
done
cmp "$d/out1.csv" "$d/out2.csv" && echo "1 and 2 threads: identical output" >> "$out/batch.out"
rm -rf "$d"
log batch

# Item 2: one-row infer against nginx at 8, 32 and 64 connections.
/usr/bin/python3 bench/bench_serve.py --seconds 5 --connections 8,32,64 \
  --models medium --rows 1 --binary-rows '' --paced '' --no-fastapi \
  --json "$out/serve1.json" > "$out/serve1.out" 2>&1
log serve1

# Item 3: 256-row requests, JSON and the binary tensor extension.
/usr/bin/python3 bench/bench_serve.py --seconds 5 --connections 8 \
  --models small,medium --rows 256 --binary-rows 256 --paced '' --no-fastapi \
  --json "$out/serve256.json" > "$out/serve256.out" 2>&1
log serve256

# Item 4: `tandem score` CSV to CSV beside the evaluator's rows/s on the same
# model and threads (bench-predict writes the evaluator's figure first).
mkdir -p build/bench
for name in large medium; do
  for t in 1 2; do
    build/bench-predict $M/$name.model.json $M/$name.input.csv --rows 100000 \
      --threads $t --seconds 2 --json build/bench/predict-$name-t$t.json \
      >> "$out/predict.out" 2>&1
  done
done
MODELS=large,medium /usr/bin/python3 bench/end_to_end.py $M build/bench \
  --rows 500000 > "$out/e2e.out" 2>&1
log e2e

# Item 5: the categorical XGBoost fixture against XGBoost, and every
# LightGBM fixture's fast layout against tandem's reference walk.
for m in tests/fixtures/xgboost/lending_club_cat.model.json tests/fixtures/lightgbm/*.model.txt; do
  build/bench-predict "$m" "${m%.model.*}.input.csv" --threads 1 --seconds 1 \
    >> "$out/models.out" 2>&1
done
log models

# Item 6: loading the 15 MB model, tandem against XGBoost.
for lib in tandem xgboost; do
  build/bench-load $M/large.model.json $lib 5 >> "$out/load.out" 2>&1
done
log load

# Item 7: the live pipeline with durable state under a paced load, long
# enough to include a snapshot round.
/usr/bin/python3 bench/bench_paced.py --seconds 15 --json "$out/paced.json" \
  > "$out/paced.out" 2>&1
log paced
