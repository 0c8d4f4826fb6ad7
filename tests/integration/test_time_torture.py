"""Event time at the edges, all at once (issue 16): a seeded stream
generator written for this test, an independent reference of the rules in
docs/windows.md ("Event time") written here, and every runner checked
against it.

The stream: many cards; events in order, on the same timestamp as an
earlier one, late within the lateness, late beyond it (within the dedupe
horizon), older than the dedupe horizon; duplicate ids sent again at once
and much later; an accepted far-future event (23 h ahead of the clock) on
some cards; events beyond state.max_future; bursts of new cards with one
event each; malformed events (a bad number, a bad time, a year past 9999,
no card, no time). After the stream, acknowledged events are sent again.

The reference (Entity below) keeps, per card, only that card's events:
its newest time M, the ids it remembers, its count, sum and the log the
1 h exact window reads (retention: 1 h + lateness), with the TTL reset.
It decides each event's outcome: invalid, future, too_late, duplicate
(with the first answer's features) or new (with its features).

Checked against it, with the same answer for every event:
- `tandem batch` with 1, 2 and 3 threads (the same bytes), rejects with
  their reason words;
- `tandem serve` (no state) with the events sent in order, in requests of
  1 to 8 events, and `tandem replay` of them against a fresh server;
- `tandem serve --state` SIGKILLed at 3 random points of the stream and
  restarted, paced for a while so that idle cards leave memory and are
  loaded back from LMDB; at the end 300 acknowledged events are sent
  again and answer as their duplicates (or too_late once their card moved
  more than dedupe past them, as the reference says);
- `tandem stream` on librdkafka's mock cluster (kcat produces the events
  keyed by card and reads the results): per card, its outputs are batch's
  answers in order (without the duplicate flag, as the stream writes
  them), and each rejected event is a dead letter whose error starts with
  its reason (too_late:, future:);
- isolation: each of 8 sampled cards' events run alone, and all events
  ordered card by card, answer exactly as in the mixed stream.

Run time is a minute or so; STRESS_SEED picks another stream.
"""
import json
import os
import random
import signal
import subprocess
import time

from common import TANDEM, expect, fail, finish, tmpdir
from kafka_util import MockCluster
from pipeline_util import (COUNTS_COLUMNS, COUNTS_FEATURES, counts_yaml,
                           fmt_time, make_model, read_jsonl, tandem, write,
                           write_csv, write_jsonl)
from serve_util import Server, curl

S, MIN, H, DAY = 1000, 60_000, 3_600_000, 86_400_000
LATENESS, DEDUPE, TTL, MAX_FUTURE = 10 * MIN, DAY, 30 * DAY, DAY
RETENTION = H + LATENESS  # the 1 h exact window's log, plus lateness
FEATURES, COLUMNS = COUNTS_FEATURES, COUNTS_COLUMNS
YAML = counts_yaml("tt", "state: {lateness: 10m, dedupe: 24h, ttl: 30d, max_future: 1d}")
SEED = int(os.environ.get("STRESS_SEED", "16"))

out = tmpdir()
make_model(os.path.join(out, "model.json"), FEATURES, seed=7)
pipeline = write(os.path.join(out, "tt.yaml"), YAML)
CLOCK = int(time.time() * 1000)  # batch's --now; serve's clock is later


# ---- the stream generator ----

def amount_text(rng):
    return rng.choice(["%.2f" % rng.uniform(0, 500), str(rng.randrange(1000)),
                       "0.1", "-0", "1e2", "3.3333333333333335", "0"])


