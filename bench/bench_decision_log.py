#!/usr/bin/python3
"""Live pipeline throughput and p99 with the decision log on and off, and
with a shadow model and without (issue 25).

The fraud example's pipeline (examples/fraud) runs under `tandem serve
--state DIR` (durable: every answer waits for its group commit) in these
variants: as it is (**off**); with `--decision-log DIR` (**log**); with
a shadow model, the example's own model file again under `shadow:`
(**shadow**); and with both (**shadow+log**). wrk (bench/pipeline_events.lua,
new events for random cards, one per request) drives each variant for
--seconds, a fresh server and state each time, the variants taking turns
round after round so that load on the shared machine hits them alike.
Prints, per variant, the best and median events/s and the median p99 over
the rounds, and the ratios to **off**; writes the numbers as JSON.

Also prints the server's CPU time (user + sys, from /proc/PID/stat over
the run, startup included) per event, which a busy machine disturbs less
than the rate.

    bench/bench_decision_log.py [--rounds 3] [--seconds 5] [--connections 32]
                                [--variants off,log] [--log-bytes 4M]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_pipeline import wrk  # wrk -t1 with bench/pipeline_events.lua

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAUD = os.path.join(ROOT, "examples", "fraud")
TANDEM = os.environ.get("TANDEM", os.path.join(ROOT, "build", "tandem"))


def pipelines(work):
    """The example's pipeline without its deadline fallback (every answer
    computed), and the same with a shadow model."""
    text = open(os.path.join(FRAUD, "pipeline.yaml")).read()
    model = os.path.join(FRAUD, "model.json")
    text = text.replace("{path: model.json}", "{path: " + model + "}")
    text = re.sub(r"(?m)^realtime:.*\n", "", text)
    plain = os.path.join(work, "plain.yaml")
    open(plain, "w").write(text)
    shadow = os.path.join(work, "shadow.yaml")
    open(shadow, "w").write(text.replace(
        "model: {path: " + model + "}",
        "model: {path: " + model + "}\nshadow: {path: " + model + "}"))
    return plain, shadow


def serve(pipeline, work, log_dir, log_bytes=None):
    state = os.path.join(work, "state")
    shutil.rmtree(state, ignore_errors=True)
    args = [TANDEM, "serve", pipeline, "--state", state, "--store",
            os.path.join(work, "tables"), "--listen", "127.0.0.1:0"]
    if log_dir:
        shutil.rmtree(log_dir, ignore_errors=True)
        args += ["--decision-log", log_dir, "--no-registry"]
        if log_bytes:
            args += ["--decision-log-bytes", log_bytes]
    log = open(os.path.join(work, "serve.log"), "w+")
    proc = subprocess.Popen(args, stderr=log)
    while proc.poll() is None:
        log.seek(0)
        m = re.search(r"listening on http://(\S+)", log.read())
        if m:
            return proc, "http://" + m.group(1)
        time.sleep(0.05)
    log.seek(0)
    sys.exit("bench_decision_log: the server did not start:\n" + log.read())


def cpu_seconds(pid):
    """The process's user + sys CPU time so far, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--variants", default="off,log,shadow,shadow+log",
                    help="which variants to run, comma-separated")
    ap.add_argument("--log-bytes", default=None,
                    help="--decision-log-bytes for the log variants (default: "
                    "the server's, 64M), e.g. 4M to rotate several times a run")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench",
                                                  "decision_log.json"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tandem-bench-dlog-")
    os.makedirs(os.path.join(work, "tables"))
    plain, shadow = pipelines(work)
    log_dir = os.path.join(work, "decisions")
    variants = [("off", plain, None), ("log", plain, log_dir),
                ("shadow", shadow, None), ("shadow+log", shadow, log_dir)]
    wanted = args.variants.split(",")
    variants = [v for v in variants if v[0] in wanted]
    runs = {name: [] for name, _, _ in variants}
    for r in range(args.rounds):
        for name, pipeline, logs in variants:
            proc, url = serve(pipeline, work, logs, args.log_bytes)
            try:
                result = wrk(url, 1, args.seconds, args.connections)
                result["cpu_us_per_event"] = (cpu_seconds(proc.pid) * 1e6 /
                                              max(result["requests"], 1))
            finally:
                proc.terminate()
                proc.wait()
            if logs:
                lines = sum(sum(1 for _ in open(os.path.join(logs, f)))
                            for f in os.listdir(logs) if f.endswith(".jsonl"))
                if lines < result["requests"]:
                    sys.exit("bench_decision_log: %d answers but %d records" %
                             (result["requests"], lines))
            runs[name].append(result)
            print("round %d %-11s %9.0f events/s  p99 %6.2f ms  "
                  "cpu %5.1f us/event" %
                  (r + 1, name, result["requests_per_s"],
                   result["latency_us"]["p99"] / 1000,
                   result["cpu_us_per_event"]), flush=True)
    summary = {}
    for name, _, _ in variants:
        rates = [x["requests_per_s"] for x in runs[name]]
        p99s = [x["latency_us"]["p99"] for x in runs[name]]
        cpus = [x["cpu_us_per_event"] for x in runs[name]]
        summary[name] = {"best_events_per_s": max(rates),
                         "median_events_per_s": statistics.median(rates),
                         "median_p99_us": statistics.median(p99s),
                         "median_cpu_us_per_event": statistics.median(cpus)}
    base = summary.get("off")
    print("\n| variant | events/s best | events/s median | p99 ms median | "
          "CPU us/event median | median / off |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for name, _, _ in variants:
        s = summary[name]
        print("| %s | %.0f | %.0f | %.2f | %.1f | %s |" %
              (name, s["best_events_per_s"], s["median_events_per_s"],
               s["median_p99_us"] / 1000, s["median_cpu_us_per_event"],
               "%.2fx" % (s["median_events_per_s"] /
                          base["median_events_per_s"]) if base else "-"))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"summary": summary, "runs": runs,
                   "load_average": os.getloadavg(),
                   "connections": args.connections, "seconds": args.seconds},
                  f, indent=2)
    print("\nwrote " + os.path.relpath(args.out))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
