"""`tandem stream` across crashes and rebalances, when the events span
much more than the dedupe horizon: the state carries its input position,
so an event is never applied twice to an entity's state, whatever the
committed offsets say.

The scenario (issue 18): a 4-partition input on librdkafka's mock cluster
(3 brokers), a pipeline that remembers event ids for only 1 hour while the
events span about 5 days, two members in one group with their own state
directories, and every offset commit failing (the mock answers
OffsetCommit with REBALANCE_IN_PROGRESS, as a group in a rebalance does).
Before this change a partition that moved resumed from its committed
offset (none: the start) on the state its changelog held (the end), and
applied every event older than an hour a second time.

(a) Member A is SIGKILLed once its share of the first 60% of the events is
    answered and saved; B takes A's partitions over while the rest of the
    events arrive.
(b) A restarts; it is SIGKILLed again as soon as it is assigned partitions
    (during the rebalance), and restarts again.
(c) One more event per entity (a probe of its final state), then both
    members are SIGTERMed at once: both exit 0.
(d) A commit cut short (a test hook kills the member after 25 entity
    states of a commit are in the changelog, before its partitions'
    positions): the restart finds those entities' states ahead of their
    partition's position and must not apply their events again.

Checked against references computed here: every output, in order per
entity, is `tandem batch`'s line for that event, where a member that goes
back repeats earlier outputs byte for byte; and every output's total_all
(a sum over the entity's whole history) equals the sum of the amounts of
the entity's events up to it, computed in Python from the events: an event
applied twice would show in every later output of its entity, the probes
included (the final state of every entity).

Member B, the restart in (d) and the member in (e) process their
partitions on 2 threads (--threads 2), A on one. The members use static
membership (--instance-id) and a 6 s session timeout. librdkafka 2.0.2's mock cluster does not implement static
membership (a member restarted under the same instance id joins as a new
member: the group rebalances, and the killed one's partitions wait for its
session timeout), so what this shows is that the results stay correct
with it, not that a restart avoids the rebalance.
"""
import datetime
import json
import os
import random
import signal
import subprocess
import time
import urllib.request

import kafka_util
from common import TANDEM, expect, fail, finish, tmpdir
from kafka_util import matches, per_entity
from pipeline_util import (FRAUD_COLUMNS, MCCS, MERCHANTS, fmt_time,
                           fraud_pipeline, read_lines, tandem, write_jsonl)

SEED = 18
ENTITIES = 40
EVENTS = 3200
out = tmpdir()
pipeline = fraud_pipeline(out)
with open(pipeline) as f:
    text = f.read()
# Event ids are remembered for an hour only; the output carries total_all.
text = text.replace("state:\n  lateness: 10m\n",
                    "state:\n  lateness: 10m\n  dedupe: 1h\n")
text += "output: [txn, card, ts, total_all, score, decision]\n"
with open(pipeline, "w") as f:
    f.write(text)

# ---- the events: in time order, integer amounts (exact sums) ----
rng = random.Random(SEED)
cards = ["k%02d" % i for i in range(ENTITIES)]
t = 1_700_000_000_000
events = []
for i in range(EVENTS):
    t += rng.choice([0, 1_000, 30_000, 60_000, 120_000, 300_000, 400_000])
    events.append({"txn": "e%05d" % i, "card": rng.choice(cards),
                   "ts": fmt_time(t), "amount": str(rng.randint(1, 999)),
                   "merchant": rng.choice(MERCHANTS),
                   "mcc": rng.choice(MCCS[:4])})
span_hours = (t - 1_700_000_000_000) / 3_600_000
expect(span_hours > 24 * 4, f"the events span only {span_hours:.0f} hours")
probes = [{"txn": "p-" + c, "card": c, "ts": fmt_time(t + 86_400_000),
           "amount": "1", "merchant": "m0", "mcc": "fuel"} for c in cards]
everything = events + probes
jsonl = write_jsonl(os.path.join(out, "events.jsonl"), FRAUD_COLUMNS,
                    everything, numbers=("amount",))
payloads = [l.decode() for l in read_lines(jsonl)]
batch_out = os.path.join(out, "batch.jsonl")
r = tandem("batch", pipeline, "--in", jsonl, "--out", batch_out)
expect(r.returncode == 0, f"batch: {r.stderr}")
want = {}
for ev, line in zip(everything, read_lines(batch_out)):
    want.setdefault(ev["card"], []).append(line.decode())
