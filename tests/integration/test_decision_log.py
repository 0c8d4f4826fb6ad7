"""`tandem serve --decision-log DIR` (docs/monitoring.md): every answered
event logged once, durably, in segments recorded as live runs.

(a) kill -9 under load: four client threads (http.client, keep-alive) post
    a seeded stream (repeated ids, invalid events) one event per request
    to `tandem serve PIPELINE --state S --decision-log D`, segments closed
    every 16 KiB; the server is SIGKILLed twice while requests are in
    flight, restarted on the same directories, and each client resends
    from its first event not answered. After a clean stop: every id the
    clients got a 200 for has exactly one record that is not a duplicate
    (none lost, none logged twice), whose members equal the answer the
    client got; every duplicate answer received has a duplicate record;
    invalid events (400) have none; no segment is left open; each segment
    has a manifest whose SHA-256 and counts match the file (computed here)
    and is listed by `tandem runs --command live` with its row count.
(b) The crash between the write-ahead log's sync (which holds the commit's
    events and decision records) and the records' write into the segment,
    at both points of that window (TANDEM_CRASH_AT=NAME:N: the process
    SIGKILLs itself there): serve-decisions-logged, before the answers are
    woken (the event in flight was applied but not answered, and its
    record is not in the segment: the restart writes the record again
    from the log, and the retry is answered and logged as a duplicate),
    and serve-decisions-answered, after (the answer may have reached the
    client while its record was only in the log). Either way every event
    still has exactly one decision record.
(d) A kill in the finisher thread, after a rotation closed the first
    segment and before that segment's sync (decision-log-closed:1): the
    restart recovers the closed segment and the open one from the
    write-ahead log, and every answered event has exactly one record.
(c) Rotation by time: with --decision-log-seconds 1, an event sent once
    the first segment is older than a second goes to a new segment, and
    that segment closes by age while the server stays idle; with
    --decision-log-features each record carries every feature, though
    the answer the client got does not.
"""
import collections
import hashlib
import http.client
import json
import os
import signal
import threading
import time

from common import expect, finish, run, tmpdir, wait_until
from pipeline_util import (FRAUD_COLUMNS, FRAUD_FEATURES, fraud_events, fraud_pipeline,
                           write_jsonl)
from serve_util import Server

out = tmpdir()
pipeline = fraud_pipeline(out)


