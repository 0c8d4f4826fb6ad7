"""The time rules of docs/windows.md ("Event time"), one regression per
case of issue 16, against the real binary. Expected values are counted
here from the events sent (an entity's count and sum), never taken from
tandem's own earlier output:

1. Isolation under `tandem serve --state`: 50 cards with events 200 days
   ago, then one card with events now. The 50 leave memory once idle
   (tandem_pipeline_entities drops), and still: an acknowledged event sent
   again answers as a duplicate with its original values, a new event
   continues the card's windows, and so after a kill -9 and a restart;
   `tandem batch` over the same events gives the same answers.
2. Isolation in batch: two cards, then 270,000 events of other cards (more
   than the 8 chunks after which batch used to evict by the newest time
   of all), then the two cards again: duplicates stay duplicates and the
   windows continue.
3. too_late: with an id field, an event more than state.dedupe before its
   entity's newest is rejected (batch: reject file with "reason":
   "too_late"; serve: 422), a retry of a forgotten id too; one exactly
   dedupe before is applied; `late: apply` applies them.
4. future: an event more than state.max_future ahead of the runner's
   clock is rejected (`--now` pins batch's; serve uses the wall clock);
   exactly max_future ahead is accepted; 9999-01-01 (RFC 3339 or as epoch
   seconds) is future, a time beyond year 9999 is not a time.
5. Point-in-time live lookups: two table versions; events live exactly
   at, just before and after each version's as_of read the version batch
   reads (the default with version null before the first), staleness
   never negative.
6. A `--state` directory written by the previous release
   (tests/fixtures/state/v2_dir) opens, and its answers continue exactly
   as one batch run over its history and the new events.
"""
import json
import os
import shutil
import signal
import time

from common import FIXTURES, expect, finish, tmpdir
from pipeline_util import (COUNTS_COLUMNS, COUNTS_FEATURES, counts_yaml,
                           fmt_time, make_model, read_csv as csv_rows,
                           read_jsonl, tandem, write, write_csv)
from serve_util import Server, curl

FEATURES, COLUMNS = COUNTS_FEATURES, COUNTS_COLUMNS
S, MIN, H, DAY = 1000, 60_000, 3_600_000, 86_400_000

out = tmpdir()
make_model(os.path.join(out, "model.json"), FEATURES, seed=5)


def pipeline(name, state="state: {lateness: 10m}"):
    return write(os.path.join(out, name), counts_yaml("tr", state))


def event(txn, card, ms, amount):
    return {"txn": txn, "card": card, "ts": fmt_time(ms), "amount": amount}


def post(server, ev):
    """One event live (with its features); (status, answer)."""
    r = curl(server, "POST", "/v1/pipelines/tr/events?explain=features", ev)
    try:
        return r.status, json.loads(r.body)
    except ValueError:
        return r.status, {"unparsed": r.body}


def entities_in_memory(server):
    r = curl(server, "GET", "/metrics")
    for line in r.body.splitlines():
        if line.startswith("tandem_pipeline_entities{"):
            return int(float(line.split()[-1]))
    return -1


def batch_answers(yaml, events, now_ms, name, *flags):
    """tandem batch over events (JSON Lines out, features explained): the
    answers of the applied events, by input position, and the rejects by
    input position."""
    src = write_csv(os.path.join(out, name + ".csv"), COLUMNS, events)
    dst = os.path.join(out, name + ".jsonl")
    r = tandem("batch", yaml, "--in", src, "--out", dst, "--explain",
               "--now", fmt_time(now_ms), "--threads", 2, *flags)
    expect(r.returncode == 0, f"{name}: batch failed: {r.stderr}")
    if r.returncode != 0:
        return {}, {}
    rejects = {}
    if os.path.exists(dst + ".rejects.jsonl"):
        for rej in read_jsonl(dst + ".rejects.jsonl"):
            rejects[rej["line"] - 2] = rej
    answers, lines = {}, iter(read_jsonl(dst))
    for i in range(len(events)):
        if i not in rejects:
            answers[i] = next(lines)
    return answers, rejects


# ---- 1. isolation under serve --state ----
now = int(time.time() * 1000)
old = now - 200 * DAY
yaml = pipeline("iso.yaml")
state_dir = os.path.join(out, "state")
sent = []  # (event, live answer) in the order sent
counts = {}  # card -> (count, sum) of its applied events, counted here
cards = ["c%02d" % i for i in range(50)]


