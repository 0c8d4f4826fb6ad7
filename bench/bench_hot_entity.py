#!/usr/bin/env python3
"""A hot entity against the same events spread over many entities.

  bench_hot_entity.py [--events 40000] [--entities 4000] [--json FILE]
                      [--tandem PATH] [--batch-only]

A pipeline of nine windows (10 minutes to 7 days: counts, a sum, a mean,
min, max, a stddev, a last value and a distinct count of merchants) with
event ids (remembered for state.dedupe, 24 h) and a small logistic model
reads the same EVENTS events (7 days, in time order) twice: all of one
card ("hot"), then dealt round-robin over ENTITIES cards ("spread": 10
events each by default). Issue 22 asks that the hot entity run at least
0.5x the spread rate.

Batch: events/s of `tandem batch` (CSV in and out, 1 thread), the best
of three runs of each. Live: `tandem serve` (state in memory) receives
the events as JSON arrays of 100 per request over one keep-alive
connection, in order, best of three; every answer must be 200.

Prints a table and the ratios (hot / spread); --json saves them.
"""
import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
TANDEM = os.path.join(ROOT, "build", "tandem")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WEEK_MS = 7 * 86_400_000

PIPELINE = """name: hot
entity: card_id
time: ts
id: txn_id
fields: {txn_id: string, card_id: string, ts: time, amount: number, merchant: string}
features:
  - {name: n_10m, agg: count, window: 10m}
  - {name: sum_1h, agg: sum(amount), window: 1h}
  - {name: mean_24h, agg: mean(amount), window: 24h}
  - {name: min_24h, agg: min(amount), window: 24h}
  - {name: max_24h, agg: max(amount), window: 24h}
  - {name: merchants_24h, agg: distinct(merchant), window: 24h}
  - {name: std_7d, agg: stddev(amount), window: 7d}
  - {name: n_7d, agg: count, window: 7d}
  - {name: last_7d, agg: last(amount), window: 7d}
model: {path: model.json}
state: {lateness: 10m, dedupe: 24h}
"""

MODEL = {
    "format": "tandem-linear", "link": "logit", "intercept": -3.0,
    "coefficients": {"n_10m": 0.2, "sum_1h": 0.001, "mean_24h": 0.002,
                     "min_24h": -0.001, "max_24h": 0.0005,
                     "merchants_24h": 0.1, "std_7d": 0.003, "n_7d": 0.0001,
                     "last_7d": 0.001},
    "default_missing": 0.0,
}


def events(n, entities):
    """n events over a week in time order; card i % entities."""
    rows = []
    state = 12345
    for i in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        t = START_MS + i * WEEK_MS // n
        amount = (state >> 33) % 100000 / 100.0
        merchant = "m%d" % ((state >> 20) % 300)
        rows.append(("t%d" % i, "c%d" % (i % entities), t / 1000.0, amount,
                     merchant))
    return rows


def write_events(path, rows):
    with open(path, "w") as f:
        f.write("txn_id,card_id,ts,amount,merchant\n")
        for r in rows:
            f.write("%s,%s,%.3f,%.2f,%s\n" % r)


def batch(tandem, pipeline, path, out, now):
    best = None
    for _ in range(3):
        start = time.monotonic()
        subprocess.run([tandem, "batch", pipeline, "--in", path, "--out", out,
                        "--now", now, "--threads", "1"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        took = time.monotonic() - start
        best = took if best is None else min(best, took)
    return best


def live(tandem, pipeline, rows):
    """Seconds to send ROWS through a fresh server, 100 per request."""
    proc = subprocess.Popen([tandem, "serve", pipeline, "--listen",
                             "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        address = None
        for line in proc.stderr:
            m = re.search(r"listening on http://(\S+)", line)
            if m:
                address = m.group(1)
                break
        if address is None:
            raise SystemExit("tandem serve did not start")
        host, port = address.rsplit(":", 1)
        bodies = []
        for k in range(0, len(rows), 100):
            bodies.append(json.dumps([
                {"txn_id": r[0], "card_id": r[1], "ts": r[2], "amount": r[3],
                 "merchant": r[4]} for r in rows[k:k + 100]]).encode())
        conn = http.client.HTTPConnection(host, int(port))
        start = time.monotonic()
        for body in bodies:
            conn.request("POST", "/v1/pipelines/hot/events", body,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            text = resp.read()
            if resp.status != 200:
                raise SystemExit("live: HTTP %d: %s" % (resp.status, text[:300]))
        took = time.monotonic() - start
        conn.close()
        return took
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=40000)
    ap.add_argument("--entities", type=int, default=4000)
    ap.add_argument("--json")
    ap.add_argument("--tandem", default=TANDEM)
    ap.add_argument("--batch-only", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-hot-")
    pipeline = os.path.join(tmp, "pipeline.yaml")
    with open(pipeline, "w") as f:
        f.write(PIPELINE)
    with open(os.path.join(tmp, "model.json"), "w") as f:
        json.dump(MODEL, f)
    now = "2026-01-09T00:00:00Z"
    results = {}
    cases = [("hot", 1), ("spread", args.entities)]
    for name, entities in cases:
        rows = events(args.events, entities)
        path = os.path.join(tmp, name + ".csv")
        write_events(path, rows)
        secs = batch(args.tandem, pipeline, path,
                     os.path.join(tmp, name + ".out.csv"), now)
        results["batch_" + name] = args.events / secs
        if not args.batch_only:
            secs = min(live(args.tandem, pipeline, rows) for _ in range(3))
            results["live_" + name] = args.events / secs
    print("%-8s %14s %14s %7s" % ("runner", "hot events/s", "spread events/s",
                                  "ratio"))
    for runner in ["batch"] + ([] if args.batch_only else ["live"]):
        hot, spread = results[runner + "_hot"], results[runner + "_spread"]
        results[runner + "_ratio"] = hot / spread
        print("%-8s %14.0f %14.0f %7.2f" % (runner, hot, spread, hot / spread))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