def generate(seed, n):
    rng = random.Random(seed)
    cards = ["c%03d" % i for i in range(60)]
    far_cards = cards[50:]  # the cards that may get a far-future event
    stream_t = CLOCK - 40 * DAY
    events, times = [], {}
    kinds = {}

    def add(ev, kind):
        events.append(ev)
        kinds[kind] = kinds.get(kind, 0) + 1

    i = 0
    while len(events) < n:
        i += 1
        stream_t += rng.choice([0, 0, 1, 999, 30 * S, 5 * MIN, 17 * MIN, H])
        card = rng.choice(cards)
        t, kind = stream_t, "in order"
        r = rng.random()
        if r < 0.06 and times.get(card):
            t, kind = rng.choice(times[card][-5:]), "same time"
        elif r < 0.14:
            t, kind = stream_t - rng.randint(1, LATENESS), "late within lateness"
        elif r < 0.19:
            t, kind = stream_t - rng.randint(LATENESS + 1, 20 * H), "late beyond lateness"
        elif r < 0.22:
            t, kind = stream_t - rng.randint(25 * H, 5 * DAY), "older than dedupe"
        elif r < 0.26 and events:
            add(dict(events[-1]), "duplicate at once")
            continue
        elif r < 0.31 and events:
            add(dict(rng.choice(events)), "duplicate later")
            continue
        elif r < 0.315:
            card, t, kind = rng.choice(far_cards), CLOCK + 23 * H, "far future, accepted"
        elif r < 0.325:
            t, kind = CLOCK + MAX_FUTURE + H, "beyond max_future"
        elif r < 0.355:
            bad = rng.randrange(5)
            ev = {"txn": "x%d" % i, "card": card, "ts": fmt_time(stream_t),
                  "amount": "12,5x"}
            if bad == 1:
                ev["amount"], ev["ts"] = "1", "yesterday"
            elif bad == 2:
                ev["amount"], ev["ts"] = "1", "10000-01-01T00:00:00Z"
            elif bad == 3:
                ev["amount"], ev["card"] = "1", None
            elif bad == 4:
                ev["amount"], ev["ts"] = "1", None
            add(ev, "malformed")
            continue
        elif r < 0.37:
            for j in range(30):
                add({"txn": "b%d_%d" % (i, j), "card": "b%d_%d" % (i, j),
                     "ts": fmt_time(stream_t), "amount": amount_text(rng)},
                    "burst of new cards")
            continue
        times.setdefault(card, []).append(t)
        add({"txn": "e%d" % i, "card": card, "ts": fmt_time(t),
             "amount": amount_text(rng)}, kind)
    return events, kinds


# ---- the reference ----

def parse_ms(text):
    """RFC 3339 as fmt_time writes it (the generator's only form)."""
    import datetime
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    d = d.replace(tzinfo=datetime.timezone.utc)
    return int(round(d.timestamp() * 1000))


class Entity:
    def __init__(self):
        self.ids = {}  # id -> (time first seen, features)
        self.M = None
        self.reset()

    def reset(self):
        self.log = []  # times of the events applied since the reset
        self.n = 0
        self.total = 0.0


def reference(events, clock):
    """(outcome, features or None) per event; one card's outcome reads
    only that card's entity."""
    entities, results = {}, []
    for ev in events:
        try:
            amount = float(ev["amount"]) + 0.0
            t = parse_ms(ev["ts"])
            if not ev.get("card"):
                raise ValueError
        except (TypeError, ValueError):
            results.append(("invalid", None))
            continue
        if t - clock > MAX_FUTURE:
            results.append(("future", None))
            continue
        k = entities.setdefault(ev["card"], Entity())
        seen = k.ids.get(ev["txn"])
        if seen is not None and k.M - seen[0] <= DEDUPE:
            results.append(("duplicate", seen[1]))
            continue
        if k.M is not None and k.M - t > DEDUPE:
            results.append(("too_late", None))
            continue
        if k.M is not None and t - k.M > TTL:
            k.reset()
            k.M = None
        k.M = t if k.M is None else max(k.M, t)
        visible = [j for j in k.log if j > k.M - RETENTION]
        n_1h = 1 + sum(1 for j in visible if t - H < j <= t)
        k.log = visible + [t]
        k.n += 1
        k.total += amount
        f = {"n_all": k.n, "sum_all": k.total, "n_1h": n_1h}
        k.ids[ev["txn"]] = (t, f)
        results.append(("new", f))
    return results


