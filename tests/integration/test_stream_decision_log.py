"""`tandem stream --decision-log DIR`: every answered event logged exactly
once, across crashes, against librdkafka's mock cluster (build/mock-kafka)
with kcat as the independent client that produces the events and reads
the outputs.

The events (seeded, with invalid ones, repeated ids and malformed
messages) go through three runs of one stream with --state and small
segments:
  1. killed with SIGKILL from outside once some outputs are out: the
     events after the saved position were answered but not logged;
  2. killed by its own test hook (TANDEM_CRASH_AT=stream-decisions-logged:N)
     in a commit after the decision records are synced and before the
     states are saved: the events after the saved position were logged
     and are answered again;
  3. run to the end and stopped with SIGTERM.
Then, against references computed here from the inputs and the outputs
kcat read:
  - each valid input message (partition, offset) has exactly one record
    (an invalid one, by the generator's own marking or a malformed
    message, has none), with its event id and entity, "duplicate" true
    exactly for a repeated id;
  - each record carries the answer of the last output produced for its
    event (every member of that output message);
  - every segment is closed after the clean stop, its manifest's hash
    and counts match the file, and `tandem runs --command live` lists
    each one with its row count.
"""
import atexit
import collections
import hashlib
import json
import os
import signal
import subprocess
import time

import kafka_util
from common import TANDEM, expect, finish, tmpdir, wait_until
from pipeline_util import (FRAUD_COLUMNS, fraud_events, fraud_pipeline,
                           tandem, write_jsonl)

out = tmpdir()
pipeline = fraud_pipeline(out)
# Ids are remembered longer than the events span, so a repeated id is
# answered as a duplicate wherever it falls.
with open(pipeline) as f:
    text = f.read()
with open(pipeline, "w") as f:
    f.write(text.replace("state:\n  lateness: 10m\n",
                         "state:\n  lateness: 10m\n  dedupe: 30d\n"))

mock = kafka_util.Mock(["in:3", "out:3", "dlq:1", "tandem-fraud-in-changelog:3"])
brokers = mock.brokers
atexit.register(mock.stop)  # also when a check below raises
state = os.path.join(out, "state")
decisions = os.path.join(out, "decisions")
registry = os.path.join(out, "registry.db")


def logged():
    """The (partition, offset) of every whole record in the log directory,
    the open segment's included."""
    seen = set()
    if not os.path.isdir(decisions):
        return seen
    for name in os.listdir(decisions):
        if not name.startswith("decisions-") or ".manifest" in name:
            continue
        try:
            with open(os.path.join(decisions, name)) as f:
                for line in f:
                    if line.endswith("\n"):
                        r = json.loads(line)
                        seen.add((r["partition"], r["offset"]))
        except FileNotFoundError:
            pass  # renamed as it closed: read again at the next poll
    return seen


def start(name, env=None):
    log = open(os.path.join(out, name + ".log"), "a")
    return subprocess.Popen(
        [TANDEM, "stream", pipeline, "--brokers", brokers, "--input", "in",
         "--output", "out", "--dead-letter", "dlq", "--state", state,
         "--commit-interval-ms", "200", "--decision-log", decisions,
         "--decision-log-bytes", "4k", "--registry", registry,
         "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"],
        stdout=log, stderr=log, env=env)


# ---- the events ----
events = fraud_events(seed=2525, n=600, entities=12, invalid=0.04,
                      duplicates=0.06)
jsonl = write_jsonl(os.path.join(out, "events.jsonl"), FRAUD_COLUMNS, events,
                    numbers=("amount",))
with open(jsonl) as f:
    payloads = [line.rstrip("\n") for line in f if line.strip()]
expect(len(payloads) == len(events), "one JSON line per event")


def invalid(ev):
    """The generator's invalid events (fraud_events' four kinds)."""
    return (ev["amount"] == "12,5x" or ev["ts"] in ("yesterday", None) or
            ev["card"] is None)


malformed = [("c00", "not json"), ("c01", "[1,2,3]"),
             ("c02", '{"txn": "z1"}'),
             ("c03", '{"txn":"z2","card":"c03","ts":"soon","amount":1}')]
messages = [((ev["card"] or ""), p, not invalid(ev), ev)
            for ev, p in zip(events, payloads)]
messages = messages[:200] + [(k, v, False, None) for k, v in malformed] + messages[200:]
first_part, second_part = messages[:150], messages[150:300]
third_part = messages[300:]


def produce(batch):
    kafka_util.kcat_produce(brokers, "in", [(k, v) for k, v, _, _ in batch])


def outputs():
    return kafka_util.kcat_consume(brokers, "out")


# ---- 1. SIGKILL from outside with outputs out, some not yet logged ----
# The first events are answered and logged by a commit (states saved),
# then more come and the run is killed once some of them are answered.
produce(first_part)
proc = start("run1")
wait_until(lambda: len(logged()) >= 100 or proc.poll() is not None,
           "run 1: 100 records logged", timeout=90)
before = len(outputs())
produce(second_part)
wait_until(lambda: len(outputs()) >= before + 40 or proc.poll() is not None,
           "run 1: 40 more outputs", timeout=90)
proc.send_signal(signal.SIGKILL)
proc.wait()

# ---- 2. the hook: decisions synced, states not saved ----
produce(third_part)
hook = dict(os.environ, TANDEM_CRASH_AT="stream-decisions-logged:200")
proc = start("run2", env=hook)
status = proc.wait(timeout=120)
expect(status == -signal.SIGKILL and
       "crash point reached" in open(os.path.join(out, "run2.log")).read(),
       f"run 2: the crash point should have killed it, exit status {status}")

