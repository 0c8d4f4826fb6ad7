"""`tandem stream` on Kafka, against librdkafka's mock cluster
(build/mock-kafka, 3 brokers) with kcat as the independent client that
produces the events and reads the results.

(a) Events of the shared fraud pipeline (late events, repeated ids,
    invalid events), keyed by entity, plus malformed messages, in a topic
    of 3 partitions; one `tandem stream` instance. Per entity, in order,
    the outputs equal `tandem batch` JSON Lines output of the same events
    (batch marks a repeated id "duplicate": true; the stream's output is
    the original result without the flag). Every invalid message is in
    the dead-letter topic with a reason, its partition, offset and
    payload. /metrics serves the counters, lag and commit latency.
    SIGTERM drains and exits 0.
(b) The saved state is used: a second group over the same input with the
    same --state directory reprocesses every event, and each is
    recognized by its id: its output is the original, byte for byte.
(c) A crash (a test hook: SIGKILL) after the states are saved and
    before the offsets are committed: the restart processes those events
    again, each is recognized by its id and repeats its original output.
(e) Two instances in one group, each with its own state directory (two
    hosts), one killed with SIGKILL: the other takes its partitions over,
    restores their states from the changelog topic and finishes; every
    output equals batch.
(f) Produce and OffsetCommit errors injected in the mock brokers are
    retried: no output lost.
(d) kill -9 midway, restart on the same state and group, finish: per
    entity, the outputs are the batch outputs, where events processed
    again after the restart repeat their original output exactly.
(g) The state follows its partition through the changelog alone: an
    instance without a state directory continues where another stopped,
    and equals batch; the control without a changelog differs.
(i) A crash in the middle of seeding an empty changelog from the local
    states (the first run with a changelog after runs without one): the
    restart keeps the local states and seeds again; outputs equal batch.
(h) A corrupt changelog record, and a changelog with fewer partitions
    than the input: a clear error, exit non-zero. (A missing changelog is
    created by the admin API on a real cluster; the mock cluster creates
    any topic a client asks about, so that path is not tested here.)
"""
import datetime
import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import kafka_util
from common import TANDEM, expect, fail, finish, tmpdir, wait_until
from kafka_util import matches, per_entity, strip_duplicate
from pipeline_util import (FRAUD_COLUMNS, fmt_time, fraud_events,
                           fraud_pipeline, read_jsonl, read_lines, tandem,
                           write_jsonl)

out = tmpdir()
pipeline = fraud_pipeline(out)
# Event ids are remembered for 30 days of event time, longer than the
# events span, so every event processed again is recognized.
with open(pipeline) as f:
    text = f.read()
with open(pipeline, "w") as f:
    f.write(text.replace("state:\n  lateness: 10m\n",
                         "state:\n  lateness: 10m\n  dedupe: 30d\n"))
# The changelogs (<group>-<input>-changelog) are made here: the mock
# cluster has no CreateTopics.
TOPICS = ["in:3", "out:3", "dlq:1", "in2:3", "out2:3", "dlq2:1",
          "out3:3", "in4:3", "out4:3", "dlq4:1", "in5:4", "out5:4",
          "dlq5:1", "in6:3", "out6:3", "dlq6:1",
          "tandem-fraud-in-changelog:3", "again-in-changelog:3",
          "tandem-fraud-in4-changelog:3", "tandem-fraud-in2-changelog:3",
          "pair-in5-changelog:4", "tandem-fraud-in6-changelog:3",
          "in7:3", "out7:3", "dlq7:1", "tandem-fraud-in7-changelog:3",
          "in8:3", "out8:3", "dlq8:1",
          "in9:3", "out9:3", "dlq9:1", "tandem-fraud-in9-changelog:3",
          "in10:3", "short-in10-changelog:2",
          "in11:3", "out11:3", "dlq11:1", "tandem-fraud-in11-changelog:3"]
mock = kafka_util.Mock(TOPICS)
brokers = mock.brokers


def kcat_produce(topic, lines):
    kafka_util.kcat_produce(brokers, topic, lines)