def send(server, ev, expect_duplicate=False):
    status, answer = post(server, ev)
    expect(status == 200, f"{ev}: {status} {answer}")
    sent.append((ev, answer))
    if status != 200:
        return
    if expect_duplicate:
        expect(answer.get("duplicate") is True,
               f"isolation: acknowledged {ev['txn']} sent again answers as new "
               f"{answer}")
        return
    n, total = counts.get(ev["card"], (0, 0.0))
    n, total = n + 1, total + float(ev["amount"])
    counts[ev["card"]] = (n, total)
    f = answer.get("features", {})
    expect(f.get("n_all") == n and f.get("sum_all") == total,
           f"isolation: {ev['txn']} of {ev['card']}: n_all {f.get('n_all')} "
           f"sum_all {f.get('sum_all')}, the card's events give {n}, {total}")


server = Server(yaml, "--state", state_dir)
try:
    for j in range(3):
        for k, card in enumerate(cards):
            send(server, event("%s_%d" % (card, j), card, old + j * MIN + k,
                               "%d.5" % (k + j)))
    for j in range(20):
        send(server, event("far_%d" % j, "far", now - 20 * S + j * S, "1"))
    expect(entities_in_memory(server) == 51, "51 entities in memory at first")
    # Idle entities leave memory after a few snapshot rounds (about 20 s);
    # rounds advance with the commits of the events that keep arriving.
    deadline, j = time.time() + 120, 20
    while time.time() < deadline and entities_in_memory(server) > 1:
        send(server, event("far_%d" % j, "far", now + j, "1"))
        j += 1
        time.sleep(0.05)
    left = entities_in_memory(server)
    expect(left == 1, f"the idle entities never all left memory ({left})")
    print(f"isolation: {51 - left} idle entities moved out of memory", flush=True)
    for card in cards:
        send(server, event(card + "_0", card, old, "999"), expect_duplicate=True)
        send(server, event(card + "_3", card, old + 10 * MIN, "2.25"))
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
finally:
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()
with Server(yaml, "--state", state_dir) as server:
    for card in cards:
        send(server, event(card + "_3", card, old + 10 * MIN, "7"),
             expect_duplicate=True)
        send(server, event(card + "_4", card, old + 11 * MIN, "0.25"))
answers, rejects = batch_answers(yaml, [ev for ev, _ in sent], now, "iso")
expect(not rejects, f"isolation: batch rejected {list(rejects.values())[:2]}")
differ = [i for i, (ev, live) in enumerate(sent) if answers.get(i) != live]
expect(not differ, f"isolation: batch and live differ on {len(differ)} events, "
       f"first {sent[differ[0]] if differ else None} vs "
       f"{answers.get(differ[0]) if differ else None}")
print(f"isolation (serve): {len(sent)} events, batch == live", flush=True)

# ---- 2. isolation in batch ----
events = [event("a1", "A", old, "3"), event("b1", "B", old + 1, "4")]
events += [event("n%d" % i, "n%d" % (i % 1000), now - 10 * MIN + i % 1000, "1")
           for i in range(270_000)]
events += [event("a1", "A", old, "3"), event("a2", "A", old + MIN, "5"),
           event("b1", "B", old + 1, "4"), event("b2", "B", old + MIN, "6")]
answers, rejects = batch_answers(pipeline("iso_batch.yaml"), events, now,
                                 "iso_batch")
tail = [answers.get(len(events) - 4 + i, {}) for i in range(4)]
expect(tail[0].get("duplicate") is True and tail[2].get("duplicate") is True,
       f"batch isolation: acknowledged ids answer as new after 270,000 other "
       f"entities: {tail[0]}, {tail[2]}")
expect([t.get("features", {}).get("n_all") for t in tail] == [1, 2, 1, 2] and
       tail[1].get("features", {}).get("sum_all") == 8.0 and
       tail[3].get("features", {}).get("sum_all") == 10.0,
       f"batch isolation: windows restarted: {tail}")
print("isolation (batch): 270,000 other entities change nothing", flush=True)

