#!/usr/bin/env bash
# scripts/valgrind.sh [TANDEM] - runs the CLI's main commands under
# valgrind's memcheck on small inputs and fails on any memory error or any
# definitely or indirectly lost block (still-reachable memory, such as
# what libcrypto keeps for the process's life, is not counted). TANDEM is
# the binary to check (default build/tandem; a normal, non-sanitizer
# build). Commands: inspect, score (CSV and JSON Lines), batch (plain,
# --features-only, --explain, --save-state), serve (start, infer and
# event requests, a replay, SIGHUP, SIGTERM), serve --state (warm from
# the saved state, events, a restart on the same state), serve over TLS,
# replay, eval, runs, compare, report; the fraud example's table store
# (batch --materialize --store twice, serve --store --state with its
# lookup, a replay against it, a new table version picked up live);
# stream (on librdkafka's mock cluster, with its changelog and LMDB
# state, until every message is answered, then SIGTERM).
# Takes three to five minutes on two cores.
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
mock=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  if [ -n "$mock" ]; then kill "$mock" 2>/dev/null || true; fi
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
# LMDB reserves its map as address space up front: 64 GiB for a state
# directory (--save-state, serve --state), 256 GiB for a table store
# (--materialize, --store), more than valgrind 3.19 can map (mdb_env_open
# fails with EINVAL). TANDEM_LMDB_MAP_SIZE (tdm__lmdb_map_size in
# src/store/store.c, read by both) makes each 1 GiB here, far more than
# these runs write.
export TANDEM_LMDB_MAP_SIZE="${TANDEM_LMDB_MAP_SIZE:-1G}"
# The pipeline of the pipeline tests (every kind of feature), with a
# model trained at once, and two event files.
pipeline="$work/pipeline.yaml"
PYTHONPATH=tests/integration /usr/bin/python3 - "$work" <<'PY'
import sys
from pipeline_util import (FRAUD_COLUMNS, fraud_events, fraud_pipeline,
                           write_csv, write_jsonl)
work = sys.argv[1]
fraud_pipeline(work)
events = fraud_events(7, 1500, entities=20, invalid=0.02)
write_csv(work + "/txns.history.csv", FRAUD_COLUMNS + ["label"],
          [dict(e, label=str(i % 3 == 0 and 1 or 0)) for i, e in enumerate(events[:1200])])
write_csv(work + "/txns.live.csv", FRAUD_COLUMNS, events[1200:])
write_csv(work + "/txns.all.csv", FRAUD_COLUMNS, events)
# 300 events as Kafka messages for `tandem stream`: key, a tab, the event.
write_jsonl(work + "/txns.jsonl", FRAUD_COLUMNS, events[:300], numbers=("amount",))
with open(work + "/txns.jsonl") as fp, open(work + "/txns.keyed", "w") as out:
    for e, line in zip(events, fp):
        out.write((e["card"] or "") + "\t" + line)
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
check "batch --save-state (LMDB)" 0 batch "$pipeline" --in "$work/txns.history.csv" \
  --out "$work/h3.csv" --save-state "$work/state" --no-registry
check "eval" 0 eval --pred "$work/s.csv" --labels "$work/labels.csv"
check "runs" 0 runs --registry "$reg"
ids=$("$tandem" runs --registry "$reg" --command batch --json | /usr/bin/python3 -c \
  'import json,sys; print(" ".join(json.loads(l)["id"] for l in sys.stdin if l.strip()))')
read -r run_a run_b _ <<<"$ids"
check "compare" 0 compare "$run_a" "$run_b" --registry "$reg"
check "report" 0 report "$run_a" "$run_b" --registry "$reg" --log-scale \
  --out "$work/report.html"

# start_serve NAME ARGS...: `tandem serve ARGS` under memcheck on a free
# port; sets server (the pid), url and serve_log, or fails NAME.
start_serve() {
  local name="$1" scheme
  shift
  count=$((count + 1))
  serve_log="$work/$count"
  "${vg[@]}" --log-file="$serve_log.vg.log" "$tandem" serve "$@" \
    --listen 127.0.0.1:0 --threads 2 2>"$serve_log.log" &
  server=$!
  url=""
  for _ in $(seq 600); do
    url=$(sed -n 's/.*listening on \(https*:[^ ]*\).*/\1/p' "$serve_log.log")
    [ -n "$url" ] && break
    sleep 0.1
  done
  if [ -z "$url" ]; then
    failed+=("$name: did not start")
    echo "!! $name: did not start"
    cat "$serve_log.log" "$serve_log.vg.log"
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
    return 1
  fi
}
# stop_serve NAME: SIGTERM; fails NAME on a nonzero exit or memcheck's
# report.
stop_serve() {
  local name="$1" status=0
  kill -TERM "$server"
  wait "$server" || status=$?
  server=""
  if [ "$status" -ne 0 ] || [ -s "$serve_log.vg.log" ]; then
    failed+=("$name (exit $status)")
    echo "!! $name: exit $status"
    tail -n 60 "$serve_log.vg.log" "$serve_log.log"
  else
    echo "ok $name"
  fi
}