def kcat_consume(topic):
    return kafka_util.kcat_consume(brokers, topic)


def start_stream(inp, output, dlq, state, *extra, stderr_name="stream",
                 env=None):
    """STATE None: no --state (memory only)."""
    log = open(os.path.join(out, stderr_name + ".log"), "a")
    return subprocess.Popen(
        [TANDEM, "stream", pipeline, "--brokers", brokers, "--input", inp,
         "--output", output, "--dead-letter", dlq,
         *(["--state", state] if state else []),
         "--commit-interval-ms", "200",
         # A member killed without leaving holds its partitions until its
         # session times out (45 s by default): keep that short.
         "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
         *extra],
        stderr=log, stdout=log, env=env)


# ---- the events and what batch says ----
events = fraud_events(seed=41, n=900, entities=12, invalid=0.03)
jsonl = write_jsonl(os.path.join(out, "events.jsonl"), FRAUD_COLUMNS, events,
                    numbers=("amount",))
batch_out = os.path.join(out, "batch.jsonl")
r = tandem("batch", pipeline, "--in", jsonl, "--out", batch_out)
expect(r.returncode == 0, f"batch: {r.stderr}")
rejected_lines = set()
if os.path.exists(batch_out + ".rejects.jsonl"):
    rejected_lines = {x["line"] for x in read_jsonl(batch_out + ".rejects.jsonl")}
payloads = [l.decode() for l in read_lines(jsonl)]
batch_lines = iter(l.decode() for l in read_lines(batch_out))
want = {}  # entity -> the outputs in order
for i, (ev, payload) in enumerate(zip(events, payloads)):
    if i + 1 in rejected_lines:
        continue
    want.setdefault(ev["card"], []).append(strip_duplicate(next(batch_lines)))
valid = sum(len(v) for v in want.values())
expect(valid > 0 and len(rejected_lines) > 0,
       f"the events have {valid} valid and {len(rejected_lines)} invalid")
malformed = [("c00", "not json"), ("c01", "[1,2,3]"), ("c02", '{"txn": "z1"}'),
             ("c03", '{"txn":"z2","card":"c03","ts":"soon","amount":1}'),
             ("c04", '{"txn":"z3","card":"c04","ts":1700000000,"amount":{"a":1}}')]
input_lines = [(ev["card"] or "", p) for ev, p in zip(events, payloads)]


def wait_outputs(topic, count, proc, timeout=90):
    deadline = time.time() + timeout
    rows = []
    while time.time() < deadline:
        rows = kcat_consume(topic)
        if len(rows) >= count or proc.poll() is not None:
            break
        time.sleep(0.5)
    return rows


def wait_complete(topic, timeout=90):
    """The outputs of TOPIC once every entity has all of its outputs
    (where a run that goes back repeats some, a count is not enough)."""
    deadline = time.time() + timeout
    while True:
        rows = kcat_consume(topic)
        got = per_entity(rows)
        if (all(matches(w, got.get(e, []))[0] == len(w) for e, w in want.items())
                or time.time() >= deadline):
            return rows
        time.sleep(0.5)


def check_outputs(name, rows, allow_repeats=False):
    got = per_entity(rows)
    bad = 0
    total_repeats = 0
    for entity, w in want.items():
        reached, repeats, wrong = matches(w, got.get(entity, []))
        total_repeats += repeats
        if wrong is not None or reached != len(w) or (repeats and not allow_repeats):
            bad += 1
            if bad <= 3:
                fail(f"{name}: entity {entity}: {reached} of {len(w)} outputs "
                     f"matched, {repeats} repeats; first wrong: {wrong}")
    extra = set(got) - set(want)
    expect(not extra, f"{name}: outputs for unknown entities {sorted(extra)[:5]}")
    return bad, total_repeats


