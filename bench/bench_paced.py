#!/usr/bin/env python3
"""The live pipeline under a paced (open-loop) load, with durable state.

  bench_paced.py [--seconds 10] [--shares 0.5,0.25] [--connections 512]
                 [--capacity-connections 64] [--tandem PATH] [--json FILE]

1. Capacity: `tandem serve examples/fraud/pipeline.yaml --state DIR`
   (every answer waits for its write-ahead-log group commit) under wrk's
   closed loop, one new event per request (bench/pipeline_events.lua) at
   --capacity-connections connections: the requests/s it sustains.
2. Paced: for each share, a fresh server and state, and build/open-loop
   (bench/open_loop.c) sending share x capacity requests/s at fixed times
   whatever the answers, so a slow answer does not slow the load down
   (wrk's closed loop would) and each latency counts from when its request
   was due. The events are made here the same way as pipeline_events.lua
   makes them: unique ids, random cards among 5,000, event time moving
   forward 50 ms per event.

Target (issue 22, item 7): at half the capacity, p99 at most 2 ms. The
load generator and the server share the machine's CPUs. Every request
must be answered 2xx.

After each paced run the server's own histograms (/metrics) say where
the time went: each group commit's write and fdatasync
(tandem_pipeline_commit_seconds), each snapshot step
(tandem_pipeline_snapshot_step_seconds; a round starts 10 s after the
server does, so runs of --seconds 10 or more include one) and each
request from its headers to its answer
(tandem_pipeline_request_duration_seconds). Quantiles from a histogram
are its bucket bounds: "p99 <= 1ms" means the bucket that holds the 99th
percentile ends at 1 ms.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import urllib.request

import bench_pipeline as pipeline

ROOT = pipeline.ROOT
OPEN_LOOP = os.path.join(ROOT, "build", "open-loop")
PATH = "/v1/pipelines/fraud/events"
MCCS = ["grocery", "restaurant", "fuel", "online", "atm", "electronics",
        "travel", "gaming"]
CHANNELS = ["pos", "online", "atm"]
COUNTRIES = ["GB", "DE", "FR", "IT", "ES", "NL"]


def events_file(path, count, seed):
    rng = random.Random(seed)
    with open(path, "w") as fp:
        for i in range(count):
            fp.write('{"txn_id":"p%d","card_id":"c%06d","ts":%.3f,'
                     '"amount":%.2f,"merchant":"m%05d","mcc":"%s",'
                     '"country":"%s","channel":"%s"}\n' % (
                         i, rng.randint(1, 5000), 1700000000 + i / 20.0,
                         rng.random() * 200, rng.randint(1, 2000),
                         rng.choice(MCCS), rng.choice(COUNTRIES),
                         rng.choice(CHANNELS)))


def open_loop(url, bodies, rate, seconds, connections):
    host, port = url[len("http://"):].rsplit(":", 1)
    out = subprocess.run([OPEN_LOOP, "--host", host, "--port", port,
                          "--path", PATH, "--bodies", bodies,
                          "--rate", "%.3f" % rate, "--seconds", str(seconds),
                          "--connections", str(connections)],
                         capture_output=True, text=True)
    m = re.search(r"OPEN_LOOP_JSON (\{.*\})", out.stdout)
    if out.returncode != 0 or not m:
        sys.exit("bench_paced: open-loop failed:\n" + out.stdout + out.stderr)
    result = json.loads(m.group(1))
    if result["non_2xx"]:
        sys.exit("bench_paced: %d answers were not 2xx" % result["non_2xx"])
    return result


def histograms(url):
    """The pipeline's seconds histograms from /metrics: {family: [(le,
    cumulative count)], family + "_sum": seconds}."""
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'(tandem_pipeline_\w+_seconds)_bucket\{.*le="([^"]+)"\} (\S+)',
                     line)
        if m:
            out.setdefault(m.group(1), []).append(
                (float(m.group(2)), float(m.group(3))))
        m = re.match(r"(tandem_pipeline_\w+_seconds)_sum\{.*\} (\S+)", line)
        if m:
            out[m.group(1) + "_sum"] = float(m.group(2))
    return out


def bucket_quantile(buckets, q):
    """The upper bound of the bucket holding quantile q (None: empty)."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    for le, count in buckets:
        if count >= q * total:
            return le
    return buckets[-1][0]