# serve: a model and the pipeline (state in memory), with an access log
# (its writer thread, and SIGHUP's reopen).
body='{"inputs":[{"name":"input","shape":[1,13],"datatype":"FP32","data":[9,5,60,30,1,0,1,73,129,0,0,800,846]}]}'
if start_serve serve "$pipeline" --model "credit=$model" \
    --access-log "$work/access.log"; then
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
  stop_serve "serve (infer, metrics, a bad request, replay, SIGHUP, SIGTERM)"
fi

# serve --state: warm from batch --save-state (the first 1200 events),
# the rest replayed and checked, two more events acknowledged once on
# disk; then a restart on the same state answers those repeated event ids
# with their first answers (marked "duplicate":true).
events='[{"txn":"v1","card":"c01","ts":"2023-11-20T10:00:00Z","amount":"12.5","merchant":"m1","mcc":"fuel"},{"txn":"v2","card":"c02","ts":"2023-11-20T10:00:01Z","amount":"99","merchant":"m2","mcc":"online"}]'
if start_serve "serve --state" "$pipeline" --state "$work/state"; then
  check "replay against serve --state (--skip the saved history)" 0 replay \
    "$pipeline" --in "$work/txns.all.csv" --skip 1200 --url "$url" --batch 16
  curl -fsS -o "$work/events1.json" "$url/v1/pipelines/fraud/events" -d "$events" \
    || failed+=("serve --state: events")
  stop_serve "serve --state (warm start, events, SIGTERM)"
fi
if start_serve "serve --state, restarted" "$pipeline" --state "$work/state"; then
  curl -fsS -o "$work/events2.json" "$url/v1/pipelines/fraud/events" -d "$events" \
    || failed+=("serve --state, restarted: events")
  # The same answers, marked "duplicate":true.
  if ! grep -q '"duplicate":true' "$work/events2.json" \
      || [ "$(sed 's/,"duplicate":true//g' "$work/events2.json")" \
           != "$(cat "$work/events1.json")" ]; then
    failed+=("serve --state, restarted: a repeated event got a new answer")
    echo "!! serve --state, restarted: $(cat "$work/events1.json") then $(cat "$work/events2.json")"
  fi
  stop_serve "serve --state, restarted (the same events again, SIGTERM)"
fi

# The fraud example (examples/fraud, as scripts/example.sh runs it, on 40
# cards over 4 days): batch --materialize card_profile into a table store
# (LMDB), then serve --store --state, whose decision rules look the card
# up in that table; the live part replayed and checked against batch
# (replay reads the same table); a second --materialize while it serves
# writes version 2, which the server picks up; an event for a known card
# after it.
fraud=examples/fraud/pipeline.yaml
/usr/bin/python3 examples/fraud/generate.py --cards 40 --days 4 --split 0.75 \
  --out "$work/fraud" >/dev/null
check "batch --materialize card_profile --store (the fraud example)" 0 batch \
  "$fraud" --in "$work/fraud.history.csv" --out "$work/fraud.h.csv" \
  --materialize card_profile --store "$work/tables" --no-registry
