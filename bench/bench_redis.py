#!/usr/bin/python3
"""Live pipeline throughput and p99 with the lookup table in Redis against
the same run with the table in LMDB (issue 23; docs/hybrid.md).

The fraud example's pipeline (its card_profile lookup; the deadline
fallback left out so every answer is computed, state in memory so the
table is what differs) is served twice: once with `--store DIR` (LMDB) and
once with `--store redis://...` (a redis-server started here on a loopback
port). Both stores hold the same version, materialized from the same
generated history with --as-of before the load's event times, so every
event reads the table. wrk with bench/pipeline_events.lua (one new event
per request, random cards among 5000) runs against the two servers in
alternating rounds, so machine load hits both alike; the median round of
each is reported.

    bench/bench_redis.py [--rounds 3] [--seconds 5] [--out bench-redis.json]
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAUD = os.path.join(ROOT, "examples", "fraud")
TANDEM = os.environ.get("TANDEM", os.path.join(ROOT, "build", "tandem"))
LUA = os.path.join(ROOT, "bench", "pipeline_events.lua")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(pipeline, store):
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    proc = subprocess.Popen([TANDEM, "serve", pipeline, "--store", store,
                             "--listen", "127.0.0.1:0"],
                            stdout=subprocess.DEVNULL, stderr=log)
    while proc.poll() is None:
        log.seek(0)
        m = re.search(r"listening on (http://\S+)", log.read())
        if m:
            return proc, m.group(1)
        time.sleep(0.02)
    log.seek(0)
    sys.exit("tandem serve did not start: " + log.read())


def wrk(url, seconds, connections):
    env = dict(os.environ, WRK_BATCH="1", WRK_CARDS="5000")
    out = subprocess.run(["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds,
                          "--latency", "-s", LUA, url], env=env,
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"WRK_JSON (\{.*\})", out)
    if not m:
        sys.exit("no summary from wrk:\n" + out)
    result = json.loads(m.group(1))
    if sum(v for k, v in result.items() if k.startswith("errors_")):
        sys.exit("failed requests:\n" + out)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--out", default="bench-redis.json")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tandem-bench-redis-")
    subprocess.run([sys.executable, os.path.join(FRAUD, "generate.py"), "--cards",
                    "5000", "--days", "10", "--out",
                    os.path.join(work, "history.csv")], check=True)
    text = open(os.path.join(FRAUD, "pipeline.yaml")).read()
    text = text.replace("{path: model.json}",
                        "{path: " + os.path.join(FRAUD, "model.json") + "}")
    text = re.sub(r"(?m)^realtime:.*\n", "", text)
    pipeline = os.path.join(work, "pipeline.yaml")
    with open(pipeline, "w") as f:
        f.write(text)
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    servers = []
    try:
        stores = {"lmdb": os.path.join(work, "tables"),
                  "redis": "redis://127.0.0.1:%d/0" % port}
        for name, store in stores.items():
            for _ in range(100):
                r = subprocess.run([TANDEM, "batch", pipeline, "--in",
                                    os.path.join(work, "history.csv"), "--out",
                                    os.path.join(work, name + ".csv"), "--store",
                                    store, "--materialize", "card_profile",
                                    "--as-of", "2023-01-01T00:00:00Z"],
                                   capture_output=True, text=True)
                if r.returncode == 0 or "cannot connect" not in r.stderr:
                    break
                time.sleep(0.1)  # redis-server still starting
            if r.returncode != 0:
                sys.exit(r.stderr)
        for name, store in stores.items():
            servers.append((name,) + start(pipeline, store))
        rounds = {name: [] for name in stores}
        for _ in range(args.rounds):
            for name, proc, url in servers:
                rounds[name].append(wrk(url, args.seconds, args.connections))
    finally:
        for _, proc, _ in servers:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        redis.send_signal(signal.SIGTERM)
        redis.wait()
    summary = {}
    print("| store | events/s (median of %d rounds) | p50 us | p99 us | "
          "every round, events/s |" % args.rounds)
    print("| --- | --- | --- | --- | --- |")
    for name, results in rounds.items():
        # One event per request: requests/s is events/s.
        ordered = sorted(results, key=lambda r: r["requests_per_s"])
        mid = ordered[len(ordered) // 2]
        summary[name] = {"events_per_s": mid["requests_per_s"],
                         "p50_us": mid["latency_us"]["p50"],
                         "p99_us": mid["latency_us"]["p99"], "rounds": results}
        print("| %s | %.0f | %d | %d | %s |" % (
            name, mid["requests_per_s"], mid["latency_us"]["p50"],
            mid["latency_us"]["p99"],
            ", ".join("%.0f" % r["requests_per_s"] for r in results)))
    ratio = summary["redis"]["events_per_s"] / summary["lmdb"]["events_per_s"]
    print("redis / lmdb events/s: %.3f (target >= 0.90)" % ratio)
    summary["ratio"] = ratio
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