# ---- 3. too_late ----
T = now - 30 * DAY
late_events = [
    event("e1", "X", T, "1"),
    event("e2", "X", T + 2 * DAY, "2"),
    event("e3", "X", T + H, "4"),               # 47 h before the newest
    event("e1", "X", T, "1"),                   # a retry, its id forgotten
    event("e4", "X", T + DAY, "8"),             # exactly dedupe before: kept
    event("e5", "X", T + DAY - 1, "16"),        # 1 ms beyond: too late
    event("e2", "X", T + 2 * DAY, "2"),         # a retry still remembered
]
TOO_LATE = {2, 3, 5}
for name, state, rejected in (
        ("late", "state: {lateness: 10m}", TOO_LATE),
        ("late_apply", "state: {lateness: 10m, late: apply}", set())):
    yaml = pipeline(name + ".yaml", state)
    answers, rejects = batch_answers(yaml, late_events, now, name)
    expect(set(rejects) == rejected and
           all(r.get("reason") == "too_late" for r in rejects.values()),
           f"{name}: batch rejects {rejects}, expected lines {rejected} too_late")
    n = 0
    for i, ev in enumerate(late_events):
        if i in rejected or i not in answers:
            continue
        a = answers[i]
        if i == 6:
            expect(a.get("duplicate") is True, f"{name}: retry of e2: {a}")
            continue
        n += 1
        expect(a["features"]["n_all"] == n, f"{name}: event {i}: {a}")
    with Server(yaml) as server:
        for i, ev in enumerate(late_events):
            status, answer = post(server, ev)
            if i in rejected:
                expect(status == 422 and answer.get("reason") == "too_late",
                       f"{name}: live {ev}: {status} {answer}")
            else:
                expect(status == 200 and answer == answers.get(i),
                       f"{name}: live {ev}: {status} {answer} vs batch "
                       f"{answers.get(i)}")
print("too_late: batch rejects, serve 422, late: apply applies", flush=True)

# ---- 4. future ----
N = now - 3 * DAY  # batch's pinned clock
future_events = [
    event("f1", "Y", N + DAY, "1"),                      # exactly max_future
    event("f2", "Y", N + DAY + 1, "1"),                  # 1 ms beyond
    {"txn": "f3", "card": "Y", "ts": "9999-01-01T00:00:00Z", "amount": "1"},
    {"txn": "f4", "card": "Y", "ts": "253370764800", "amount": "1"},
    {"txn": "f5", "card": "Y", "ts": "10000-01-01T00:00:00Z", "amount": "1"},
    {"txn": "f6", "card": "Y", "ts": "1e15", "amount": "1"},
    event("f7", "Y", N, "1"),
]
yaml = pipeline("future.yaml")
answers, rejects = batch_answers(yaml, future_events, N, "future")
reasons = {i: r.get("reason") for i, r in rejects.items()}
expect(reasons == {1: "future", 2: "future", 3: "future", 4: "invalid",
                   5: "invalid"},
       f"future: batch rejects {reasons}")
expect(answers.get(6, {}).get("features", {}).get("n_all") == 2,
       f"future: the events after a rejected one: {answers.get(6)}")
answers, rejects = batch_answers(yaml, future_events, now, "future_now")
reasons = {i: r.get("reason") for i, r in rejects.items()}
expect(reasons == {2: "future", 3: "future", 4: "invalid", 5: "invalid",
                   6: "too_late"},
       f"future: with today's clock (f2 is not future, and f7 is then more "
       f"than dedupe before it): {reasons}")
short = pipeline("future_1h.yaml", "state: {lateness: 10m, max_future: 1h}")
with Server(short) as server:
    ok = post(server, event("g1", "Z", int(time.time() * 1000) + 10 * MIN, "1"))
    ahead = post(server, event("g2", "Z", int(time.time() * 1000) + 3 * H, "1"))
    far = post(server, {"txn": "g3", "card": "Z", "ts": "253370764800",
                        "amount": "1"})
    expect(ok[0] == 200, f"future: 10 minutes ahead is accepted live: {ok}")
    expect(ahead[0] == 422 and ahead[1].get("reason") == "future",
           f"future: 3 h ahead with max_future 1h: {ahead}")
    expect(far[0] == 422 and far[1].get("reason") == "future",
           f"future: 9999 as epoch seconds: {far}")
print("future: rejected in batch (--now) and live, boundary accepted", flush=True)

# ---- 5. point-in-time live lookups ----
LOOKUP_YAML = counts_yaml(
    "tr", "state: {lateness: 10m, dedupe: 400d}",
    features="  - {name: prof_sum, lookup: prof.sum_all, default: -1}\n",
    extra="store: tables\nmaterialize:\n  - {table: prof, columns: [sum_all], keep: 3}\n")