if start_serve "serve --store --state (the fraud example)" "$fraud" \
    --store "$work/tables" --state "$work/fraud-state"; then
  check "replay against serve --store (lookups)" 0 replay "$fraud" \
    --in "$work/fraud.live.csv" --url "$url" --store "$work/tables" --batch 16
  check "batch --materialize, a second version while serving" 0 batch "$fraud" \
    --in "$work/fraud.history.csv" --out "$work/fraud.h2.csv" \
    --materialize card_profile --store "$work/tables" --no-registry
  for _ in $(seq 100); do
    curl -fsS "$url/metrics" 2>/dev/null \
      | grep -q 'tandem_table_version{pipeline="fraud",table="card_profile"} 2' \
      && break
    sleep 0.2
  done
  curl -fsS "$url/metrics" | grep -q \
    'tandem_table_version{pipeline="fraud",table="card_profile"} 2' \
    || failed+=("serve --store: table version 2 not picked up")
  curl -fsS -o "$work/fraud-event.json" "$url/v1/pipelines/fraud/events?explain=features" \
    -d '{"txn_id":"vg-1","card_id":"c000007","ts":"2026-03-05T12:00:00Z","amount":1250,"merchant":"m00999","mcc":"electronics","country":"NG","channel":"online"}' \
    || failed+=("serve --store: an event")
  grep -q '"profile_score"' "$work/fraud-event.json" \
    || failed+=("serve --store: no profile_score (lookup) in $(cat "$work/fraud-event.json")")
  stop_serve "serve --store --state (lookups, replay, a new table version, SIGTERM)"
fi

# serve over TLS (GnuTLS), with a self-signed certificate.
if openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" \
    -out "$work/cert.pem" 2>/dev/null; then
  if start_serve "serve --tls-cert" --model "credit=$model" \
      --tls-cert "$work/cert.pem" --tls-key "$work/key.pem"; then
    for _ in 1 2; do
      curl -fsS --cacert "$work/cert.pem" -o /dev/null "$url/v2/models/credit/infer" \
        -d "$body" || failed+=("serve --tls-cert: infer")
    done
    curl -sS -o /dev/null "${url/https/http}/v2/health/ready" 2>/dev/null || true
    stop_serve "serve --tls-cert (HTTPS infers, plain HTTP refused, SIGTERM)"
  fi
  check "serve --tls-cert, a mismatched key (exit 2)" 2 serve --model "$model" \
    --tls-cert "$work/cert.pem" --tls-key "$work/cert.pem"
else
  failed+=("openssl: no certificate for the TLS run")
fi

# stream: librdkafka's mock cluster (build/mock-kafka), 300 events
# produced with kcat; tandem stream with durable state and its changelog
# until every message has its output or dead letter, then SIGTERM.
mock_bin="$(dirname "$tandem")/mock-kafka"
[ -x "$mock_bin" ] || make -s "$mock_bin"
"$mock_bin" -t vin:2 -t vout:2 -t vdlq:1 -t tandem-fraud-vin-changelog:2 \
  </dev/null >"$work/mock.out" 2>"$work/mock.err" &
mock=$!
brokers=""
for _ in $(seq 1 100); do
  brokers=$(head -n 1 "$work/mock.out" 2>/dev/null || true)
  [ -n "$brokers" ] && break
  sleep 0.1
done
count_topic() {
  kcat -C -b "$brokers" -t "$1" -e -q -f 'x\n' 2>/dev/null | wc -l
}
if [ -n "$brokers" ] && kcat -P -b "$brokers" -t vin -K '\t' \
    <"$work/txns.keyed" 2>"$work/kcat.err"; then
  count=$((count + 1))
  stream_log="$work/$count"
  "${vg[@]}" --log-file="$stream_log.vg.log" "$tandem" stream "$pipeline" \
    --brokers "$brokers" --input vin --output vout --dead-letter vdlq \
    --state "$work/stream-state" --commit-interval-ms 200 \
    2>"$stream_log.log" &
  streamer=$!
  done_msgs=0
  for _ in $(seq 1 240); do
    done_msgs=$(( $(count_topic vout) + $(count_topic vdlq) ))
    [ "$done_msgs" -ge 300 ] && break
    sleep 0.5
  done
  sleep 1 # a commit after the last output
  kill -TERM "$streamer" 2>/dev/null || true
  status=0
  wait "$streamer" || status=$?
  if [ "$done_msgs" -lt 300 ] || [ "$status" -ne 0 ] || [ -s "$stream_log.vg.log" ]; then
    failed+=("stream (exit $status, $done_msgs of 300 messages answered)")
    echo "!! stream: exit $status, $done_msgs of 300 messages answered"
    tail -n 60 "$stream_log.vg.log" "$stream_log.log"
  else
    echo "ok stream (mock cluster: 300 messages, changelog, LMDB state, SIGTERM)"
  fi
else
  failed+=("stream: no mock cluster or kcat failed: $(cat "$work/kcat.err" 2>/dev/null)")
fi
kill "$mock" 2>/dev/null || true
wait "$mock" 2>/dev/null || true
mock=""

if [ "${#failed[@]}" -gt 0 ]; then
  printf 'valgrind: FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "valgrind: all commands clean (no errors, no definite or indirect leaks)"