# ---- (a) one instance ----
kcat_produce("in", input_lines[:450] + malformed + input_lines[450:])
state = os.path.join(out, "state")
proc = start_stream("in", "out", "dlq", state, "--metrics", "127.0.0.1:0")
rows = wait_outputs("out", valid, proc)
expect(len(rows) == valid, f"(a) {len(rows)} outputs for {valid} valid events")
bad, _ = check_outputs("(a)", rows)
keys_ok = all(json.loads(v)["card"] == k for _, _, k, v in rows)
expect(keys_ok, "(a) outputs are keyed by their entity")
letters = kcat_consume("dlq")
expect(len(letters) == len(rejected_lines) + len(malformed),
       f"(a) {len(letters)} dead letters for "
       f"{len(rejected_lines) + len(malformed)} invalid messages")
sent = {p for _, p in malformed} | {payloads[i - 1] for i in rejected_lines}
for _, _, _, v in letters:
    d = json.loads(v)
    ok = (isinstance(d.get("error"), str) and d["error"] and d["topic"] == "in"
          and isinstance(d["partition"], int) and isinstance(d["offset"], int)
          and d["payload"] in sent)
    expect(ok, f"(a) dead letter {v}")
not_json = [json.loads(v) for _, _, _, v in letters
            if json.loads(v)["payload"] == "not json"]
expect(len(not_json) == 1 and "message" in not_json[0]["error"],
       f"(a) the dead letter of 'not json': {not_json}")
# /metrics (the address is on stderr)
wait_until(lambda: "metrics on" in open(os.path.join(out, "stream.log")).read(),
           "the stream logs its metrics address")
log = open(os.path.join(out, "stream.log")).read()
url = [l.split(" on ", 1)[1] for l in log.splitlines() if "metrics on" in l]
metrics = ""


def settled():
    """The metrics once the counters have caught up with the outputs (the
    runner adds its workers' counts and commits a moment after the
    outputs are acknowledged), else None."""
    text = urllib.request.urlopen(url[0].strip(), timeout=10).read().decode()
    counted = {}
    for line in text.splitlines():
        if line.startswith("tandem_stream_events_total"):
            counted[line.split('outcome="')[1].split('"')[0]] = int(line.split()[-1])
    done = (counted.get("scored", 0) + counted.get("duplicate", 0) == valid and
            'tandem_stream_consumer_lag{pipeline="fraud",topic="in",partition="0"} 0'
            in text)
    return text if done else None


if expect(url, f"(a) no metrics address in {log}"):
    metrics = wait_until(settled, "(a) the metrics count every event") or \
        urllib.request.urlopen(url[0].strip(), timeout=10).read().decode()
for needle in ('tandem_stream_events_total{pipeline="fraud",outcome="scored"} %d'
               % sum(1 for v in want.values() for _ in v),
               'tandem_stream_dead_letters_total{pipeline="fraud"} %d'
               % len(letters),
               'tandem_stream_consumer_lag{pipeline="fraud",topic="in",partition="0"} 0',
               "tandem_stream_commit_seconds_count",
               'tandem_stream_partitions{pipeline="fraud"} 3'):
    expect(needle in metrics or needle.startswith("tandem_stream_events_total"),
           f"(a) /metrics lacks {needle!r}:\n{metrics}")
# scored + duplicate = valid events
counts = {}
for line in metrics.splitlines():
    if line.startswith("tandem_stream_events_total"):
        counts[line.split('outcome="')[1].split('"')[0]] = int(line.split()[-1])
expect(counts.get("scored", 0) + counts.get("duplicate", 0) == valid,
       f"(a) events_total {counts}, {valid} valid")
proc.send_signal(signal.SIGTERM)
expect(proc.wait(timeout=60) == 0, "(a) SIGTERM: exit status")
print(f"(a) {valid} outputs, {len(letters)} dead letters, {bad} entities differ",
      flush=True)

def partition_ends(topic):
    """The next offset of each partition of TOPIC (kcat reads them all)."""
    ends = {}
    for p, o, _, _ in kcat_consume(topic):
        ends[p] = max(ends.get(p, 0), o + 1)
    return ends


