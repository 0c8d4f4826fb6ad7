#!/usr/bin/python3
"""Single-row latency of an explained live answer against an unexplained
one, on the fraud example (examples/fraud, its 200-tree model).

Two `tandem serve` processes run the example's pipeline (without its
deadline fallback, so every answer is computed): one as it is, one with
`explain: {reasons: 4, min_contribution: 0.01}`. The same events go one
per request over keep-alive connections, alternating between the servers
event by event (so load on the machine hits both alike); the unexplained
server also answers every event again with ?explain=contribs (every
contribution) on a third, fresh server. Prints p50/p90/p99 round-trip
latency per kind and the ratios, and writes the numbers as JSON.

    bench/bench_explain.py [--events 3000] [--out bench-explain.json]
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAUD = os.path.join(ROOT, "examples", "fraud")
TANDEM = os.environ.get("TANDEM", os.path.join(ROOT, "build", "tandem"))


def start(pipeline, store):
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    proc = subprocess.Popen([TANDEM, "serve", pipeline, "--store", store,
                             "--listen", "127.0.0.1:0"],
                            stdout=subprocess.DEVNULL, stderr=log)
    while proc.poll() is None:
        log.seek(0)
        m = re.search(r"listening on http://\S+:(\d+)", log.read())
        if m:
            return proc, int(m.group(1)), log
        time.sleep(0.02)
    sys.exit("tandem serve did not start")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--out", default="bench-explain.json")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tandem-bench-explain-")
    text = open(os.path.join(FRAUD, "pipeline.yaml")).read()
    text = text.replace("{path: model.json}",
                        "{path: " + os.path.join(FRAUD, "model.json") + "}")
    text = re.sub(r"(?m)^realtime:.*\n", "", text)
    plain = os.path.join(work, "plain.yaml")
    explained = os.path.join(work, "explained.yaml")
    open(plain, "w").write(text)
    open(explained, "w").write(
        text + "\nexplain: {reasons: 4, min_contribution: 0.01}\n")
    events_csv = os.path.join(work, "events.csv")
    subprocess.run([sys.executable, os.path.join(FRAUD, "generate.py"),
                    "--cards", "500", "--days", "10", "--seed", "3", "--out",
                    events_csv], check=True, capture_output=True)
    lines = open(events_csv).read().splitlines()
    header = lines[0].split(",")
    bodies = []
    for line in lines[1:args.events + 1]:
        e = dict(zip(header, line.split(",")))
        e.pop("is_fraud", None)
        e["amount"] = float(e["amount"])
        bodies.append(json.dumps(e))
    store = os.path.join(work, "tables")
    kinds = {"unexplained": (plain, ""),
             "reasons": (explained, ""),
             "contribs": (plain, "?explain=contribs")}
    servers = {k: start(p, store) for k, (p, _) in kinds.items()}
    conns = {k: http.client.HTTPConnection("127.0.0.1", s[1])
             for k, s in servers.items()}
    times = {k: [] for k in kinds}
    try:
        for body in bodies:
            for kind, (_, query) in kinds.items():
                t0 = time.perf_counter()
                conns[kind].request("POST", "/v1/pipelines/fraud/events" + query,
                                    body=body,
                                    headers={"Content-Type": "application/json"})
                resp = conns[kind].getresponse()
                answer = resp.read()
                times[kind].append((time.perf_counter() - t0) * 1e6)
                if resp.status != 200:
                    sys.exit(f"{kind}: {resp.status} {answer[:200]}")
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait()
    result = {"events": len(bodies), "cpus": os.cpu_count(),
              "load_average": os.getloadavg()[0], "kinds": {}}
    print(f"{len(bodies)} events, one per request, round trip in µs "
          f"(load average {result['load_average']:.1f})")
    print(f"{'answer':<12} {'p50':>8} {'p90':>8} {'p99':>8} {'p50 ratio':>10}")
    base = percentile(times["unexplained"], 0.5)
    for kind, t in times.items():
        row = {q: percentile(t, v) for q, v in (("p50", 0.5), ("p90", 0.9),
                                                ("p99", 0.99))}
        row["ratio_p50"] = row["p50"] / base
        result["kinds"][kind] = row
        print(f"{kind:<12} {row['p50']:8.0f} {row['p90']:8.0f} "
              f"{row['p99']:8.0f} {row['ratio_p50']:9.2f}x")
    json.dump(result, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
