"""The window semantics end to end, against an independent brute-force
implementation in Python of docs/windows.md: for random event streams
(several entities, late events within and beyond the lateness, repeated
timestamps, missing numbers and strings, repeated ids, TTL resets and the
max_events cap), every feature that `tandem batch --features-only` writes
equals the reference's value.

The reference recomputes every window from the whole list of events the
entity has applied; it shares no code or data structure with window.c.
Exact windows' sums are the exact sums (Python fractions) rounded once,
as docs/windows.md fixes; `window: all` folds in arrival order (Welford's
update for stddev). So values are compared exactly, bit for bit after parsing tandem's shortest round-trip
text, with no tolerance. Exact (not hopped) windows of every kind are
covered: count, sum, mean, min, max, stddev, last, distinct, since_last
(with and without a window), each with and without a `where` filter, and
`window: all`; aggregations of a derived feature; an expression of
aggregations."""
import json
import math
import os
import random
from fractions import Fraction

from common import expect, fail, finish, tmpdir
from pipeline_util import fmt_time, read_csv, tandem, write, write_csv, write_jsonl

NAN = float("nan")
out = tmpdir()

# name, kind, input, window (ms; 0 = all), where (a Python predicate over
# the event's values, mirroring the YAML text)
S, MIN, H = 1000, 60_000, 3_600_000
AGGS = [
    ("n_30s", "count", None, 30 * S, None),
    ("n_big_5m", "count", None, 5 * MIN, "amount > 50"),
    ("sum_1h", "sum", "amount", H, None),
    ("sum_f_10m", "sum", "amount", 10 * MIN, "flag == 1"),
    ("mean_1h", "mean", "amount", H, None),
    ("mean_f_5m", "mean", "amount", 5 * MIN, "merchant != 'm0'"),
    ("min_5m", "min", "amount", 5 * MIN, None),
    ("min_f_1h", "min", "amount", H, "flag == 1"),
    ("max_1h", "max", "amount", H, None),
    ("max_f_30s", "max", "amount", 30 * S, "amount < 100"),
    ("std_1h", "stddev", "amount", H, None),
    ("std_f_10m", "stddev", "amount", 10 * MIN, "flag == 1"),
    ("last_5m", "last", "amount", 5 * MIN, None),
    ("last_log_1h", "last", "log_amt", H, "flag == 0"),
    ("merchants_1h", "distinct", "merchant", H, None),
    ("merchants_f_30s", "distinct", "merchant", 30 * S, "amount < 100"),
    ("since", "since_last", None, 0, None),
    ("since_f_5m", "since_last", None, 5 * MIN, "flag == 1"),
    ("sum_log_10m", "sum", "log_amt", 10 * MIN, None),
    ("n_all", "count", None, 0, None),
    ("n_all_f", "count", None, 0, "amount > 50"),
    ("sum_all", "sum", "amount", 0, None),
    ("mean_all", "mean", "amount", 0, None),
    ("std_all", "stddev", "amount", 0, None),
    ("min_all", "min", "amount", 0, "flag == 1"),
    ("max_all", "max", "amount", 0, None),
    ("last_all", "last", "amount", 0, None),
]
WHERE = {
    None: lambda v: True,
    "amount > 50": lambda v: v["amount"] > 50,
    "amount < 100": lambda v: v["amount"] < 100,
    "flag == 1": lambda v: v["flag"] == 1,
    "flag == 0": lambda v: v["flag"] == 0,
    "merchant != 'm0'": lambda v: v["merchant"] is not None and v["merchant"] != "m0",
}
FEATURES = ["log_amt"] + [a[0] for a in AGGS] + ["ratio"]