class Client:
    def __init__(self, server):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def post(self, body):
        """(status, parsed answer), or None when the server went away."""
        try:
            self.conn.request("POST", "/v1/pipelines/fraud/events", body=body,
                              headers={"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            return resp.status, json.loads(resp.read().decode())
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return None


def bodies_of(seed, n, entities):
    evs = fraud_events(seed=seed, n=n, entities=entities, invalid=0.03,
                       duplicates=0.06)
    src = write_jsonl(os.path.join(out, f"events{seed}.jsonl"), FRAUD_COLUMNS,
                      evs, numbers=("amount",))
    with open(src) as f:
        bodies = [line.rstrip("\n") for line in f if line.strip()]
    return evs, bodies


def segments(directory):
    names = sorted(os.listdir(directory))
    expect(not [n for n in names if n.endswith(".open")],
           f"{directory}: a segment left open after a clean stop: {names}")
    return [os.path.join(directory, n) for n in names if n.endswith(".jsonl")]


def check_segments(directory, registry, label):
    """The segments' records, after checking each one's manifest and its
    registry entry against the file itself."""
    segs = segments(directory)
    listed = run("runs", "--registry", registry, "--command", "live", "--json",
                 "--limit", "100000").stdout.splitlines()
    runs = {}
    for line in listed:
        r = json.loads(line)
        if os.path.dirname(r["output"]["path"]) == os.path.realpath(directory):
            runs[r["output"]["path"]] = r
    records = []
    for path in segs:
        data = open(path, "rb").read()
        lines = data.decode().splitlines()
        recs = [json.loads(x) for x in lines]
        records.extend(recs)
        m = json.load(open(path + ".manifest.json"))
        dups = sum(1 for r in recs if r.get("duplicate") is True)
        expect(m["command"] == "live" and
               m["output"]["sha256"] == hashlib.sha256(data).hexdigest() and
               m["output"]["events"] == len(recs) and
               m["output"]["duplicates"] == dups,
               f"{label}: manifest of {path} does not describe it: {m['output']} "
               f"(lines {len(recs)}, duplicates {dups})")
        r = runs.get(os.path.realpath(path))
        expect(r is not None and r["rows"] == len(recs) and r["command"] == "live",
               f"{label}: {path} not listed by tandem runs as a live run of "
               f"{len(recs)} rows: {r}")
    expect(len(runs) == len(segs),
           f"{label}: {len(runs)} live runs listed, {len(segs)} segments")
    return segs, records


def check_records(records, answers, label):
    """answers: every (status, answer) a client received."""
    new = collections.Counter(r["event_id"] for r in records if r["duplicate"] is False)
    twice = [i for i, c in new.items() if c > 1]
    expect(not twice, f"{label}: {len(twice)} ids logged twice as new "
           f"decisions, e.g. {twice[:5]}")
    by_id = {r["event_id"]: r for r in records if r["duplicate"] is False}
    answered = set()
    dup_answers = collections.Counter()
    for status, a in answers:
        if status != 200 or "error" in a:
            continue
        answered.add(a["txn"])
        if a.get("duplicate"):
            dup_answers[a["txn"]] += 1
            continue
        rec = by_id.get(a["txn"])
        if not expect(rec is not None, f"{label}: answered event {a['txn']} "
                      f"has no decision record"):
            continue
        differ = {k: (v, rec.get(k)) for k, v in a.items() if rec.get(k) != v}
        expect(not differ, f"{label}: the record of {a['txn']} differs from its "
               f"answer: {differ}")
        expect(rec["source"] == "model" and rec["entity"] == a["card"] and
               rec["event_time"] == a["ts"] and rec["log_seq"] > 0,
               f"{label}: record of {a['txn']}: {rec}")
    missing = sorted(answered - set(new))
    expect(not missing, f"{label}: {len(missing)} answered ids with no new "
           f"decision record (lost), e.g. {missing[:5]}")
    extra = sorted(set(new) - answered)
    expect(not extra, f"{label}: {len(extra)} records of ids never answered "
           f"200, e.g. {extra[:5]}")
    dup_records = collections.Counter(r["event_id"] for r in records
                                      if r["duplicate"] is True)
    short = [i for i, c in dup_answers.items() if dup_records[i] < c]
    expect(not short, f"{label}: duplicate answers without their records: "
           f"{short[:5]}")
    seqs = [r["log_seq"] for r in records if r["duplicate"] is False]
    expect(len(set(seqs)) == len(seqs), f"{label}: a log_seq repeats")


# ---- (a) kill -9 under load, with rotation ----
evs, bodies = bodies_of(25, 1600, entities=40)
threads_n = 4
# Each client sends the events of its own cards, in file order.
cards = sorted({e["card"] for e in evs if e["card"]})
owner = {c: i % threads_n for i, c in enumerate(cards)}
parts = [[j for j, e in enumerate(evs) if owner.get(e["card"], 0) == t]
         for t in range(threads_n)]
state = os.path.join(out, "state")
dlog = os.path.join(out, "decisions")
registry = os.path.join(out, "registry.db")
flags = ["--state", state, "--decision-log", dlog, "--decision-log-bytes", "16k",
         "--registry", registry]
received = []  # every (status, answer) any client got
received_lock = threading.Lock()
next_of = [0] * threads_n  # per client: the position of its next event
answered = [0]


def client_loop(server, t):
    client = Client(server)
    part = parts[t]
    while next_of[t] < len(part):
        got = client.post(bodies[part[next_of[t]]])
        if got is None:
            return
        with received_lock:
            received.append(got)
            answered[0] += 1
        next_of[t] += 1


server = Server(pipeline, *flags)
for kill_after in (len(bodies) // 3, 2 * len(bodies) // 3, None):
    workers = [threading.Thread(target=client_loop, args=(server, t))
               for t in range(threads_n)]
    for w in workers:
        w.start()
    if kill_after is not None:
        wait_until(lambda: answered[0] >= kill_after, "answers before the kill",
                   timeout=300)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        for w in workers:
            w.join()
        expect(server.proc.returncode == -signal.SIGKILL,
               f"(a) server exit {server.proc.returncode}")
        print(f"(a) killed after {answered[0]} answers", flush=True)
        server = Server(pipeline, *flags)
    else:
        for w in workers:
            w.join()
rc = server.stop()
expect(rc == 0, f"(a) tandem serve exited {rc}: {server.stderr()[-2000:]}")
expect(all(next_of[t] == len(parts[t]) for t in range(threads_n)),
       "(a) not every event was answered")
segs, records = check_segments(dlog, registry, "(a)")
check_records(records, received, "(a)")
expect(len(segs) >= 8, f"(a) {len(segs)} segments: not rotated by size")
print(f"(a) {len(received)} answers, {len(records)} records in {len(segs)} "
      f"segments", flush=True)

# ---- (b) killed after the log's sync, before the record is in the segment ----
def send_until_killed(flags, crash_at, bodies, label):
    """Starts a server armed with TANDEM_CRASH_AT=crash_at and sends bodies
    one at a time until it dies there; returns what was received and the
    position of the first body not answered."""
    server = Server(pipeline, *flags, env={"TANDEM_CRASH_AT": crash_at})
    client = Client(server)
    received = []
    i = 0
    while i < len(bodies):
        got = client.post(bodies[i])
        if got is None:
            break
        received.append(got)
        i += 1
    if i == len(bodies):
        # Every body answered: the point was never reached (the server
        # still runs).
        server.stop()
    server.proc.wait()
    expect(server.proc.returncode == -signal.SIGKILL and i < len(bodies) and
           "crash point reached" in server.stderr(),
           f"({label}) the crash point was not reached: exit "
           f"{server.proc.returncode}, {i} events answered")
    return received, i


def resend_after_restart(flags, bodies, i, received, label):
    """Restarts the server, sends bodies[i:] (appending to received), stops
    it cleanly and returns its stderr."""
    server = Server(pipeline, *flags)
    client = Client(server)
    while i < len(bodies):
        got = client.post(bodies[i])
        expect(got is not None, f"({label}) the restarted server went away")
        received.append(got)
        i += 1
    rc = server.stop()
    expect(rc == 0, f"({label}) tandem serve exited {rc}")
    return server.stderr()


def crash_between(point, seed, label):
    """Kills the server (TANDEM_CRASH_AT=point:20) in its 20th commit with
    decision records, after the write-ahead log's sync and before the
    segment write; restarts it and resends from the first event not
    answered."""
    evs_b, bodies_b = bodies_of(seed, 60, entities=5)
    state_b = os.path.join(out, f"state-{label}")
    dlog_b = os.path.join(out, f"decisions-{label}")
    flags_b = ["--state", state_b, "--decision-log", dlog_b, "--registry", registry]
    received_b, i = send_until_killed(flags_b, point + ":20", bodies_b, label)
    left = open(os.path.join(dlog_b, sorted(os.listdir(dlog_b))[0])).read()
    in_segment = {json.loads(x)["event_id"] for x in left.splitlines()}
    # Answered before the kill (possible only after the answers are woken)
    # with a record only in the write-ahead log.
    answered_only_logged = [a["txn"] for st, a in received_b
                            if st == 200 and not a.get("duplicate") and
                            a["txn"] not in in_segment]
    in_flight = evs_b[i]["txn"]
    expect(f'"event_id":"{in_flight}"' not in left,
           f"({label}) the unanswered event {in_flight} was already in the open "
           f"segment at the crash, so this checks nothing")
    stderr = resend_after_restart(flags_b, bodies_b, i, received_b, label)
    expect("written again from the log" in stderr and
           " 0 group commits written again" not in stderr,
           f"({label}) the restart did not write the lost records again: "
           f"{stderr[-1500:]}")
    retried_dup = any(a.get("txn") == in_flight and a.get("duplicate")
                      for st, a in received_b)
    expect(answered_only_logged or retried_dup,
           f"({label}) neither an answer whose record was not yet in the segment "
           f"nor a duplicate retry of {in_flight}: the crash did not fall "
           f"between the sync and the segment write, so this checks nothing")
    _, records_b = check_segments(dlog_b, registry, f"({label})")
    check_records(records_b, received_b, f"({label})")
    print(f"({label}) {point}: answered with the record only in the log: "
          f"{answered_only_logged}; retry of {in_flight} a duplicate: {retried_dup}",
          flush=True)


# Before the answers are woken: the event in flight was applied but not
# answered; its retry is a duplicate, and its one record comes from the log.
crash_between("serve-decisions-logged", 26, "b")
# After the answers are woken, before the segment write: an answer may
# have reached its client while its record was only in the write-ahead log.
crash_between("serve-decisions-answered", 27, "b2")

# ---- (d) killed after a rotation, before the closed segment's sync ----
# The finisher thread syncs a closed segment, not the group commit that
# closed it: kill it there (decision-log-closed:1, the first closed
# segment), with the segment closed and unsynced beside the open one.
evs_d, bodies_d = bodies_of(28, 80, entities=5)
state_d = os.path.join(out, "state-d")
dlog_d = os.path.join(out, "decisions-d")
flags_d = ["--state", state_d, "--decision-log", dlog_d, "--decision-log-bytes",
           "3k", "--registry", registry]
received_d, i = send_until_killed(flags_d, "decision-log-closed:1", bodies_d, "d")
left_d = sorted(os.listdir(dlog_d))
expect("decisions-00000001.jsonl.open" in left_d and
       "decisions-00000001.jsonl.manifest.json" not in left_d,
       f"(d) the first segment was not closed and left unfinished: {left_d}")
stderr_d = resend_after_restart(flags_d, bodies_d, i, received_d, "d")
expect("recovered " + os.path.join(dlog_d, "decisions-00000001.jsonl.open")
       in stderr_d,
       f"(d) the restart did not recover the closed segment: {stderr_d[-1500:]}")
segs_d, records_d = check_segments(dlog_d, registry, "(d)")
check_records(records_d, received_d, "(d)")
expect(len(segs_d) >= 3, f"(d) {len(segs_d)} segments: not rotated by size")
print(f"(d) killed before the sync of a closed segment ({left_d}); "
      f"{len(records_d)} records in {len(segs_d)} segments", flush=True)

# ---- (c) rotation by time ----
dlog_c = os.path.join(out, "decisions-c")
with Server(pipeline, "--decision-log", dlog_c, "--decision-log-seconds", "1",
            "--decision-log-features", "--no-registry") as server:
    client = Client(server)
    first = client.post(bodies[0])
    began = time.monotonic()
    # The next event must find the segment older than its second.
    wait_until(lambda: time.monotonic() - began > 1.2, "a second to pass")
    second = client.post(bodies[1])
    # No third event comes: the second segment closes by age all the same,
    # while the server runs (published under its final name, with its
    # manifest).
    wait_until(lambda: sorted(n for n in os.listdir(dlog_c)
                              if n.endswith(".manifest.json")) ==
               ["decisions-00000001.jsonl.manifest.json",
                "decisions-00000002.jsonl.manifest.json"] and
               not [n for n in os.listdir(dlog_c) if n.endswith(".open")],
               "the idle server's last segment to close by age", timeout=30)
segs_c = segments(dlog_c)
expect(len(segs_c) == 2 and first[0] == second[0] == 200,
       f"(c) {len(segs_c)} segments after two events a second apart: {segs_c}")
records_c = [json.loads(x) for p in segs_c for x in open(p)]
expect(len(records_c) == 2 and
       all(sorted(r.get("features", {})) == sorted(FRAUD_FEATURES) for r in records_c) and
       "features" not in first[1],
       f"(c) --decision-log-features: records {records_c}, answer {first[1]}")

finish("test_decision_log")