def resumed_at(name, count, timeout=60):
    """The offsets the stream logging to NAME.log said it resumed its
    partitions at (the states' input positions), once COUNT are there."""
    path = os.path.join(out, name + ".log")
    deadline = time.time() + timeout
    while True:
        found = {}
        for line in open(path).read().splitlines():
            if ": resuming at offset " in line:
                part = int(line.split("partition ")[1].split(":")[0])
                found[part] = int(line.split("resuming at offset ")[1].split(",")[0])
        if len(found) >= count or time.time() >= deadline:
            return found
        time.sleep(0.2)


# ---- (b) the saved state carries its input position ----
# A second group over the same input with the same --state directory has
# no committed offsets, but its states reflect every event of the topic:
# it resumes at their position (the end), applying nothing twice, and
# answers an event added afterwards as batch does after all the others.
proc = start_stream("in", "out3", "dlq", state, "--group", "again",
                    stderr_name="again")
resumed = resumed_at("again", 3)
expect(resumed == partition_ends("in"),
       f"(b) resumed at {resumed}, the partitions end at {partition_ends('in')}")
last_ms = max(int(datetime.datetime.fromisoformat(
    ev["ts"].replace("Z", "+00:00")).timestamp() * 1000)
    for ev in events if ev["ts"] and ev["ts"][0].isdigit())
later = [{"txn": "later%d" % i, "card": "c%02d" % i,
          "ts": fmt_time(last_ms + 60_000 * (i + 1)), "amount": "20",
          "merchant": "m1", "mcc": "fuel"} for i in range(3)]
later_jsonl = write_jsonl(os.path.join(out, "later.jsonl"), FRAUD_COLUMNS,
                          events + later, numbers=("amount",))
r = tandem("batch", pipeline, "--in", later_jsonl, "--out",
           os.path.join(out, "later-batch.jsonl"))
expect(r.returncode == 0, f"(b) batch: {r.stderr}")
want_later = [l.decode() for l in read_lines(os.path.join(out, "later-batch.jsonl"))][-3:]
kcat_produce("in", [(ev["card"], p) for ev, p in zip(
    later, [l.decode() for l in read_lines(later_jsonl)][-3:])])
rows = wait_outputs("out3", 3, proc)
got_later = sorted(v for _, _, _, v in rows)
expect(got_later == sorted(want_later),
       f"(b) outputs {got_later}, batch says {want_later}")
proc.send_signal(signal.SIGTERM)
expect(proc.wait(timeout=60) == 0, "(b) SIGTERM: exit status")
log = open(os.path.join(out, "again.log")).read()
expect("entities restored" in log, f"(b) no state restored: {log}")
print(f"(b) another group on the same states resumed at their position "
      f"{resumed}; {len(rows)} outputs for 3 new events", flush=True)

# ---- (c) a crash between saving the states and committing offsets ----
# The first 300 events are processed and committed; then the other 600
# come, and the first commit after them saves the states and dies before
# its offsets are committed (a test hook). The restart resumes at the
# states' position, the end of the input: nothing is processed again,
# although the committed offsets are 300 events behind.
state4 = os.path.join(out, "state4")
kcat_produce("in4", input_lines[:300])
crash_env = dict(os.environ,
                 TANDEM_CRASH_AT=f"stream-states-saved:{len(input_lines)}")
proc = start_stream("in4", "out4", "dlq4", state4, stderr_name="crash",
                    env=crash_env)
first = wait_outputs("out4", sum(1 for i in range(300) if i + 1 not in rejected_lines), proc)
time.sleep(1)
kcat_produce("in4", input_lines[300:])
status = proc.wait(timeout=90)
expect(status == -signal.SIGKILL and
       "crash point reached" in open(os.path.join(out, "crash.log")).read(),
       f"(c) the crash point: exit status {status}")
before = len(kcat_consume("out4"))
expect(before == valid, f"(c) {before} outputs before the crash, {valid} events")
proc = start_stream("in4", "out4", "dlq4", state4, stderr_name="crash-2")
resumed = resumed_at("crash-2", 3)
expect(resumed == partition_ends("in4"),
       f"(c) resumed at {resumed}, the partitions end at {partition_ends('in4')}")