# ---- runners ----

def run_batch(name, events, threads):
    """Per event: ("answer", dict) or ("rejected", reject line)."""
    src = write_csv(os.path.join(out, name + ".csv"), COLUMNS, events)
    dst = os.path.join(out, "%s.t%d.jsonl" % (name, threads))
    r = tandem("batch", pipeline, "--in", src, "--out", dst, "--explain",
               "--threads", threads, "--now", fmt_time(CLOCK))
    if not expect(r.returncode == 0, f"{name}: batch failed: {r.stderr}"):
        return None, None
    rejects = {}
    if os.path.exists(dst + ".rejects.jsonl"):
        for rej in read_jsonl(dst + ".rejects.jsonl"):
            rejects[rej["line"] - 2] = rej
    lines = iter(read_jsonl(dst))
    results = [("rejected", rejects[i]) if i in rejects else ("answer", next(lines))
               for i in range(len(events))]
    raw = open(dst, "rb").read() + open(dst + ".rejects.jsonl", "rb").read() \
        if rejects else open(dst, "rb").read()
    return results, raw


def live_event(ev):
    return {c: ev[c] for c in COLUMNS if ev.get(c) is not None}


def check_against_reference(name, results, expected):
    bad = 0
    for i, ((how, got), (outcome, want)) in enumerate(zip(results, expected)):
        ok = True
        if outcome in ("invalid", "future", "too_late"):
            ok = how == "rejected" and got.get("reason") == outcome
        elif how != "answer":
            ok = False
        else:
            ok = (got.get("duplicate", False) == (outcome == "duplicate") and
                  got.get("features") == want)
        if not ok:
            bad += 1
            if bad <= 5:
                fail(f"{name}: event {i}: {how} {got}, reference {outcome} {want}")
    expect(bad == 0, f"{name}: {bad} events differ from the reference")
    return bad


def same_answers(name, got, want, indices=None):
    """got and want are lists of (how, value) for the same events."""
    bad = 0
    for i, (g, w) in enumerate(zip(got, want)):
        same = g[0] == w[0] and (g[1] == w[1] if g[0] == "answer" else
                                 g[1].get("reason") == w[1].get("reason"))
        if not same:
            bad += 1
            if bad <= 5:
                fail(f"{name}: event {indices[i] if indices else i}: {g} vs {w}")
    expect(bad == 0 and len(got) == len(want),
           f"{name}: {bad} differences, {len(got)} answers for {len(want)}")


def post_events(server, evs):
    """One request of several events; per event ("answer", dict) or
    ("rejected", {"reason": ...}) (a 400 entry without one is invalid)."""
    r = curl(server, "POST", "/v1/pipelines/tt/events?explain=features",
             [live_event(e) for e in evs])
    if r.status != 200:
        return None
    res = []
    for a in json.loads(r.body):
        if "error" in a:
            res.append(("rejected", {"reason": a.get("reason", "invalid")}))
        else:
            res.append(("answer", a))
    return res


def entities_in_memory(server):
    for line in curl(server, "GET", "/metrics").body.splitlines():
        if line.startswith("tandem_pipeline_entities{"):
            return int(float(line.split()[-1]))
    return -1


def requests_of(events, rng):
    at = 0
    while at < len(events):
        n = rng.randint(1, 8)
        yield at, events[at:at + n]
        at += n


# ---- the run ----

main, kinds = generate(SEED, 4000)
print("stream:", ", ".join("%s %d" % kv for kv in sorted(kinds.items())), flush=True)
expected_main = reference(main, CLOCK)
acked = [ev for ev, (how, _) in zip(main, expected_main) if how == "new"]
resends = [dict(ev) for ev in random.Random(SEED + 1).sample(acked, 300)]
events = main + resends
expected = reference(events, CLOCK)
outcomes = {}
for how, _ in expected:
    outcomes[how] = outcomes.get(how, 0) + 1