def ms(seconds):
    return "-" if seconds is None else "%gms" % (seconds * 1e3)


def server_line(h):
    commit = h.get("tandem_pipeline_commit_seconds", [])
    snap = h.get("tandem_pipeline_snapshot_step_seconds", [])
    req = h.get("tandem_pipeline_request_duration_seconds", [])
    return ("server: %d commits (p50 <= %s, p99 <= %s, max <= %s), "
            "%d snapshot steps (%.0f ms in all, max <= %s), "
            "requests p99 <= %s" % (
                commit[-1][1] if commit else 0,
                ms(bucket_quantile(commit, 0.5)), ms(bucket_quantile(commit, 0.99)),
                ms(bucket_quantile(commit, 1.0)),
                snap[-1][1] if snap else 0,
                1e3 * h.get("tandem_pipeline_snapshot_step_seconds_sum", 0),
                ms(bucket_quantile(snap, 1.0)), ms(bucket_quantile(req, 0.99))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--shares", default="0.5,0.25")
    ap.add_argument("--connections", type=int, default=512)
    ap.add_argument("--capacity-connections", type=int, default=64)
    ap.add_argument("--tandem", default=pipeline.TANDEM)
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "bench",
                                                   "paced.json"))
    args = ap.parse_args()
    pipeline.TANDEM = os.path.abspath(args.tandem)
    if not os.access(OPEN_LOOP, os.X_OK):
        sys.exit("bench_paced: build/open-loop not built (make)")
    results = {"machine": "%s, %d CPUs" % (pipeline.cpu_name(), os.cpu_count()),
               "seconds": args.seconds, "paced": []}
    with tempfile.TemporaryDirectory() as tmp:
        # The pipeline's lookup table store: made by one small batch run.
        history = os.path.join(tmp, "history.csv")
        subprocess.run([sys.executable, os.path.join(ROOT, "examples", "fraud",
                                                     "generate.py"),
                        "--cards", "50", "--out", history], check=True,
                       stdout=subprocess.DEVNULL)
        pipeline.batch(history, tmp, 1)

        proc, url = pipeline.serve(tmp)
        try:
            cap = pipeline.wrk(url, 1, args.seconds, args.capacity_connections)
        finally:
            proc.terminate()
            proc.wait()
        capacity = cap["requests_per_s"]
        results["capacity"] = cap
        print("%s\ncapacity: wrk -t1 -c%d closed loop, 1 event/request, "
              "durable state: %.0f requests/s (p99 %.2f ms)" % (
                  results["machine"], args.capacity_connections, capacity,
                  cap["latency_us"]["p99"] / 1000))
        print("\npaced (open loop, build/open-loop, %d connections, %d s):" % (
            args.connections, args.seconds))
        print("  %6s %9s %9s %8s %8s %8s %8s %8s %6s" % (
            "share", "target/s", "answered/s", "p50", "p90", "p99", "p99.9",
            "max", "met"))
        for share in [float(x) for x in args.shares.split(",") if x]:
            rate = share * capacity
            bodies = os.path.join(tmp, "events-%g.jsonl" % share)
            events_file(bodies, int(rate * args.seconds) + 1, 7)
            proc, url = pipeline.serve(tmp)
            try:
                r = open_loop(url, bodies, rate, args.seconds, args.connections)
                r["server"] = histograms(url)
            finally:
                proc.terminate()
                proc.wait()
            lat = r["latency_us"]
            met = share <= 0.5 and lat["p99"] <= 2000
            print("  %5.0f%% %9.0f %9.0f %6.2fms %6.2fms %6.2fms %6.2fms "
                  "%6.2fms %6s" % (100 * share, rate, r["achieved_per_s"],
                                   lat["p50"] / 1e3, lat["p90"] / 1e3,
                                   lat["p99"] / 1e3, lat["p99_9"] / 1e3,
                                   lat["max"] / 1e3,
                                   ("yes" if met else "no") if share == 0.5 else "-"))
            if r["no_free_connection"]:
                print("         %d requests found all %d connections busy when "
                      "due (their wait is in the latency)" % (
                          r["no_free_connection"], args.connections))
            print("         " + server_line(r["server"]))
            r["share"] = share
            results["paced"].append(r)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fp:
        json.dump(results, fp, indent=2)
    print("\nwrote " + os.path.relpath(args.json, ROOT))


if __name__ == "__main__":
    main()
