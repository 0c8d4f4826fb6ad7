#!/usr/bin/env python3
"""`tandem stream` end to end through librdkafka's mock cluster, against
the transport's own limit measured in the same run.

  bench_stream.py [--cards 16000] [--partitions 64] [--runs 2] [--json FILE]
                  [--tandem PATH] [--threads 2]

The events are the fraud example's (examples/fraud/generate.py, JSON
Lines, keyed by card), produced with kcat into two input topics of the
mock cluster (build/mock-kafka, 3 brokers, one process). Then, in turn:

  pass-through  build/kafka-peer passthrough: a consumer group member that
                produces every message unchanged to an output topic, with
                tandem stream's client settings (idempotent producer,
                linger.ms=5, no auto commit, acknowledged offsets committed
                every second);
  tandem        tandem stream examples/fraud/pipeline.yaml with durable
                local state (--state) and its changelog topic: each event
                through the pipeline (19 features, 12 of them windows, a
                200-tree model), its result produced to the output topic.

  (--threads: tandem stream --threads N.) And, on the same events,
  batch         tandem batch --threads N over the JSON Lines file, timed
                from start to end: what the pipeline itself sustains.

The Kafka runs are timed by build/kafka-peer watch on their output topic:
from the first output to the last, so group joins and startup are left
out of both.
The mock cluster keeps about 5 MB per partition (older messages are
dropped), which bounds the events per partition: 16,000 cards give about
986,000 events, about 3.5 MB per partition of 64.
Messages/s of each (the best of --runs), and tandem stream's as a share
of the lower of the pass-through's and batch's. Every output of tandem is
checked to be a result.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, "build")
TANDEM = os.path.join(BUILD, "tandem")
PEER = os.path.join(BUILD, "kafka-peer")
MOCK = os.path.join(BUILD, "mock-kafka")
PIPELINE = os.path.join(ROOT, "examples", "fraud", "pipeline.yaml")
sys.path.insert(0, os.path.dirname(__file__))
from bench_pipeline import cpu_name  # noqa: E402


def produce(brokers, topic, data):
    subprocess.run(["kcat", "-P", "-b", brokers, "-t", topic, "-K", "\t",
                    "-X", "linger.ms=50", "-X", "batch.num.messages=10000"],
                   input=data, text=True, check=True)


def watch(brokers, topic, count):
    return subprocess.Popen([PEER, "watch", brokers, topic, str(count)],
                            stdout=subprocess.PIPE, text=True)


def finish(watcher, name, timeout=900):
    out, _ = watcher.communicate(timeout=timeout)
    if watcher.returncode != 0:
        sys.exit("bench_stream: %s: not every output arrived: %s" % (name, out))
    return json.loads(out)


def main():
    global TANDEM
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=16000)
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", default=os.path.join(BUILD, "bench",
                                                        "stream.json"))
    parser.add_argument("--tandem", default=TANDEM,
                        help="the tandem binary (default build/tandem)")
    parser.add_argument("--threads", type=int, default=2,
                        help="tandem stream's and batch's --threads")
    args = parser.parse_args()
    TANDEM = os.path.abspath(args.tandem)
    subprocess.run(["make", "-s", "-C", ROOT, "build/tandem",
                    "build/mock-kafka", "build/kafka-peer"], check=True)
    machine = "%s, %d CPUs" % (cpu_name(), os.cpu_count())
    results = {"machine": machine, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        events = os.path.join(tmp, "txns.jsonl")
        subprocess.run([sys.executable,
                        os.path.join(ROOT, "examples", "fraud", "generate.py"),
                        "--cards", str(args.cards), "--out", events],
                       check=True)
        lines = []
        with open(events) as fp:
            for line in fp:
                card = json.loads(line)["card_id"]
                lines.append(card + "\t" + line)
        data = "".join(lines)
        n = len(lines)
        print("%s; %d events (%d cards, 30 days), %d partitions" %
              (machine, n, args.cards, args.partitions), flush=True)
        p = str(args.partitions)
        topics = []
        for r in range(args.runs):
            topics += ["pin%d:%s" % (r, p), "pout%d:%s" % (r, p),
                       "tin%d:%s" % (r, p), "tout%d:%s" % (r, p),
                       "tandem-fraud-tin%d-changelog:%s" % (r, p)]
        mock = subprocess.Popen([MOCK] + sum((["-t", t] for t in topics), []),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        brokers = mock.stdout.readline().strip()
        try:
            for r in range(args.runs):
                produce(brokers, "pin%d" % r, data)
                produce(brokers, "tin%d" % r, data)
            print("  %-14s %10s %10s" % ("", "messages/s", "seconds"))
            best = {"pass-through": 0, "tandem": 0, "batch": 0}
            for r in range(args.runs):
                w = watch(brokers, "pout%d" % r, n)
                peer = subprocess.Popen([PEER, "passthrough", brokers,
                                         "pin%d" % r, "pout%d" % r,
                                         "peer%d" % r, str(n)],
                                        stdout=subprocess.DEVNULL)
                through = finish(w, "pass-through")
                peer.wait(timeout=120)
                state = os.path.join(tmp, "state%d" % r)
                log = open(os.path.join(tmp, "stream%d.log" % r), "w")
                w = watch(brokers, "tout%d" % r, n)
                proc = subprocess.Popen(
                    [TANDEM, "stream", PIPELINE, "--brokers", brokers,
                     "--input", "tin%d" % r, "--output", "tout%d" % r,
                     "--state", state, "--store", os.path.join(tmp, "tables"),
                     "--threads", str(args.threads)],
                    stderr=log)
                streamed = finish(w, "tandem")
                proc.terminate()
                if proc.wait(timeout=120) != 0:
                    sys.exit("bench_stream: tandem stream failed; see its log")
                started = time.monotonic()
                subprocess.run([TANDEM, "batch", PIPELINE, "--in", events,
                                "--out", os.path.join(tmp, "batch%d.jsonl" % r),
                                "--store", os.path.join(tmp, "tables"),
                                "--threads", str(args.threads)],
                               check=True, capture_output=True)
                seconds = time.monotonic() - started
                batched = {"per_s": n / seconds, "seconds": seconds}
                for name, m in (("pass-through", through), ("tandem", streamed),
                                ("batch", batched)):
                    print("  %-14s %10.0f %10.2f" % (name, m["per_s"],
                                                     m["seconds"]), flush=True)
                    best[name] = max(best[name], m["per_s"])
                results["runs"].append({"pass_through": through,
                                        "tandem": streamed, "batch": batched})
            # Spot-check tandem's outputs: results, keyed by card.
            out = subprocess.run(["kcat", "-C", "-b", brokers, "-t", "tout0",
                                  "-e", "-q", "-c", "1000", "-f", "%k\t%s\n"],
                                 capture_output=True, text=True, check=True)
            for line in out.stdout.splitlines():
                key, value = line.split("\t", 1)
                result = json.loads(value)
                if result.get("card_id") != key or "score" not in result:
                    sys.exit("bench_stream: not a result: " + line)
        finally:
            mock.stdin.write("quit\n")
            mock.stdin.flush()
            try:
                mock.wait(timeout=10)
            except subprocess.TimeoutExpired:
                mock.kill()
    lower = min(best["pass-through"], best["batch"])
    ratio = best["tandem"] / lower
    results.update(events=n, partitions=args.partitions, threads=args.threads,
                   pass_through_per_s=best["pass-through"],
                   batch_per_s=best["batch"],
                   tandem_per_s=best["tandem"], ratio=ratio)
    print("\nbest: tandem stream %.0f/s, pass-through %.0f/s, batch %.0f/s "
          "(--threads %d): tandem stream at %.0f%% of the lower (target: at "
          "least 70%%)" % (best["tandem"], best["pass-through"], best["batch"],
                           args.threads, 100 * ratio))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fp:
        json.dump(results, fp, indent=2)
    print("wrote " + os.path.relpath(args.json))


if __name__ == "__main__":
    main()