def duration(ms):
    for unit, size in (("h", H), ("m", MIN), ("s", S)):
        if ms % size == 0:
            return "%d%s" % (ms // size, unit)
    return "%dms" % ms


def pipeline_yaml(state):
    lines = ["name: ref", "entity: card", "time: ts", "id: txn", "fields:",
             "  txn: string", "  card: string", "  ts: time", "  amount: number",
             "  merchant: string", "  flag: number", "features:",
             '  - {name: log_amt, expr: "log1p(amount)"}']
    for name, kind, inp, window, where in AGGS:
        agg = kind if inp is None else "%s(%s)" % (kind, inp)
        item = "  - {name: %s, agg: %s" % (name, agg)
        if window:
            item += ", window: %s" % duration(window)
        elif kind != "since_last":
            item += ", window: all"
        if where:
            item += ', where: "%s"' % where
        lines.append(item + "}")
    lines.append('  - {name: ratio, expr: "amount / max(mean_1h, 1)"}')
    lines.append("model: {path: unused.json}")
    lines.append("state:")
    lines += ["  %s: %s" % kv for kv in state.items()]
    return "\n".join(lines) + "\n"


# ---- the reference ----

def log1p(x):
    if math.isnan(x) or x < -1:
        return NAN
    if x == -1:
        return -math.inf
    return math.log1p(x)


def c_max(a, b):
    """The expression language's max: missing arguments skipped."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return b if b > a else a


def rounded(fraction):
    """A rational rounded to the nearest double, ties to even."""
    try:
        return float(fraction)
    except OverflowError:
        return math.inf if fraction > 0 else -math.inf


def exact_total(values):
    """The exact sum of VALUES rounded once (infinities apart)."""
    if math.inf in values and -math.inf in values:
        return NAN
    if math.inf in values or -math.inf in values:
        return math.inf if math.inf in values else -math.inf
    return rounded(sum(Fraction(x) for x in values)) + 0.0


def exact(kind, members, inp):
    """One exact window's value; MEMBERS in arrival order, the event last."""
    if kind == "count":
        return float(len(members))
    if kind == "distinct":
        return float(len({m[inp] for m in members if m[inp] is not None}))
    xs = [(m["t"], m[inp]) for m in members if not math.isnan(m[inp])]
    if kind == "sum":
        return exact_total([x for _, x in xs]) if xs else 0.0
    if not xs:
        return NAN
    if kind in ("mean", "stddev"):
        # docs/windows.md: the correctly rounded sum over n; stddev from the
        # correctly rounded sum of squared deviations from that mean.
        values = [x for _, x in xs]
        mean = exact_total(values) / len(values)
        if kind == "mean":
            return mean
        if not math.isfinite(mean):
            return NAN
        deviations = sum((Fraction(x) - Fraction(mean)) ** 2 for x in values)
        return math.sqrt(rounded(deviations) / len(values))
    if kind == "min":
        return min(x for _, x in xs)
    if kind == "max":
        return max(x for _, x in xs)
    if kind == "last":
        best_t, best = None, NAN
        for t, x in xs:
            if best_t is None or t >= best_t:
                best_t, best = t, x
        return best
    raise AssertionError(kind)


class Running:
    """A `window: all` aggregate, folded in arrival order (Welford for
    stddev, as docs/windows.md fixes)."""

    def __init__(self):
        self.count = self.values = 0
        self.a = self.b = 0.0
        self.last_t = None

    def add(self, kind, t, x):
        self.count += 1
        if math.isnan(x):
            return
        self.values += 1
        if kind in ("sum", "mean"):
            self.a += x
        elif kind == "min":
            self.a = x if self.values == 1 or x < self.a else self.a
        elif kind == "max":
            self.a = x if self.values == 1 or x > self.a else self.a
        elif kind == "stddev":
            d = x - self.a
            self.a += d / self.values
            self.b += d * (x - self.a)
        elif kind == "last":
            if self.last_t is None or t >= self.last_t:
                self.last_t, self.a = t, x

    def value(self, kind):
        if kind == "count":
            return float(self.count)
        if kind == "sum":
            return self.a if self.values else 0.0
        if not self.values:
            return NAN
        if kind == "mean":
            return self.a / self.values
        if kind == "stddev":
            return math.sqrt(self.b / self.values)
        return self.a


class Entity:
    def __init__(self):
        self.ids = {}  # id -> (time, features)
        self.reset()

    def reset(self):
        self.log = []  # every event applied since the reset, arrival order
        self.M = None
        self.since = {}  # agg -> latest passing time P
        self.all = {a[0]: Running() for a in AGGS if a[3] == 0}


def reference(events, lateness, ttl, max_events, dedupe=24 * H):
    """(how, feature values) per event: how is "new", "duplicate" (a
    repeated id answers the original's values) or "too_late" (more than
    dedupe before the entity's newest event: rejected, no values)."""
    horizon = max(a[3] for a in AGGS if a[3] and a[1] != "since_last") + lateness
    entities = {}
    results = []
    for ev in events:
        k = entities.setdefault(ev["card"], Entity())
        if ev["txn"] in k.ids:
            results.append(("duplicate", k.ids[ev["txn"]][1]))
            continue
        t = ev["t"]
        if k.M is not None and k.M - t > dedupe:
            results.append(("too_late", None))
            continue
        if k.M is not None and ttl > 0 and t - k.M > ttl:
            k.reset()
        k.M = t if k.M is None else max(k.M, t)
        v = {"t": t, "amount": ev["amount"], "merchant": ev["merchant"],
             "flag": ev["flag"]}
        v["log_amt"] = log1p(v["amount"])
        passes = {name: WHERE[where](v) for name, _, _, _, where in AGGS}
        v["passes"] = passes
        # The visible earlier events: the last max_events - 1 applied, and
        # not older than M - R.
        earlier = k.log[-(max_events - 1):] if max_events > 1 else []
        visible = [j for j in earlier if j["t"] > k.M - horizon]
        k.log.append(v)
        f = {"log_amt": v["log_amt"]}
        for name, kind, inp, window, where in AGGS:
            if kind == "since_last":
                P = k.since.get(name)
                f[name] = NAN
                if P is not None and (window == 0 or t - P < window):
                    f[name] = (t - P) / 1000.0
                if passes[name] and (P is None or t > P):
                    k.since[name] = t
            elif window == 0:
                if passes[name]:
                    k.all[name].add(kind, t, v[inp] if inp else NAN)
                f[name] = k.all[name].value(kind)
            else:
                members = [j for j in visible
                           if t - window < j["t"] <= t and j["passes"][name]]
                if passes[name]:
                    members.append(v)
                f[name] = exact(kind, members, inp)
        f["ratio"] = v["amount"] / c_max(f["mean_1h"], 1.0)
        # Ids: forget those older than the dedupe horizon, remember this one.
        k.ids = {i: r for i, r in k.ids.items() if not k.M - r[0] > dedupe}
        k.ids[ev["txn"]] = (t, f)
        results.append(("new", f))
    return results


# ---- random streams ----

def stream(seed, n, entities):
    rng = random.Random(seed)
    cards = ["k%d" % i for i in range(entities)]
    now = 1_709_251_000_000 + rng.randrange(10_000_000)
    events, times = [], {}
    for i in range(n):
        now += rng.choice([0, 0, 1, 7, 999, 1000, 5 * S, 29 * S, 30 * S, 31 * S,
                           2 * MIN, 5 * MIN, 11 * MIN, 40 * MIN, 3 * H])
        card = rng.choice(cards)
        t = now
        r = rng.random()
        if r < 0.12 and times.get(card):
            t = rng.choice(times[card][-10:])  # a repeated timestamp
        elif r < 0.25:
            t = now - rng.randint(1, 10 * MIN)  # late, within lateness
        elif r < 0.29:
            t = now - rng.randint(10 * MIN, 3 * H)  # late beyond it
        times.setdefault(card, []).append(t)
        amount = rng.choice([
            None, None, "0", "-0", "1", "50", "100", "-0.5", "0.1", "99.99",
            "%.2f" % rng.uniform(0, 200), "%.6g" % rng.expovariate(0.02),
            "%d" % rng.randrange(1000), "1e2", "3.3333333333333335"])
        ev = {"txn": "x%05d" % i, "card": card, "ts": fmt_time(t), "t": t,
              "amount": amount, "merchant": rng.choice(["m0", "m1", "m2", "m3",
                                                        "m4", "M1", None]),
              "flag": rng.choice(["0", "1", "1", None])}
        if events and rng.random() < 0.04:
            prev = rng.choice(events[-15:])
            ev["txn"], ev["card"] = prev["txn"], prev["card"]
        events.append(ev)
    return events


def parsed(ev):
    return {"txn": ev["txn"], "card": ev["card"], "t": ev["t"],
            "amount": NAN if ev["amount"] is None else float(ev["amount"]) + 0.0,
            "merchant": ev["merchant"],
            "flag": NAN if ev["flag"] is None else float(ev["flag"])}


def same(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b


CONFIGS = [
    # name, state block, (lateness, ttl, max_events), seed, events, entities
    ("lateness 10m, ttl 1d", {"lateness": "10m", "ttl": "1d"},
     (10 * MIN, 24 * H, 100000), 1, 2500, 5),
    ("no lateness, max_events 3", {"lateness": "0", "max_events": "3"},
     (0, 30 * 24 * H, 3), 2, 1500, 4),
    ("lateness 2m, ttl 20m (resets), max_events 40",
     {"lateness": "2m", "ttl": "20m", "max_events": "40"},
     (2 * MIN, 20 * MIN, 40), 3, 2500, 3),
    ("one entity, lateness 1h", {"lateness": "1h"},
     (H, 30 * 24 * H, 100000), 4, 1200, 1),
]
COLUMNS = ["txn", "card", "ts", "amount", "merchant", "flag"]

for name, state, (lateness, ttl, max_events), seed, n, entities in CONFIGS:
    slug = "cfg%d" % seed
    yaml = write(os.path.join(out, slug + ".yaml"), pipeline_yaml(state))
    events = stream(seed, n, entities)
    expected = reference([parsed(e) for e in events], lateness, ttl, max_events)
    csv_in = write_csv(os.path.join(out, slug + ".csv"), COLUMNS, events)
    jsonl_in = write_jsonl(os.path.join(out, slug + ".jsonl"), COLUMNS, events,
                           numbers=("amount", "flag"))
    outputs = []
    for threads, src in ((1, csv_in), (4, csv_in), (3, jsonl_in)):
        result = os.path.join(out, "%s.t%d.%s.csv" % (slug, threads, src[-4:]))
        r = tandem("batch", yaml, "--in", src, "--out", result, "--features-only",
                   "--threads", threads)
        if not expect(r.returncode == 0, f"{name}: batch --features-only "
                      f"failed: {r.stderr}"):
            continue
        outputs.append(open(result, "rb").read())
        rows = read_csv(result)
        # Events more than dedupe before their entity's newest are rejected
        # as too_late, each with its input line (a CSV's header is line 1).
        too_late = [i for i, (how, _) in enumerate(expected) if how == "too_late"]
        rejects = result + ".rejects.jsonl"
        got_late = []
        if os.path.exists(rejects):
            for line in open(rejects):
                rej = json.loads(line)
                expect(rej.get("reason") == "too_late",
                       f"{name}: unexpected reject {line.strip()}")
                got_late.append(rej["line"] - 2 if src.endswith(".csv")
                                else rej["line"] - 1)
        expect(got_late == too_late, f"{name}: too_late rejects at "
               f"{got_late[:5]}..., reference {too_late[:5]}...")
        kept = [(e, x) for e, x in zip(events, expected) if x[0] != "too_late"]
        if not expect(len(rows) == len(kept),
                      f"{name}: {len(rows)} rows for {len(kept)} events"):
            continue
        # The number fields come first: a model may take them as they are.
        expect(list(rows[0].keys()) == ["txn", "card", "ts", "amount", "flag"]
               + FEATURES + ["duplicate"],
               f"{name}: columns {list(rows[0].keys())}")
        bad = 0
        first_seen = {}
        for i, (row, (ev, (how, want))) in enumerate(zip(rows, kept)):
            if row["txn"] != ev["txn"] or row["card"] != ev["card"] or row["ts"] != ev["ts"]:
                fail(f"{name}: row {i + 1} keys {row['txn']},{row['card']},{row['ts']}"
                     f" are not the event's")
                bad += 1
            expect(row["duplicate"] == ("1" if how == "duplicate" else "0"),
                   f"{name}: row {i + 1} duplicate {row['duplicate']}, expected {how}")
            # A repeated id answers with its first result, raw fields too.
            key = (ev["card"], ev["txn"])
            if how != "duplicate":
                first_seen[key] = ev
            for raw in ("amount", "flag"):
                text = first_seen.get(key, ev)[raw]
                want_raw = NAN if text is None else float(text)
                got = NAN if row[raw] == "" else float(row[raw])
                if not same(got, want_raw):
                    bad += 1
                    fail(f"{name}: event {i + 1}: {raw} = {row[raw]!r}, input "
                         f"{text!r}")
            for feature in FEATURES:
                got = NAN if row[feature] == "" else float(row[feature])
                if not same(got, want[feature]):
                    bad += 1
                    if bad <= 8:
                        fail(f"{name} (threads {threads}, {src[-5:]}): event {i + 1} "
                             f"({ev['card']} {ev['ts']} amount={ev['amount']}): "
                             f"{feature} = {row[feature]!r}, reference "
                             f"{want[feature]!r}")
        if bad > 8:
            fail(f"{name}: {bad} differences in all")
        print(f"{name}: threads {threads}, {os.path.basename(src)}: {len(rows)} "
              f"events x {len(FEATURES)} features, {bad} differences", flush=True)
    expect(len(set(outputs)) <= 1, f"{name}: outputs differ between thread "
           "counts or between CSV and JSON Lines input")
    # The stream is not trivial: late events, resets, repeated ids happened.
    late = sum(1 for i, e in enumerate(events)
               if any(p["card"] == e["card"] and p["t"] > e["t"] for p in events[:i]))
    dups = sum(1 for how, _ in expected if how == "duplicate")
    expect(late > 20 and dups > 5, f"{name}: only {late} late events, {dups} repeats")
    print(f"{name}: {sum(1 for how, _ in expected if how == 'too_late')} "
          "events too late for the dedupe horizon", flush=True)

finish("test_pipeline_reference")