expect(sum(map(len, want.values())) == len(everything),
       "batch answered every event")
# The independent reference: each event's total_all.
running = {}
want_total = {}
for ev in everything:
    running[ev["card"]] = running.get(ev["card"], 0) + int(ev["amount"])
    want_total[ev["txn"]] = running[ev["card"]]

TOPICS = ["in:4", "out:4", "dlq:1", "pos-in-changelog:4", "in2:4", "out2:4",
          "cut-in2-changelog:4", "in3:4", "out3:4", "eos-in3-changelog:4",
          "in4:4", "short-in4-changelog:4", "far-in4-changelog:4"]
mock = kafka_util.Mock(TOPICS)
brokers = mock.brokers


def start(name, state, *extra):
    """Member NAME (its instance id: the state directory's name)."""
    log = open(os.path.join(out, name + ".log"), "a")
    return subprocess.Popen(
        [TANDEM, "stream", pipeline, "--brokers", brokers, "--input", "in",
         "--output", "out", "--dead-letter", "dlq", "--group", "pos",
         "--state", os.path.join(out, state), "--commit-interval-ms", "200",
         "--metrics", "127.0.0.1:0", "--instance-id", state,
         "--session-timeout-ms", "6000", *extra],
        stdout=log, stderr=log)


def log_text(name):
    try:
        with open(os.path.join(out, name + ".log")) as f:
            return f.read()
    except OSError:
        return ""


