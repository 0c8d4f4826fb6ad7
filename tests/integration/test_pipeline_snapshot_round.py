#!/usr/bin/env python3
"""A snapshot round of `tandem serve --state` is carried out by its own
thread, beside the group commits (issue 22, item 7: each step used to be
taken by the committer between two commits, and every waiting answer
waited for its LMDB transaction).

On a real server with a decision log: events for 40 cards, then one event
at a time until the first snapshot round has begun (the server starts one
10 s after it starts, at the next commit; tandem_pipeline_snapshot_step_
seconds counts its steps), then no more events. The round must still
finish: all 16 steps (64 shards, 4 per step) counted and the log
segments before the round's deleted from the state directory. The
committer took a step only after a commit, so with no events the round
stopped after its first step and the old segments stayed.

Then nothing may be lost: the server is killed (SIGKILL), restarted on
the same state (the states the round saved, then the log after it), and
each card's next event must continue the card's count and sum as this
test counted them from the events it sent, and an event sent before the
round, sent again, must answer as a duplicate.
"""
import json
import os
import re
import signal
import time

from common import expect, finish, tmpdir, wait_until
from pipeline_util import (COUNTS_FEATURES, counts_yaml, fmt_time, make_model,
                           write)
from serve_util import Server, curl

STEPS = 16  # NUM_SHARDS / SHARDS_PER_STEP in src/serve/live.c
MIN = 60_000

out = tmpdir()
make_model(os.path.join(out, "model.json"), COUNTS_FEATURES, seed=9)
yaml = write(os.path.join(out, "snap.yaml"),
             counts_yaml("snap", "state: {lateness: 10m}"))
state_dir = os.path.join(out, "state")
counts = {}  # card -> (count, sum) of its applied events, counted here
start = int(time.time() * 1000) - 60 * MIN


def post(server, txn, card, ms, amount, duplicate=False):
    r = curl(server, "POST", "/v1/pipelines/snap/events?explain=features",
             json.dumps({"txn": txn, "card": card, "ts": fmt_time(ms),
                         "amount": amount}))
    expect(r.status == 200, f"{txn}: {r.status} {r.body}")
    if r.status != 200:
        return
    answer = json.loads(r.body)
    if duplicate:
        expect(answer.get("duplicate") is True,
               f"{txn} sent again answers as new: {answer}")
        return
    n, total = counts.get(card, (0, 0.0))
    n, total = n + 1, total + float(amount)
    counts[card] = (n, total)
    f = answer.get("features", {})
    expect(f.get("n_all") == n and f.get("sum_all") == total,
           f"{txn} of {card}: n_all {f.get('n_all')} sum_all "
           f"{f.get('sum_all')}, its events give {n}, {total}")


def steps(server):
    m = re.search(r'^tandem_pipeline_snapshot_step_seconds_count'
                  r'\{pipeline="snap"\} (\d+)$',
                  curl(server, "GET", "/metrics").body, re.M)
    return int(m.group(1)) if m else -1


def segments():
    return sorted(int(m.group(1)) for m in
                  (re.match(r"snap\.(\d+)\.wal$", n) for n in os.listdir(state_dir))
                  if m)


cards = ["c%02d" % i for i in range(40)]
server = Server(yaml, "--state", state_dir, "--decision-log",
                os.path.join(out, "decisions"), "--no-registry")
try:
    for k, card in enumerate(cards):
        post(server, card + "_0", card, start + k, "%d.5" % k)
    first = segments()
    expect(len(first) >= 1, f"no log segment in {os.listdir(state_dir)}")
    # The round begins at the first commit 10 s after the start: one event
    # at a time until its first step is counted.
    j = 0

    def round_begun():
        global j
        post(server, "tick_%d" % j, cards[j % len(cards)],
             start + MIN + j, "0.25")
        j += 1
        return steps(server) >= 1

    wait_until(round_begun, "a snapshot round began", timeout=90, interval=0.1)
    # No more events: the round must finish by itself.
    done = wait_until(lambda: steps(server) >= STEPS and first
                      and segments() and segments()[0] > first[0],
                      "the snapshot round finished with no events arriving "
                      f"(steps counted: {steps(server)}, segments "
                      f"{segments()}, before the round {first})", timeout=60)
    if done:
        print(f"round finished with no events arriving: {steps(server)} steps,"
              f" segments {first} -> {segments()}", flush=True)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
finally:
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()

with Server(yaml, "--state", state_dir, "--decision-log",
            os.path.join(out, "decisions"), "--no-registry") as server:
    for k, card in enumerate(cards):
        post(server, card + "_0", card, start + k, "9", duplicate=True)
        post(server, card + "_after", card, start + 2 * MIN + k, "1.75")
print(f"after a kill and a restart: {len(cards)} cards continue their counts "
      "and sums, their first events are duplicates", flush=True)
finish("test_pipeline_snapshot_round")