print("reference outcomes:", outcomes, flush=True)
resend_outcomes = [how for how, _ in expected[len(main):]]
expect(resend_outcomes.count("duplicate") > 100 and
       resend_outcomes.count("too_late") > 10 and
       set(resend_outcomes) <= {"duplicate", "too_late"},
       f"acknowledged events sent again: {resend_outcomes.count('duplicate')} "
       f"duplicates, outcomes {set(resend_outcomes)}")
for how in ("invalid", "future", "too_late", "duplicate", "new"):
    expect(outcomes.get(how, 0) >= 10, f"the stream has few {how}: {outcomes}")

# batch with 1, 2 and 3 threads
batch, raw1 = run_batch("all", events, 1)
if batch is not None:
    check_against_reference("batch (1 thread)", batch, expected)
    for threads in (2, 3):
        _, raw = run_batch("all", events, threads)
        expect(raw == raw1, f"batch: {threads} threads write other bytes than 1")
    print("batch: 1, 2 and 3 threads equal the reference", flush=True)

# isolation: cards alone, and all events ordered card by card
rng = random.Random(SEED + 2)
by_card = {}
for i, ev in enumerate(events):
    if ev.get("card"):
        by_card.setdefault(ev["card"], []).append(i)
for card in rng.sample(sorted(c for c in by_card if len(by_card[c]) > 20), 8):
    idx = by_card[card]
    alone, _ = run_batch("alone_" + card, [events[i] for i in idx], 1)
    if alone is not None and batch is not None:
        same_answers(f"isolation: {card} alone", alone, [batch[i] for i in idx], idx)
order = [i for card in sorted(by_card) for i in by_card[card]]
grouped, _ = run_batch("grouped", [events[i] for i in order], 2)
if grouped is not None and batch is not None:
    same_answers("isolation: card by card", grouped, [batch[i] for i in order], order)
print("isolation: 8 cards alone and the card-by-card order answer alike",
      flush=True)

# serve, in order
if batch is not None:
    live = []
    with Server(pipeline) as server:
        for at, evs in requests_of(events, random.Random(SEED + 3)):
            res = post_events(server, evs)
            if not expect(res is not None, f"serve: request at {at} failed"):
                break
            live += res
    same_answers("serve in order", live, batch)
    print(f"serve: {len(live)} events in order equal batch", flush=True)

# tandem replay: its batch side against a fresh server, rejections included
with Server(pipeline) as server:
    r = tandem("replay", pipeline, "--in", os.path.join(out, "all.csv"),
               "--url", server.url)
    expect(r.returncode == 0, f"replay: {r.stdout[-1500:]} {r.stderr[-500:]}")
print("replay: 0 differences", flush=True)

# serve --state, SIGKILLed at 3 random points and restarted
if batch is not None:
    state = os.path.join(out, "state")
    reqs = list(requests_of(events, random.Random(SEED + 4)))
    main_reqs = [k for k, (at, _) in enumerate(reqs) if at < len(main)]
    kills = sorted(random.Random(SEED + 5).sample(main_reqs[1:], 3))
    # From a fifth of the way in, requests are paced until at least 100
    # cards have been idle long enough to leave memory (a few snapshot
    # rounds), so that the rest of the stream loads them back from LMDB.
    pace_from, most, fewest = len(main_reqs) // 5, 0, None
    live, server = [], Server(pipeline, "--state", state)
    try:
        for k, (at, evs) in enumerate(reqs):
            if kills and k == kills[0]:
                kills.pop(0)
                server.proc.send_signal(signal.SIGKILL)
                server.proc.wait()
                server.log.close()
                server = Server(pipeline, "--state", state)
            res = post_events(server, evs)
            if not expect(res is not None, f"serve --state: request at {at} failed"):
                break
            live += res
            if k >= pace_from and fewest is None:
                n = entities_in_memory(server)
                most = max(most, n)
                if n <= most - 100:
                    fewest = n
                else:
                    time.sleep(0.1)
    finally:
        rc = server.stop()
        expect(rc == 0, f"serve --state exited {rc} on SIGTERM")
    expect(fewest is not None, f"serve --state: idle cards never left memory "
           f"({most} in memory)")
    print(f"serve --state: {most} cards in memory, then {fewest} (idle ones "
          "moved out; their later events load them from LMDB)", flush=True)
    same_answers("serve --state with 3 kills", live, batch)
    print(f"serve --state: {len(live)} events across 3 kills equal batch; "
          f"{resend_outcomes.count('duplicate')} acknowledged events came back "
          "as duplicates", flush=True)