yaml = write(os.path.join(out, "lookup.yaml"), LOOKUP_YAML)
A = now - 100 * DAY
B = A + DAY
history = [event("h%d" % i, "L", A - DAY + i * MIN, str(i + 1)) for i in range(5)]
for version, as_of, n in ((1, A, 3), (2, B, 5)):
    src = write_csv(os.path.join(out, "hist%d.csv" % version), COLUMNS,
                    history[:n])
    r = tandem("batch", yaml, "--in", src, "--out",
               os.path.join(out, "hist%d.jsonl" % version), "--materialize",
               "prof", "--as-of", fmt_time(as_of), "--now", fmt_time(now))
    expect(r.returncode == 0, f"materialize {version}: {r.stderr}")
# Per event: its time, and the version and value an as_of <= t rule gives
# (version 1 holds L's sum of 3 events, 6; version 2 of 5 events, 15).
probes = [(B + H, 2, 15.0), (A - 1, None, -1.0), (A, 1, 6.0), (A + H, 1, 6.0),
          (B - 1, 1, 6.0), (B, 2, 15.0)]
lookup_events = [event("p%d" % i, "L", t, "1") for i, (t, _, _) in enumerate(probes)]
answers, rejects = batch_answers(yaml, lookup_events, now, "lookup")
expect(not rejects, f"lookup: batch rejects {rejects}")
with Server(yaml) as server:
    for i, (ev, (t, version, value)) in enumerate(zip(lookup_events, probes)):
        status, live = post(server, ev)
        used = live.get("tables", {}).get("prof", {})
        expect(status == 200 and used.get("version") == version and
               live.get("features", {}).get("prof_sum") == value,
               f"lookup: event at {ev['ts']} live reads {used} "
               f"{live.get('features')}, expected version {version} ({value})")
        expect(used.get("staleness_s") is None or used["staleness_s"] >= 0,
               f"lookup: negative staleness {used}")
        expect(live == answers.get(i), f"lookup: live {live} vs batch "
               f"{answers.get(i)}")
print("point in time: live reads the version batch reads at every boundary",
      flush=True)

# ---- 6. a state directory written by the previous release ----
fixture = os.path.join(FIXTURES, "state", "v2_dir")
old_dir = os.path.join(out, "v2_dir")
shutil.copytree(fixture, old_dir)
os.makedirs(os.path.join(old_dir, "st"))
shutil.move(os.path.join(old_dir, "data.mdb"), os.path.join(old_dir, "st"))
yaml = os.path.join(old_dir, "p.yaml")
history = list(csv_rows(os.path.join(old_dir, "history.csv")))
T0 = 1_767_225_600_000 + 60 * 600_000  # after the history's last event
more = [event("m%d" % i, "k%d" % (i % 7), T0 + i * 60_000, "%d.5" % i)
        for i in range(20)] + [dict(history[-1]), dict(history[3])]
live = []
with Server(yaml, "--state", os.path.join(old_dir, "st")) as server:
    for ev in more:
        r = curl(server, "POST", "/v1/pipelines/fx/events?explain=features", ev)
        expect(r.status == 200, f"v2 state: {ev}: {r}")
        live.append(json.loads(r.body) if r.status == 200 else None)
src = write_csv(os.path.join(out, "v2_all.csv"), COLUMNS, history + more)
dst = os.path.join(out, "v2_all.jsonl")
r = tandem("batch", yaml, "--in", src, "--out", dst, "--explain")
expect(r.returncode == 0, f"v2 state: batch: {r.stderr}")
want = read_jsonl(dst)[len(history):] if r.returncode == 0 else []
expect(live == want, f"v2 state: live after the old state differs from batch "
       f"over history and new events: {live[:2]} vs {want[:2]}")
expect(live[-1].get("duplicate") is True and live[-2].get("duplicate") is True,
       f"v2 state: the history's ids are remembered: {live[-2:]}")
counts = {}
for ev in history + more[:20]:
    counts[ev["card"]] = counts.get(ev["card"], 0) + 1
expect(live[19]["features"]["n_all"] == counts["k5"],
       f"v2 state: k5's count continues from the history: {live[19]}")
print("a state directory of the previous release opens and continues exactly",
      flush=True)

finish("test_time_rules")
