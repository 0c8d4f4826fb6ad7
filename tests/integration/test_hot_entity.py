"""A hot entity: one card with tens of thousands of events inside its
windows (late events within and beyond the lateness, runs of events at
the same millisecond, missing amounts and merchants, a few other cards
between them), through `tandem batch --features-only` on 1 and 2 threads,
against an independent reference written here from docs/windows.md.

The reference keeps each entity's applied events sorted by (time,
arrival) and takes every window as a slice of that list: the events in
(t - w, t] that are still retained (time > M - R, R the longest window
plus the lateness). Sums and means are math.fsum (correctly rounded, as
docs/windows.md fixes); stddev is the square root of the exactly
computed sum of squared deviations from that mean (Python integers),
rounded once, over n. Values are compared bit for bit.

tandem keeps exact windows as running states that events enter and
leave (issue 22): this checks that those states give exactly the
windows' values, on a stream shaped to break them (late events inserted
in the middle of the windows, evictions out of arrival order, a queue
for min/max/last that must be rebuilt, distinct values leaving while
others with the same bytes remain)."""
import bisect
import json
import math
import random
from fractions import Fraction

from common import expect, finish, tmpdir
from pipeline_util import fmt_time, read_csv, tandem, write, write_csv

SEED = 22
EVENTS = 20000
S, M = 1000, 60000
LATENESS = 10 * M
# name, kind, window (ms), where (a predicate on the amount, or None)
AGGS = [
    ("n_30s", "count", 30 * S, None),
    ("big_5m", "count", 5 * M, lambda x: x is not None and x > 100),
    ("sum_5m", "sum", 5 * M, None),
    ("sum_30m", "sum", 30 * M, None),
    ("mean_30m", "mean", 30 * M, None),
    ("std_5m", "stddev", 5 * M, None),
    ("min_30m", "min", 30 * M, None),
    ("max_5m", "max", 5 * M, None),
    ("last_30s", "last", 30 * S, None),
    ("merchants_30m", "distinct", 30 * M, None),
]
RETENTION = 30 * M + LATENESS
SCALE = 2 ** 70  # every amount times this is an integer (|amount| >= 2^-17)

out = tmpdir()