proc.send_signal(signal.SIGTERM)
expect(proc.wait(timeout=60) == 0, "(c) SIGTERM: exit status")
rows = kcat_consume("out4")
bad, repeats = check_outputs("(c)", rows)
expect(len(rows) == valid, f"(c) {len(rows)} outputs for {valid} events")
print(f"(c) crash after saving: the restart resumed at the states' position "
      f"{resumed}; {len(rows)} outputs, {bad} entities differ", flush=True)

# ---- (d) kill -9 midway ----
state2 = os.path.join(out, "state2")
kcat_produce("in2", input_lines[:300])
proc = start_stream("in2", "out2", "dlq2", state2, stderr_name="kill")
first = wait_outputs("out2", 150, proc)
proc.kill()
proc.wait()
kcat_produce("in2", input_lines[300:])
killed_at = len(first)
proc = start_stream("in2", "out2", "dlq2", state2, stderr_name="kill")
rows = wait_complete("out2")
bad, repeats = check_outputs("(d)", rows, allow_repeats=True)
proc.send_signal(signal.SIGTERM)
expect(proc.wait(timeout=60) == 0, "(d) SIGTERM: exit status")
print(f"(d) killed after {killed_at} outputs; {len(rows)} outputs in all for "
      f"{valid} events ({repeats} processed again), {bad} entities differ",
      flush=True)

# ---- (e) two instances in one group, one killed: the other takes over ----
# Each has its own state directory (two hosts): the survivor restores the
# partitions of the one killed from the changelog topic.
# Both are members before any event arrives, so each processes (and
# writes to the changelog) its share of the first half.
def log_count(name, needle):
    try:
        return open(os.path.join(out, name + ".log")).read().count(needle)
    except OSError:
        return 0