# ---- 3. to the end, then SIGTERM ----
valid_inputs = {}  # (partition, offset) -> the generator's event
inputs = kafka_util.kcat_consume(brokers, "in")
expect(len(inputs) == len(messages), f"{len(inputs)} inputs, {len(messages)} produced")
by_payload = collections.defaultdict(list)
for k, v, ok, ev in messages:
    by_payload[(k, v)].append((ok, ev))
for p, o, k, v in inputs:
    ok, ev = by_payload[(k, v)][0]
    if ok:
        valid_inputs[(p, o)] = ev
ends = collections.Counter()
for p, o, _, _ in inputs:
    ends[p] = max(ends[p], o + 1)

# Run 3 has caught up once it has committed every partition's end (it
# says so on stderr with TANDEM_STREAM_DEBUG): poll its log for that.
proc = start("run3", env=dict(os.environ, TANDEM_STREAM_DEBUG="1"))


def caught_up():
    done = {}
    for line in open(os.path.join(out, "run3.log")):
        if line.startswith("tandem stream: commit ["):
            p = int(line.split("[")[1].split("]")[0])
            done[p] = max(done.get(p, 0), int(line.split("]")[1]))
    return all(done.get(p, 0) >= end for p, end in ends.items()) or \
        proc.poll() is not None


wait_until(caught_up, "run 3: every partition committed to its end",
           timeout=90)
proc.send_signal(signal.SIGTERM)
expect(proc.wait(timeout=60) == 0, "run 3: SIGTERM: exit status")
mock_outputs = outputs()

# ---- the segments, their manifests and the registry ----
if not expect(os.path.isdir(decisions), f"no decision log in {decisions}"):
    finish("test_stream_decision_log")
names = sorted(os.listdir(decisions))
expect(not [n for n in names if n.endswith(".open")],
       f"a segment left open after a clean stop: {names}")
segs = [os.path.join(decisions, n) for n in names if n.endswith(".jsonl")]
listed = subprocess.run([TANDEM, "runs", "--registry", registry, "--command",
                         "live", "--json", "--limit", "100000"],
                        capture_output=True, text=True)
expect(listed.returncode == 0, f"tandem runs: {listed.stderr}")
runs = {}
for line in listed.stdout.splitlines():
    r = json.loads(line)
    runs[r["output"]["path"]] = r
records = []
for path in segs:
    data = open(path, "rb").read()
    recs = [json.loads(x) for x in data.decode().splitlines()]
    records.extend(recs)
    m = json.load(open(path + ".manifest.json"))
    expect(m["command"] == "live" and
           m["output"]["sha256"] == hashlib.sha256(data).hexdigest() and
           m["output"]["events"] == len(recs),
           f"the manifest of {path} does not describe it: {m['output']}")
    r = runs.get(os.path.realpath(path))
    expect(r is not None and r["rows"] == len(recs),
           f"{path} ({len(recs)} records) is not listed by tandem runs: {r}")
expect(len(runs) == len(segs) and len(segs) >= 3,
       f"{len(runs)} live runs listed, {len(segs)} segments")

# ---- one record per valid input, the last answer's ----
count = collections.Counter((r["partition"], r["offset"]) for r in records)
twice = [k for k, n in count.items() if n > 1]
expect(not twice, f"{len(twice)} inputs logged twice, such as {twice[:5]}")
missing = set(valid_inputs) - set(count)
expect(not missing, f"{len(missing)} valid inputs not logged, such as "
       f"{sorted(missing)[:5]}")
extra = set(count) - set(valid_inputs)
expect(not extra, f"{len(extra)} invalid inputs logged, such as {sorted(extra)[:5]}")

last = {}  # event id -> the last output produced for it
for p, o, k, v in mock_outputs:
    answer = json.loads(v)
    last[answer["txn"]] = answer
seen_ids = set()
order = sorted(valid_inputs, key=lambda po: (po[0], po[1]))
dup_expected = {}
for po in order:
    ev = valid_inputs[po]
    dup_expected[po] = ev["txn"] in seen_ids
    seen_ids.add(ev["txn"])
wrong = 0
for r in records:
    po = (r["partition"], r["offset"])
    ev = valid_inputs.get(po)
    if ev is None:
        continue
    answer = last.get(ev["txn"])
    # A repeated id's later outputs carry their own fields and the first
    # answer's values: the answer is compared, the fields with the event.
    ok = (answer is not None and r["event_id"] == ev["txn"] and
          r["entity"] == ev["card"] and r["ts"] == r["event_time"] and
          all(r.get(key) == answer.get(key)
              for key in ("score", "decision", "model_version", "card")) and
          "score" in answer and "decision" in answer)
    if not ok:
        wrong += 1
        if wrong <= 3:
            expect(False, f"record {po} is not the last answer for "
                   f"{ev['txn']}: {r} vs {answer}")
expect(wrong == 0, f"{wrong} records differ from the last answers")
dups = sum(1 for r in records if r.get("duplicate") is True)
# A repeated id is a duplicate wherever its first event was answered; ids
# repeat within an entity, hence within one partition, in offset order.
want_dups = sum(1 for v in dup_expected.values() if v)
expect(dups == want_dups, f"{dups} duplicate records, {want_dups} repeated ids")
expect(sum(1 for r in records if r.get("duplicate") is False) ==
       len(valid_inputs) - want_dups, "the other records say duplicate: false")

print(f"stream decision log: {len(records)} records in {len(segs)} segments "
      f"for {len(valid_inputs)} valid of {len(messages)} inputs, "
      f"{dups} duplicates", flush=True)
finish("test_stream_decision_log")