# tandem stream: per card, batch's answers in order; rejections as dead letters
if batch is not None:
    plain = os.path.join(out, "plain.jsonl")
    r = tandem("batch", pipeline, "--in", os.path.join(out, "all.csv"), "--out",
               plain, "--now", fmt_time(CLOCK))
    expect(r.returncode == 0, f"batch without --explain: {r.stderr}")
    lines = iter(open(plain).read().splitlines())
    flag = ',"duplicate":true}'
    want, reasons = {}, {}
    for ev, (how, value) in zip(events, batch):
        if how == "answer":
            line = next(lines)
            line = line[:-len(flag)] + "}" if line.endswith(flag) else line
            want.setdefault(ev["card"], []).append(line)
        else:
            reason = value.get("reason")
            reasons[reason] = reasons.get(reason, 0) + 1
    payloads = open(write_jsonl(os.path.join(out, "all.jsonl"), COLUMNS, events,
                                numbers=("amount",))).read().splitlines()
    with MockCluster(["tin:3", "tout:3", "tdlq:1"]) as cluster:
        cluster.produce("tin", [(ev.get("card") or "", p)
                                for ev, p in zip(events, payloads)])
        log = open(os.path.join(out, "stream.log"), "w")
        stream = subprocess.Popen(
            [TANDEM, "stream", pipeline, "--brokers", cluster.brokers,
             "--input", "tin", "--output", "tout", "--dead-letter", "tdlq",
             "--commit-interval-ms", "200"], stdout=log, stderr=log)
        deadline = time.time() + 120
        total = sum(len(v) for v in want.values())
        while time.time() < deadline and stream.poll() is None:
            outputs, letters = cluster.consume("tout"), cluster.consume("tdlq")
            if len(outputs) >= total and len(letters) >= len(events) - total:
                break
            time.sleep(0.5)
        stream.send_signal(signal.SIGTERM)
        expect(stream.wait(30) == 0, "stream: exit status on SIGTERM")
        outputs, letters = cluster.consume("tout"), cluster.consume("tdlq")
    got = {}
    for _, _, key, value in outputs:
        got.setdefault(key, []).append(value)
    differ = [card for card in want if got.get(card) != want[card]]
    expect(not differ and set(got) == set(want),
           f"stream: {len(differ)} cards' outputs differ from batch, first "
           f"{differ[:1]}: {got.get(differ[0]) if differ else None}")
    letter_reasons = {}
    for _, _, _, value in letters:
        error = json.loads(value)["error"]
        reason = error.split(":", 1)[0] if error.startswith(("too_late:", "future:")) \
            else "invalid"
        letter_reasons[reason] = letter_reasons.get(reason, 0) + 1
    expect(letter_reasons == reasons,
           f"stream: dead letters by reason {letter_reasons}, batch {reasons}")
    print(f"stream: {len(outputs)} outputs equal batch per card; dead letters "
          f"{letter_reasons}", flush=True)

finish("test_time_torture")