def wait_log(name, needle, count=1, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline and log_count(name, needle) < count:
        time.sleep(0.2)
    return log_count(name, needle) >= count

    for line in text.splitlines():
        if line.startswith(metric + " ") or line.startswith(metric + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


fast = ["--group", "pair"]
debug = dict(os.environ, TANDEM_STREAM_DEBUG="1")
a = start_stream("in5", "out5", "dlq5", os.path.join(out, "state5a"), *fast,
                 stderr_name="pair-a", env=debug)
expect(wait_log("pair-a", "assigned"), "(e) the first member got no partitions")
b = start_stream("in5", "out5", "dlq5", os.path.join(out, "state5b"), *fast,
                 stderr_name="pair-b", env=debug)
expect(wait_log("pair-b", "assigned") and wait_log("pair-a", "assigned", 2),
       "(e) the group did not rebalance to two members")
kcat_produce("in5", input_lines[:450])
wait_outputs("out5", sum(1 for i in range(450) if i + 1 not in rejected_lines), a)
# Wait until the states of every input partition are saved up to its end
# (TANDEM_STREAM_DEBUG logs each commit's offsets once its states are in
# the changelog), so the survivor has the killed member's states to take.
ends = partition_ends("in5")


def saved_to_the_end():
    last = {}
    for name in ("pair-a", "pair-b"):
        for line in open(os.path.join(out, name + ".log")).read().splitlines():
            m = re.match(r"tandem stream: commit \[(\d+)\] (\d+)", line)
            if m:
                last[int(m[1])] = max(last.get(int(m[1]), 0), int(m[2]))
    return all(last.get(p, -1) >= end for p, end in ends.items())


wait_until(saved_to_the_end, "(e) every input partition saved to its end")
a.kill()
a.wait()
kcat_produce("in5", input_lines[450:])
rows = wait_complete("out5", timeout=120)
bad, repeats = check_outputs("(e)", rows, allow_repeats=True)
expect(b.poll() is None, "(e) the survivor exited")
b.send_signal(signal.SIGTERM)
expect(b.wait(timeout=60) == 0, "(e) SIGTERM: exit status")
logb = open(os.path.join(out, "pair-b.log")).read()
# A partition it had before (its local checkpoint) or never had (from the
# changelog's start): either way the killed one's records were read.
took_over = [l for l in logb.splitlines()
             if "changelog records of pair-in5-changelog" in l
             and " then 0 changelog records" not in l]
expect(took_over, f"(e) the survivor restored nothing from the changelog:\n{logb}")
print(f"(e) two instances, one killed: {len(rows)} outputs for {valid} events "
      f"({repeats} rewinds), {bad} entities differ; the survivor was assigned "
      f"{logb.count('assigned')} times and restored "
      f"{len(took_over)} partitions from the changelog", flush=True)

# ---- (f) broker errors are retried without loss ----
# Produce requests fail (NOT_LEADER_OR_FOLLOWER, then a dropped
# connection), offset commits fail (COORDINATOR_NOT_AVAILABLE): the
# outputs are still each event's, once, in order.
# The input goes in first: injected produce errors would reach kcat's own
# produce requests, and its retries could write an event twice.
kcat_produce("in6", input_lines)
expect(len(kcat_consume("in6")) == len(input_lines),
       "(f) the input topic holds each event once")
for command in ("errors 0 6 3", "errors 0 -195 2", "errors 8 15 3"):
    mock.command(command)
state6 = os.path.join(out, "state6")
proc = start_stream("in6", "out6", "dlq6", state6, stderr_name="errors")
rows = wait_complete("out6", timeout=120)
bad, repeats = check_outputs("(f)", rows, allow_repeats=True)
proc.send_signal(signal.SIGTERM)
expect(proc.wait(timeout=60) == 0, "(f) SIGTERM: exit status")
# After a clean exit every dead letter is delivered; one whose event was
# processed again after a failed commit may be there twice.
letters = kcat_consume("dlq6")
sources = {(json.loads(v)["partition"], json.loads(v)["offset"])
           for _, _, _, v in letters}
rejected_payloads = {payloads[i - 1] for i in rejected_lines}
expect(len(sources) == len(rejected_lines)
       and all(json.loads(v)["payload"] in rejected_payloads
               for _, _, _, v in letters),
       f"(f) {len(letters)} dead letters from {len(sources)} messages for "
       f"{len(rejected_lines)} invalid events")
print(f"(f) with injected broker errors: {len(rows)} outputs for {valid} events "
      f"({repeats} rewinds), {bad} entities differ; {len(letters)} dead letters "
      f"for {len(rejected_lines)} invalid events", flush=True)

# ---- (g) state follows the partition through the changelog alone ----
# An instance processes the first half and stops; a second one with no
# state directory (another host) continues from the committed offsets with
# the states it restores from the changelog: every output equals batch.
# The control, without a changelog, starts cold and differs.
def half_and_half(inp, output, dlq, first_args, second_args, name):
    kcat_produce(inp, input_lines[:450])
    proc = start_stream(inp, output, dlq, *first_args, stderr_name=name + "-1")
    wait_outputs(output, sum(1 for i in range(450) if i + 1 not in rejected_lines),
                 proc)
    proc.send_signal(signal.SIGTERM)
    expect(proc.wait(timeout=60) == 0, f"({name}) first: SIGTERM: exit status")
    kcat_produce(inp, input_lines[450:])
    proc = start_stream(inp, output, dlq, *second_args, stderr_name=name + "-2")
    rows = wait_outputs(output, valid, proc)
    proc.send_signal(signal.SIGTERM)
    expect(proc.wait(timeout=60) == 0, f"({name}) second: SIGTERM: exit status")
    return rows, open(os.path.join(out, name + "-2.log")).read()


rows, log = half_and_half("in7", "out7", "dlq7", [os.path.join(out, "state7")],
                          [None], "moved")
expect(len(rows) == valid, f"(g) {len(rows)} outputs for {valid} events")
bad, _ = check_outputs("(g)", rows)
restored = sum(int(l.split(" entities restored")[0].rsplit(" ", 1)[1])
               for l in log.splitlines() if "entities restored" in l)
expect(restored > 0 and "no state directory" in log,
       f"(g) nothing restored from the changelog:\n{log}")
rows, _ = half_and_half("in8", "out8", "dlq8",
                        [os.path.join(out, "state8"), "--no-changelog"],
                        [None, "--no-changelog"], "cold")
differ = sum(1 for e, w in want.items()
             if per_entity(rows).get(e, []) != w)
expect(differ > 0, "(g) the control without a changelog shows no difference: "
       "the check could not fail")
print(f"(g) moved to an instance without local state: {len(rows)} outputs, "
      f"{bad} entities differ ({restored} entities restored from the "
      f"changelog); without a changelog {differ} entities differ", flush=True)

# ---- (i) a seed of an empty changelog cut short by a crash ----
# The first half runs without a changelog (offsets committed, states only
# local); the next run has one, empty, so it writes the local states to it
# (a seed) and is killed after 3 records; the run after that must keep
# the local states (not take the 3 records for the whole state) and seed
# again: the second half's outputs equal batch.
kcat_produce("in11", input_lines[:450])
state11 = os.path.join(out, "state11")
proc = start_stream("in11", "out11", "dlq11", state11, "--no-changelog",
                    stderr_name="seed-1")
wait_outputs("out11", sum(1 for i in range(450) if i + 1 not in rejected_lines),
             proc)
proc.send_signal(signal.SIGTERM)
expect(proc.wait(timeout=60) == 0, "(i) first: SIGTERM: exit status")
kcat_produce("in11", input_lines[450:])
proc = start_stream("in11", "out11", "dlq11", state11, stderr_name="seed-2",
                    env=dict(os.environ, TANDEM_CRASH_AT="stream-changelog-produced:3"))
status = proc.wait(timeout=90)
expect(status == -signal.SIGKILL and
       "crash point reached" in open(os.path.join(out, "seed-2.log")).read(),
       f"(i) the crash point: exit status {status}")
proc = start_stream("in11", "out11", "dlq11", state11, stderr_name="seed-3")
# The killed run may have answered every event already: wait for this one
# to take its partitions and go through what it processes again.
expect(wait_log("seed-3", "assigned"), "(i) the restart got no partitions")
expect(wait_log("seed-3", "(a seed)"), "(i) the restart did not seed again")
rows = wait_complete("out11")
bad, repeats = check_outputs("(i)", rows, allow_repeats=True)
proc.send_signal(signal.SIGTERM)
expect(proc.wait(timeout=60) == 0, "(i) third: SIGTERM: exit status")
log = open(os.path.join(out, "seed-3.log")).read()
expect("(a seed)" in log, f"(i) the restart did not seed again:\n{log}")
print(f"(i) a seed killed after 3 changelog records: {len(rows)} outputs for "
      f"{valid} events ({repeats} processed again), {bad} entities differ",
      flush=True)

# ---- (h) a changelog that cannot be used: a clear error, exit non-zero ----
# in10's changelog was made with 2 partitions for 3 input partitions.
r = subprocess.run(["kcat", "-P", "-b", brokers, "-t",
                    "tandem-fraud-in9-changelog", "-p", "0", "-K", "|"],
                   input="c01|not a state\n", text=True, capture_output=True,
                   timeout=60)
expect(r.returncode == 0, f"(h) kcat: {r.stderr}")
kcat_produce("in9", input_lines[:50])
for args, needle in (
        ([], "changelog tandem-fraud-in9-changelog [0] offset 0: the state of "
             "\"c01\" does not fit this pipeline"),
        (["--input", "in10", "--group", "short"],
         "the changelog topic short-in10-changelog has 2 partitions; the input "
         "has 3")):
    proc = start_stream("in9", "out9", "dlq9", None, *args, stderr_name="bad")
    try:
        status = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = None
    log = open(os.path.join(out, "bad.log")).read()
    expect(status not in (0, None) and needle in log,
           f"(h) {args}: exit {status}, wanted {needle!r} in:\n{log[-2000:]}")
print("(h) a corrupt changelog record and a changelog with too few "
      "partitions: each a clear error", flush=True)

mock.stop()
finish("test_stream")
