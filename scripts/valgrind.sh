#!/usr/bin/env bash
# scripts/valgrind.sh [TANDEM] - runs the CLI's main commands under
# valgrind's memcheck on small inputs and fails on any memory error or any
# definitely or indirectly lost block (still-reachable memory, such as
# what libcrypto keeps for the process's life, is not counted). TANDEM is
# the binary to check (default build/tandem; a normal, non-sanitizer
# build). Commands: inspect, score (CSV and JSON Lines), batch (plain,
# --features-only, --explain), serve (start,
# infer and event requests, a replay, SIGHUP, SIGTERM), replay, eval,
# runs, compare, report. Takes one to three minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."

tandem="${1:-build/tandem}"
if ! command -v valgrind >/dev/null; then
  echo "valgrind.sh: valgrind is not installed" >&2
  exit 1
fi
[ -x "$tandem" ] || make -s -j"$(nproc 2>/dev/null || echo 2)" "$tandem"

work="$(mktemp -d "${TMPDIR:-/tmp}/tandem-valgrind.XXXXXX")"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

vg=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99
    --track-origins=yes)
failed=()
count=0
# check NAME EXPECTED_STATUS ARGS...: one command under memcheck.
check() {
  local name="$1" want="$2"
  shift 2
  count=$((count + 1))
  local log="$work/$count.log" status=0
  "${vg[@]}" --log-file="$log" "$tandem" "$@" >"$work/$count.out" 2>"$work/$count.err" \
    || status=$?
  if [ "$status" -ne "$want" ] || [ -s "$log" ]; then
    failed+=("$name (exit $status, expected $want)")
    echo "!! $name: exit $status (expected $want)"
    tail -n 60 "$log" "$work/$count.err"
  else
    echo "ok $name"
  fi
}

model=tests/fixtures/xgboost/credit_data_binary.model.json
rows=tests/fixtures/xgboost/credit_data_binary.input.csv
lgb=tests/fixtures/lightgbm/credit_data_binary.model.txt
reg="$work/registry.db"
# The pipeline of the pipeline tests (every kind of feature), with a
# model trained at once, and two event files. Not the fraud example: its
# lookup opens an LMDB table store, whose 256 GiB address-space
# reservation (src/store/table.c) is more than valgrind 3.19 can map (it
# fails with EINVAL), and so is the 64 GiB one of the state (store.c):
# --materialize, --store, --save-state and serve --state are not run
# here; they run under ASan + LeakSanitizer in test.sh (test_hybrid.py,
# test_pipeline_warm_start.py, test_pipeline_replay.py).
pipeline="$work/pipeline.yaml"
PYTHONPATH=tests/integration /usr/bin/python3 - "$work" <<'PY'
import sys
from pipeline_util import FRAUD_COLUMNS, fraud_events, fraud_pipeline, write_csv
work = sys.argv[1]
fraud_pipeline(work)
events = fraud_events(7, 1500, entities=20, invalid=0.02)
write_csv(work + "/txns.history.csv", FRAUD_COLUMNS + ["label"],
          [dict(e, label=str(i % 3 == 0 and 1 or 0)) for i, e in enumerate(events[:1200])])
write_csv(work + "/txns.live.csv", FRAUD_COLUMNS, events[1200:])
PY
head -n 200 "$rows" >"$work/rows.csv"
{ echo label; for i in $(seq 199); do echo $((i * 7 % 3 == 0)); done; } >"$work/labels.csv"


check "inspect" 0 inspect "$model"
check "inspect --json (LightGBM)" 0 inspect --json "$lgb"
check "score" 0 score --model "$model" --in "$work/rows.csv" --out "$work/s.csv" \
  --threads 2 --registry "$reg"
check "score --margin, JSON Lines" 0 score --model "$lgb" --in "$work/rows.csv" \
  --out "$work/s.jsonl" --margin --no-registry
check "score, a bad input (exit 2)" 2 score --model "$model" --in "$pipeline" \
  --out "$work/bad.csv" --no-registry
check "batch" 0 batch "$pipeline" --in "$work/txns.history.csv" \
  --out "$work/h.csv" --threads 2 \
  --registry "$reg"
check "batch --threads 1" 0 batch "$pipeline" --in "$work/txns.history.csv" \
  --out "$work/h2.csv" --threads 1 --registry "$reg"
check "batch --features-only" 0 batch "$pipeline" --in "$work/txns.history.csv" \
  --out "$work/f.csv" --features-only --no-registry
check "batch --explain (JSON Lines)" 0 batch "$pipeline" --in "$work/txns.live.csv" \
  --out "$work/l.jsonl" --explain --no-registry
check "eval" 0 eval --pred "$work/s.csv" --labels "$work/labels.csv"
check "runs" 0 runs --registry "$reg"
ids=$("$tandem" runs --registry "$reg" --command batch --json | /usr/bin/python3 -c \
  'import json,sys; print(" ".join(json.loads(l)["id"] for l in sys.stdin if l.strip()))')
read -r run_a run_b _ <<<"$ids"
check "compare" 0 compare "$run_a" "$run_b" --registry "$reg"
check "report" 0 report "$run_a" "$run_b" --registry "$reg" --out "$work/report.html"

# serve under memcheck: a model and the pipeline (state in memory).
"${vg[@]}" --log-file="$work/serve.vg.log" "$tandem" serve "$pipeline" \
  --model "credit=$model" --listen 127.0.0.1:0 --threads 2 2>"$work/serve.log" &
server=$!
url=""
for _ in $(seq 600); do
  url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/serve.log")
  [ -n "$url" ] && break
  sleep 0.1
done
if [ -z "$url" ]; then
  failed+=("serve did not start")
  cat "$work/serve.log"
else
  body='{"inputs":[{"name":"input","shape":[1,13],"datatype":"FP32","data":[9,5,60,30,1,0,1,73,129,0,0,800,846]}]}'
  for path in /v2/models/credit/infer /v2/models/credit/infer; do
    curl -fsS -o /dev/null "$url$path" -d "$body" || failed+=("serve: infer")
  done
  curl -fsS -o /dev/null "$url/metrics" || failed+=("serve: metrics")
  curl -sS -o /dev/null "$url/v2/models/credit/infer" -d '{"inputs":' || true
  check "replay against the server" 0 replay "$pipeline" --in "$work/txns.live.csv" \
    --url "$url" --batch 16
  kill -HUP "$server"
  sleep 2
  curl -fsS -o /dev/null "$url/v2/models/credit/infer" -d "$body" || failed+=("serve: after SIGHUP")
  kill -TERM "$server"
  status=0
  wait "$server" || status=$?
  server=""
  if [ "$status" -ne 0 ] || [ -s "$work/serve.vg.log" ]; then
    failed+=("serve (exit $status)")
    echo "!! serve: exit $status"
    tail -n 60 "$work/serve.vg.log" "$work/serve.log"
  else
    echo "ok serve (infer, metrics, a bad request, replay, SIGHUP, SIGTERM)"
  fi
fi

if [ "${#failed[@]}" -gt 0 ]; then
  printf 'valgrind: FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "valgrind: all commands clean (no errors, no definite or indirect leaks)"