def wait_for(condition, what, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    fail(f"timed out waiting for {what}")
    return False


def commits(name):
    """The commits member NAME has attempted (its /metrics, the newest
    address on its log)."""
    urls = [l.split(" on ", 1)[1].strip() for l in log_text(name).splitlines()
            if "metrics on" in l]
    if not urls:
        return 0
    try:
        text = urllib.request.urlopen(urls[-1], timeout=5).read().decode()
    except OSError:
        return 0
    return sum(int(l.split()[-1]) for l in text.splitlines()
               if l.startswith("tandem_stream_commits_total"))


def outputs():
    return per_entity(kafka_util.kcat_consume(brokers, "out"))


def state_of(got, upto):
    """(entities complete up to UPTO events of theirs, the first wrong
    output or None)."""
    complete = 0
    for card, w in want.items():
        reached, _, wrong = matches(w, got.get(card, []))
        if wrong is not None:
            return complete, (card, wrong)
        complete += reached >= upto(card)
    return complete, None


def wait_outputs(upto, what, timeout=120):
    """Waits until every entity has its first UPTO(card) outputs; stops at
    the first output that is not batch's."""
    result = {}

    def done():
        got = outputs()
        complete, wrong = state_of(got, upto)
        result["wrong"] = wrong
        return wrong is not None or complete == len(want)

    wait_for(done, what, timeout)
    if result.get("wrong") is not None:
        card, line = result["wrong"]
        fail(f"{what}: entity {card}: an output that is not batch's: {line}")
        return False
    return True


def count_before(card, n):
    """How many of card's batch outputs come from the first N events."""
    return sum(1 for ev in everything[:n] if ev["card"] == card)


lines = [(ev["card"], p) for ev, p in zip(everything, payloads)]
first = EVENTS * 6 // 10
# Every offset commit fails from now on, as in a group that is rebalancing.
mock.command("errors 8 27 1000000")

# ---- (a) A is killed; B takes its partitions over ----
a = start("a", "state-a")
wait_for(lambda: "assigned" in log_text("a"), "A to be assigned")
b = start("b", "state-b", "--threads", "2")
wait_for(lambda: "assigned" in log_text("b") and
         log_text("a").count("assigned") >= 2, "the group to rebalance to A and B")
kafka_util.kcat_produce(brokers, "in", lines[:first])
ok = wait_outputs(lambda c: count_before(c, first), "(a) the first outputs")
# A has saved its states at least once (every 200 ms while it works): the
# changelog holds states further on than any committed offset.
wait_for(lambda: commits("a") >= 1, "(a) a commit of A")
a.kill()
a.wait()
kafka_util.kcat_produce(brokers, "in", lines[first:EVENTS])
ok = ok and wait_outputs(lambda c: count_before(c, EVENTS),
                         "(a) B answering the rest after A was killed")
print(f"(a) A killed after the first {first} events; B answered the rest",
      flush=True)

# ---- (b) A restarts, is killed while being assigned, restarts ----
if ok:
    a = start("a2", "state-a")
    wait_for(lambda: "assigned" in log_text("a2"), "(b) A to be assigned again")
    a.kill()
    a.wait()
    a = start("a3", "state-a")
    wait_for(lambda: "assigned" in log_text("a3"), "(b) A to be assigned a third time")
    # Both members are in the group: answers keep coming from both.
    kafka_util.kcat_produce(brokers, "in", lines[EVENTS:])
    ok = wait_outputs(lambda c: len(want[c]), "(c) the probes")

# ---- (c) both SIGTERMed at once ----
for p in (a, b):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
for name, p in (("A", a), ("B", b)):
    try:
        status = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        status = None
    expect(status == 0, f"(c) {name}: SIGTERM: exit status {status}")



def check(topic, name):
    """Every output of TOPIC against batch and the sums of the amounts."""
    got = per_entity(kafka_util.kcat_consume(brokers, topic))
    repeats = wrong_entities = 0
    for card, w in want.items():
        reached, rep, wrong = matches(w, got.get(card, []))
        repeats += rep
        if wrong is not None or reached != len(w):
            wrong_entities += 1
            if wrong_entities <= 3:
                fail(f"{name}: entity {card}: {reached} of {len(w)} outputs "
                     f"equal batch's, then {wrong}")
    expect(not set(got) - set(want), f"{name}: outputs only for the events' entities")
    bad_totals = 0
    for line in (v for vs in got.values() for v in vs):
        d = json.loads(line)
        if d["total_all"] != want_total.get(d["txn"]):
            bad_totals += 1
            if bad_totals <= 3:
                fail(f"{name}: {d['txn']} of {d['card']}: total_all "
                     f"{d['total_all']}, the amounts up to it sum to "
                     f"{want_total.get(d['txn'])}")
    expect(all(got.get(c) and json.loads(got[c][-1])["txn"] == "p-" + c
               for c in cards), f"{name}: every entity's last output is its probe")
    print(f"{name}: {sum(map(len, got.values()))} outputs for "
          f"{len(everything)} events ({repeats} repeated identically); "
          f"{wrong_entities} entities differ from batch; {bad_totals} totals "
          f"differ from the events' sums", flush=True)


check("out", "(a)-(c)")

# ---- (d) a commit cut short ----
# One member over every event, killed (a test hook) after 25 states of its
# first commit are in the changelog, before the input positions of their
# partitions are: the restart finds some entities' states further on than
# their partition's position, and must not apply those events again.
kafka_util.kcat_produce(brokers, "in2", lines)
env = dict(os.environ, TANDEM_CRASH_AT="stream-changelog-produced:25")
log = open(os.path.join(out, "cut.log"), "a")
d = subprocess.Popen(
    [TANDEM, "stream", pipeline, "--brokers", brokers, "--input", "in2",
     "--output", "out2", "--dead-letter", "dlq", "--group", "cut",
     "--state", os.path.join(out, "state-cut"), "--commit-interval-ms", "1000",
     "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"],
    stdout=log, stderr=log, env=env)
status = d.wait(timeout=120)
expect(status == -signal.SIGKILL and
       "crash point reached" in open(os.path.join(out, "cut.log")).read(),
       f"(d) the crash point: exit status {status}")
log = open(os.path.join(out, "cut-2.log"), "a")
d = subprocess.Popen(
    [TANDEM, "stream", pipeline, "--brokers", brokers, "--input", "in2",
     "--output", "out2", "--dead-letter", "dlq", "--group", "cut",
     "--state", os.path.join(out, "state-cut"), "--commit-interval-ms", "1000",
     "--metrics", "127.0.0.1:0", "--threads", "2",
     "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"],
    stdout=log, stderr=log)


def caught_up(name):
    """Member NAME holds all 4 partitions and has answered every message
    of them (its /metrics: no lag)."""
    urls = [l.split(" on ", 1)[1].strip() for l in log_text(name).splitlines()
            if "metrics on" in l]
    try:
        text = urllib.request.urlopen(urls[-1], timeout=5).read().decode()
    except (OSError, IndexError):
        return False
    lags = [int(l.split()[-1]) for l in text.splitlines()
            if l.startswith("tandem_stream_consumer_lag{")]
    return len(lags) == 4 and not any(lags)


# The killed run may have answered every event before its commit: wait
# for the restart to have taken every partition and caught up.
wait_for(lambda: caught_up("cut-2"), "(d) the restart to catch up", 120)
d.send_signal(signal.SIGTERM)
expect(d.wait(timeout=60) == 0, "(d) SIGTERM: exit status")
check("out2", "(d)")

# ---- (e) --exactly-once, killed in the middle of a transaction ----
# The member answers the first half of the events and commits; the second
# half comes, and it is SIGKILLed as soon as 100 of its outputs are out
# (in an open transaction), then restarted. The mock cluster runs the
# transactions (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
# TxnOffsetCommit, EndTxn) but its Fetch ignores isolation.level (a
# read_committed reader gets aborted and open transactions' records too)
# and its TxnOffsetCommit stores no offset; so a read_committed kcat here
# sees the killed transaction's outputs as well, and what is checked is
# that every output is batch's, repeats identical, and the totals.
half = len(lines) // 2
kafka_util.kcat_produce(brokers, "in3", lines[:half])


def eos_member(name, interval):
    log = open(os.path.join(out, name + ".log"), "a")
    return subprocess.Popen(
        [TANDEM, "stream", pipeline, "--brokers", brokers, "--input", "in3",
         "--output", "out3", "--dead-letter", "dlq", "--group", "eos",
         "--state", os.path.join(out, "state-eos"), "--exactly-once",
         "--instance-id", "eos-1", "--commit-interval-ms", str(interval),
         "--metrics", "127.0.0.1:0", "--session-timeout-ms", "6000",
         "--threads", "2"],
        stdout=log, stderr=log)


# Transactions of 3 s: the kill lands in an open one.
e = eos_member("eos-1", 3000)
wait_for(lambda: len(kafka_util.kcat_consume(brokers, "out3")) >= half
         and commits("eos-1") >= 1, "(e) the first half's outputs, committed")
kafka_util.kcat_produce(brokers, "in3", lines[half:])
wait_for(lambda: len(kafka_util.kcat_consume(brokers, "out3")) >= half + 100,
         "(e) outputs of the second half")
e.kill()
e.wait()
e = eos_member("eos-2", 300)
wait_for(lambda: caught_up("eos-2"), "(e) the restart to catch up", 120)
e.send_signal(signal.SIGTERM)
expect(e.wait(timeout=60) == 0, "(e) SIGTERM: exit status")
committed = kafka_util.kcat_consume(brokers, "out3", "-X",
                                    "isolation.level=read_committed")
expect(len(committed) >= len(lines), f"(e) {len(committed)} outputs read "
       f"read_committed for {len(lines)} events")
check("out3", "(e)")

# ---- (f) a position that cannot be used: a clear error, exit non-zero ----
# A position record that is not 8 bytes; one beyond the input partition's
# end (the input was recreated). Each in partition 0 of its changelog.
def produce_position(topic, value):
    r = subprocess.run(["kcat", "-P", "-b", brokers, "-t", topic, "-p", "0",
                        "-K", "|"],
                       input=b"\xfftandem:input-position|" + value + b"\n",
                       capture_output=True, timeout=60)
    expect(r.returncode == 0, f"(f) kcat: {r.stderr}")


produce_position("short-in4-changelog", b"abc")
produce_position("far-in4-changelog", (10**6).to_bytes(8, "little"))
for group, needle in (
        ("short", "changelog short-in4-changelog [0] offset 0: an input "
                  "position of 3 bytes (8 expected)"),
        ("far", "in4 [0]: the saved states reflect its events up to offset "
                "1000000, but the partition ends at 0")):
    log = open(os.path.join(out, group + ".log"), "a")
    f = subprocess.Popen(
        [TANDEM, "stream", pipeline, "--brokers", brokers, "--input", "in4",
         "--output", "out2", "--group", group, "--session-timeout-ms", "6000"],
        stdout=log, stderr=log)
    try:
        status = f.wait(timeout=60)
    except subprocess.TimeoutExpired:
        f.kill()
        status = None
    text = log_text(group)
    expect(status not in (0, None) and needle in text,
           f"(f) {group}: exit {status}, wanted {needle!r} in:\n{text[-2000:]}")
print("(f) a position record of 3 bytes and one beyond the partition's end: "
      "each a clear error", flush=True)
mock.stop()
finish("test_stream_failover")