def duration(ms):
    return "%ds" % (ms // 1000)


def pipeline_yaml():
    lines = ["name: hot", "entity: card", "time: ts",
             "fields: {card: string, ts: time, amount: number, merchant: string}",
             "features:"]
    for name, kind, window, where in AGGS:
        agg = kind if kind in ("count",) else (
            "distinct(merchant)" if kind == "distinct" else kind + "(amount)")
        item = "  - {name: %s, agg: %s, window: %s" % (name, agg, duration(window))
        if where is not None:
            item += ', where: "amount > 100"'
        lines.append(item + "}")
    lines.append("model: {path: model.json}")
    lines.append("state: {lateness: %s}" % duration(LATENESS))
    return "\n".join(lines) + "\n"


def amount(rng):
    z = rng.random()
    if z < 0.08:
        return None
    if z < 0.15:
        return rng.choice([0.1, 0.2, 0.3, 1e4, 9999.99, 0.01, 100.0, 7.5])
    if z < 0.25:
        return -rng.uniform(0.01, 500)  # refunds: sums cancel
    return rng.uniform(0.01, 10000)     # a full 53-bit mantissa


def generate():
    rng = random.Random(SEED)
    t = 1_767_225_600_000
    events = []
    for i in range(EVENTS):
        z = rng.random()
        if z < 0.15:
            time = t                                 # same millisecond
        elif z < 0.22:
            time = t - rng.randrange(0, 2 * M)       # late, within lateness
        elif z < 0.235:
            time = t - rng.randrange(LATENESS, 50 * M)  # late beyond it
        else:
            t += rng.randrange(0, 600)
            time = t
        card = "hot" if rng.random() < 0.95 else "c%d" % rng.randrange(5)
        merchant = None if rng.random() < 0.05 else "m%d" % int(
            rng.paretovariate(1.2) * 3)
        events.append({"card": card, "t": time, "amount": amount(rng),
                       "merchant": merchant})
    return events


def rounded(fraction):
    try:
        return float(fraction)
    except OverflowError:
        return math.inf if fraction > 0 else -math.inf


class Entity:
    """An entity's applied events, sorted by (time, arrival), as parallel
    lists: all of them (for count and distinct), those with an amount
    (for the numeric aggregates) and those passing the where filter."""

    def __init__(self):
        self.keys, self.merchants = [], []
        self.value_keys, self.values, self.ints, self.squares = [], [], [], []
        self.big_keys = []
        self.newest = None

    def apply(self, arrival, ev):
        key = (ev["t"], arrival)
        at = bisect.bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.merchants.insert(at, ev["merchant"])
        x = ev["amount"]
        if x is not None:
            at = bisect.bisect_right(self.value_keys, key)
            self.value_keys.insert(at, key)
            self.values.insert(at, x)
            a = int(x * SCALE)
            self.ints.insert(at, a)
            self.squares.insert(at, a * a)
            if x > 100:
                bisect.insort(self.big_keys, key)
        self.newest = ev["t"] if self.newest is None else max(self.newest, ev["t"])


def reference(events):
    entities = {}
    want = []
    for arrival, ev in enumerate(events):
        e = entities.setdefault(ev["card"], Entity())
        e.apply(arrival, ev)
        t = ev["t"]
        top = (t, math.inf)
        row = {}
        if t <= e.newest - RETENTION:
            # Older than everything retained: its windows hold it alone.
            alone = Entity()
            alone.apply(arrival, ev)
            alone.newest = t
            e = alone
        for name, kind, window, where in AGGS:
            bottom = (max(t - window, e.newest - RETENTION), math.inf)
            if kind == "count":
                keys = e.big_keys if where is not None else e.keys
                v = float(bisect.bisect_right(keys, top)
                          - bisect.bisect_right(keys, bottom))
                row[name] = v
                continue
            if kind == "distinct":
                lo = bisect.bisect_right(e.keys, bottom)
                hi = bisect.bisect_right(e.keys, top)
                v = float(len(set(e.merchants[lo:hi]) - {None}))
                row[name] = v
                continue
            lo = bisect.bisect_right(e.value_keys, bottom)
            hi = bisect.bisect_right(e.value_keys, top)
            xs = e.values[lo:hi]
            n = len(xs)
            if kind == "sum":
                v = math.fsum(xs) + 0.0
            elif not xs:
                v = math.nan
            elif kind == "mean":
                v = math.fsum(xs) / n
            elif kind == "stddev":
                m = Fraction(math.fsum(xs) / n)
                # sum (x - m)^2 = sum x^2 - 2 m sum x + n m^2, exactly
                deviations = (Fraction(sum(e.squares[lo:hi]), SCALE * SCALE)
                              - 2 * m * Fraction(sum(e.ints[lo:hi]), SCALE)
                              + n * m * m)
                v = math.sqrt(rounded(deviations) / n)
            elif kind == "min":
                v = min(xs)
            elif kind == "max":
                v = max(xs)
            elif kind == "last":
                v = xs[-1]
            row[name] = v
        want.append(row)
    return want


def same(got_text, want):
    if math.isnan(want):
        return got_text in ("", "NaN", "nan")
    try:
        got = float(got_text)
    except ValueError:
        return False
    return got == want and math.copysign(1, got) == math.copysign(1, want)


events = generate()
for ev in events:
    a = ev["amount"]
    # the reference's integer form of an amount must be exact
    assert a is None or a == 0 or Fraction(a) * SCALE == int(a * SCALE)
pipeline = write(out + "/hot.yaml", pipeline_yaml())
write(out + "/model.json", json.dumps({
    "format": "tandem-linear", "link": "identity", "intercept": 0.0,
    "coefficients": {name: 1.0 for name, _, _, _ in AGGS},
    "default_missing": 0.0}))
rows = [{"card": ev["card"], "ts": fmt_time(ev["t"]),
         "amount": None if ev["amount"] is None else repr(ev["amount"]),
         "merchant": ev["merchant"]} for ev in events]
path = write_csv(out + "/events.csv", ["card", "ts", "amount", "merchant"], rows)
want = reference(events)
names = [a[0] for a in AGGS]
hot_rows = sum(1 for ev in events if ev["card"] == "hot")
expect(hot_rows > 18000, "the hot card has %d events" % hot_rows)
outputs = []
for threads in (1, 2):
    got_path = out + "/features%d.csv" % threads
    r = tandem("batch", pipeline, "--in", path, "--out", got_path,
               "--features-only", "--threads", threads,
               "--now", "2027-01-01T00:00:00Z")
    expect(r.returncode == 0, "batch failed: " + r.stderr[-2000:])
    got = read_csv(got_path)
    expect(len(got) == len(events), "%d rows for %d events" % (len(got), len(events)))
    diffs = 0
    for i, (g, w) in enumerate(zip(got, want)):
        for name in names:
            if not same(g[name], w[name]):
                diffs += 1
                if diffs <= 5:
                    print("event %d (%s, t=%d): %s = %s, reference %r"
                          % (i, events[i]["card"], events[i]["t"], name,
                             g[name], w[name]))
    expect(diffs == 0, "threads %d: %d values differ from the reference"
           % (threads, diffs))
    print("threads %d: %d events (%d of the hot card) x %d features, "
          "%d differences" % (threads, len(events), hot_rows, len(names), diffs))
    with open(got_path, "rb") as f:
        outputs.append(f.read())
expect(outputs[0] == outputs[1], "1 and 2 threads wrote different bytes")

# ---- remembered ids on the hot card ----
# The same card with event ids (state.dedupe 5 minutes): new ids, ids sent
# again within the horizon (duplicates: the first answer), again beyond it
# (applied anew, or too_late when the event itself is past the horizon),
# late events within and beyond the horizon. Thousands of ids are
# remembered at once, so they are found through the index and forgotten
# as a prefix or, after a late one, by compaction.
DEDUPE, ID_WINDOW, ID_LATENESS = 5 * M, 10 * M, 1 * M


def id_events():
    rng = random.Random(SEED + 1)
    t = 1_767_225_600_000
    events, sent = [], []
    for i in range(15000):
        z = rng.random()
        time = t
        if z < 0.08:
            time = t - rng.randrange(0, 8 * M)          # late, maybe too late
        elif z < 0.2:
            pass                                        # same millisecond
        else:
            t += rng.randrange(0, 200)
            time = t
        r = rng.random()
        if r < 0.1 and sent:
            txn = sent[-1 - rng.randrange(min(len(sent), 3000))]  # resent
        else:
            txn = "x%d" % i
            sent.append(txn)
        events.append({"txn": txn, "t": time,
                       "amount": rng.choice([1.0, 2.5, 0.1, 7.0, 10.0])})
    return events


def id_reference(events):
    """Per event: ("too_late", None) or (duplicate, n_10m, sum_10m)."""
    ids, keys, amounts, newest, out_rows = {}, [], [], None, []
    for arrival, ev in enumerate(events):
        t = ev["t"]
        seen = ids.get(ev["txn"])
        if seen is not None and newest - seen[0] <= DEDUPE:
            out_rows.append((1,) + seen[1])
            continue
        if newest is not None and newest - t > DEDUPE:
            out_rows.append(("too_late", None))
            continue
        at = bisect.bisect_right(keys, (t, arrival))
        keys.insert(at, (t, arrival))
        amounts.insert(at, ev["amount"])
        newest = t if newest is None else max(newest, t)
        retained = newest - (ID_WINDOW + ID_LATENESS)
        lo = bisect.bisect_right(keys, (max(t - ID_WINDOW, retained), math.inf))
        hi = bisect.bisect_right(keys, (t, math.inf))
        if t <= retained:
            features = (1.0, ev["amount"])
        else:
            features = (float(hi - lo), math.fsum(amounts[lo:hi]) + 0.0)
        ids[ev["txn"]] = (t, features)
        out_rows.append((0,) + features)
    return out_rows


id_evs = id_events()
id_pipeline = write(out + "/ids.yaml", "\n".join([
    "name: ids", "entity: card", "time: ts", "id: txn",
    "fields: {txn: string, card: string, ts: time, amount: number}",
    "features:",
    "  - {name: n_10m, agg: count, window: 10m}",
    "  - {name: sum_10m, agg: sum(amount), window: 10m}",
    "model: {path: ids_model.json}",
    "state: {lateness: 1m, dedupe: 5m}", ""]))
write(out + "/ids_model.json", json.dumps({
    "format": "tandem-linear", "link": "identity", "intercept": 0.0,
    "coefficients": {"n_10m": 1.0, "sum_10m": 1.0}, "default_missing": 0.0}))
id_path = write_csv(out + "/ids.csv", ["txn", "card", "ts", "amount"],
                    [{"txn": ev["txn"], "card": "hot", "ts": fmt_time(ev["t"]),
                      "amount": repr(ev["amount"])} for ev in id_evs])
id_want = id_reference(id_evs)
kept = [(ev, w) for ev, w in zip(id_evs, id_want) if w[0] != "too_late"]
too_late = len(id_evs) - len(kept)
duplicates = sum(1 for _, w in kept if w[0] == 1)
expect(too_late > 100 and duplicates > 100,
       "the id stream has %d too_late and %d duplicates" % (too_late, duplicates))
r = tandem("batch", id_pipeline, "--in", id_path, "--out", out + "/ids_out.csv",
           "--features-only", "--now", "2027-01-01T00:00:00Z")
expect(r.returncode == 0, "batch (ids) failed: " + r.stderr[-2000:])
got = read_csv(out + "/ids_out.csv")
expect(len(got) == len(kept), "ids: %d rows, the reference keeps %d of %d"
       % (len(got), len(kept), len(id_evs)))
diffs = 0
for i, (g, (ev, w)) in enumerate(zip(got, kept)):
    ok = (g["txn"] == ev["txn"] and int(g["duplicate"]) == w[0]
          and same(g["n_10m"], w[1]) and same(g["sum_10m"], w[2]))
    if not ok:
        diffs += 1
        if diffs <= 5:
            print("ids row %d: got %s, reference %s %r" % (i, dict(g), ev["txn"], w))
expect(diffs == 0, "ids: %d rows differ from the reference" % diffs)
print("ids: %d events, %d duplicates, %d too_late, %d differences"
      % (len(id_evs), duplicates, too_late, diffs))

finish("test_hot_entity")
