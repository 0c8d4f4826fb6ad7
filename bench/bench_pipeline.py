#!/usr/bin/env python3
"""The fraud example's pipeline (examples/fraud: 19 features, 12 of them
window aggregations, a 200-tree XGBoost model) in batch and live.

  bench_pipeline.py [--cards 17000] [--seconds 10] [--json FILE]
                    [--batch-only] [--tandem PATH]

Batch: events/s of `tandem batch` over generate.py's transactions
(about 1M rows with the default 17,000 cards over 30 days) on 1 and 2
threads, CSV in and out, the best of two runs each; the outputs of every
thread count must be byte-identical.

--batch-only skips the live part; --tandem names the binary (default
build/tandem).

The card_profile table the pipeline looks up is empty here (every lookup
reads its default), so both measure the same work as a pipeline without
it plus the lookup.

Live: `tandem serve examples/fraud/pipeline.yaml --state DIR` (durable:
every answer waits for its LMDB commit) under wrk with
bench/pipeline_events.lua (new events for random cards, unique ids, event
time moving forward): one event per request at 16, 32 and 64 connections,
and 32 events per request at 32, wrk -t1; requests/s, events/s, p50/p99. wrk and the server share the
machine's CPUs. Every request must succeed.
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
TANDEM = os.path.join(ROOT, "build", "tandem")
PIPELINE = os.path.join(ROOT, "examples", "fraud", "pipeline.yaml")
LUA = os.path.join(ROOT, "bench", "pipeline_events.lua")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as fp:
            for line in fp:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def batch(events, tmp, threads):
    out = os.path.join(tmp, "out%d.csv" % threads)
    best = None
    for _ in range(2):
        start = time.monotonic()
        subprocess.run([TANDEM, "batch", PIPELINE, "--in", events, "--out", out,
                        "--threads", str(threads), "--no-registry",
                        "--store", os.path.join(tmp, "tables")], check=True,
                       stderr=subprocess.DEVNULL)
        seconds = time.monotonic() - start
        best = seconds if best is None else min(best, seconds)
    return best, out


def serve(tmp):
    state = os.path.join(tmp, "state")
    shutil.rmtree(state, ignore_errors=True)
    log = open(os.path.join(tmp, "serve.log"), "w+")
    proc = subprocess.Popen([TANDEM, "serve", PIPELINE, "--state", state,
                             "--store", os.path.join(tmp, "tables"),
                             "--listen", "127.0.0.1:0"], stderr=log)
    for _ in range(200):
        log.seek(0)
        m = re.search(r"listening on http://(\S+)", log.read())
        if m:
            return proc, "http://" + m.group(1)
        time.sleep(0.05)
    proc.kill()
    sys.exit("bench_pipeline: the server did not start")


def wrk(url, batch_size, seconds, connections):
    env = dict(os.environ, WRK_BATCH=str(batch_size), WRK_CARDS="5000")
    out = subprocess.run(["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds,
                          "--latency", "-s", LUA, url], env=env,
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"WRK_JSON (\{.*\})", out)
    if not m:
        sys.exit("bench_pipeline: no summary from wrk:\n" + out)
    result = json.loads(m.group(1))
    errors = sum(v for k, v in result.items() if k.startswith("errors_"))
    if errors:
        sys.exit("bench_pipeline: %d failed requests:\n%s" % (errors, out))
    return result


def main():
    global TANDEM
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=17000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--json", default=os.path.join(ROOT, "build", "bench",
                                                        "pipeline.json"))
    parser.add_argument("--batch-only", action="store_true",
                        help="measure tandem batch only, not the live server")
    parser.add_argument("--tandem", default=TANDEM,
                        help="the tandem binary (default build/tandem)")
    args = parser.parse_args()
    TANDEM = os.path.abspath(args.tandem)
    results = {"machine": "%s, %d CPUs" % (cpu_name(), os.cpu_count())}
    with tempfile.TemporaryDirectory() as tmp:
        events = os.path.join(tmp, "txns.csv")
        subprocess.run([sys.executable,
                        os.path.join(ROOT, "examples", "fraud", "generate.py"),
                        "--cards", str(args.cards), "--out", events], check=True)
        with open(events) as fp:
            rows = sum(1 for _ in fp) - 1
        print("%s; %d events (%d cards, 30 days)" % (results["machine"], rows,
                                                     args.cards))
        print("\nbatch: tandem batch examples/fraud/pipeline.yaml, CSV in and out")
        outputs = []
        for threads in (1, 2):
            seconds, out = batch(events, tmp, threads)
            outputs.append(out)
            results["batch_%d_threads_events_per_s" % threads] = rows / seconds
            print("  %d thread%s: %8.3f s  %10.0f events/s" %
                  (threads, "" if threads == 1 else "s", seconds, rows / seconds))
        same = subprocess.run(["cmp", "-s"] + outputs).returncode == 0
        print("  outputs of 1 and 2 threads identical: %s" % same)
        if not same:
            sys.exit("bench_pipeline: outputs differ between thread counts")

        if args.batch_only:
            write_json(args.json, results)
            return
        print("\nlive: tandem serve --state (durable), wrk -t1 -d%ds" %
              args.seconds)
        print("  %-16s %4s %10s %10s %9s %9s" % ("events/request", "C",
                                                "requests/s", "events/s",
                                                "p50", "p99"))
        for size, connections in ((1, 16), (1, 32), (1, 64), (32, 32)):
            proc, url = serve(tmp)
            try:
                r = wrk(url, size, args.seconds, connections)
            finally:
                proc.terminate()
                proc.wait()
            lat = r["latency_us"]
            results["live_%d_c%d" % (size, connections)] = r
            print("  %-16d %4d %10.0f %10.0f %7.2fms %7.2fms" %
                  (size, connections, r["requests_per_s"],
                   r["requests_per_s"] * size, lat["p50"] / 1000,
                   lat["p99"] / 1000))
    write_json(args.json, results)


def write_json(path, results):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fp:
        json.dump(results, fp, indent=2)
    print("\nwrote " + os.path.relpath(path))


if __name__ == "__main__":
    main()
