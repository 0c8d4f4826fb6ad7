#!/usr/bin/env bash
# example.sh - the main job on the bundled example (examples/fraud):
# installs what is missing, builds tandem, generates a month of card
# transactions, runs the fraud pipeline over the first 24 days in batch,
# then starts the live server with durable state and sends it the last 6
# days event by event through `tandem replay`, which checks that every
# live answer equals the batch answer for the same event.
#   scripts/example.sh [OUT_DIR]      (default build/fraud)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --example
make -s -j"$(nproc 2>/dev/null || echo 2)" build/tandem
out=${1:-build/fraud}
mkdir -p "$out"
pipeline=examples/fraud/pipeline.yaml

echo "== 1. a month of card transactions (examples/fraud/generate.py)"
/usr/bin/python3 examples/fraud/generate.py --split 0.8 --out "$out/txns" --stats

echo
echo "== 2. batch: the pipeline over the history, materializing card_profile"
rm -rf "$out/tables"
build/tandem batch "$pipeline" --in "$out/txns.history.csv" \
  --out "$out/history.scores.csv" --materialize card_profile --store "$out/tables"
head -n 4 "$out/history.scores.csv"
echo "decisions: $(cut -d, -f6 "$out/history.scores.csv" | tail -n +2 | sort | uniq -c | tr -s ' ' | paste -sd, -)"

echo
echo "== 3. real time: tandem serve $pipeline --state $out/state --store $out/tables"
rm -rf "$out/state"
log="$out/serve.log"
build/tandem serve "$pipeline" --state "$out/state" --store "$out/tables" \
  --listen 127.0.0.1:0 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$log")
echo "listening on $url"
echo "== 4. the live days through the server, compared with batch (tandem replay)"
build/tandem replay "$pipeline" --in "$out/txns.live.csv" --url "$url" \
  --store "$out/tables" 2>&1 | tail -n 5 || {
  echo "replay found differences" >&2
  exit 1
}
echo
echo "== 5. a new event for a card the server now knows, with its features:"
curl -s -X POST "$url/v1/pipelines/fraud/events?explain=features" \
  -H 'Content-Type: application/json' \
  -d '{"txn_id":"demo-1","card_id":"c000042","ts":"2026-03-31T09:30:00Z","amount":1250,"merchant":"m00999","mcc":"electronics","country":"NG","channel":"online"}'
echo
kill -TERM $server
wait $server 2>/dev/null || true
trap - EXIT
echo
echo "done: batch results in $out/history.scores.csv, live state in $out/state"
