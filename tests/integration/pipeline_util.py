"""Helpers for the pipeline tests (test_pipeline_*.py): models trained
with python3-xgboost on the pipeline's feature names, event streams
(random, reproducible from a seed) written as CSV or JSON Lines, and
readers for tandem's outputs."""
import csv
import datetime
import json
import os
import random
import re
import subprocess

from common import TANDEM

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def tandem(*args, **kwargs):
    """Runs tandem; returns the CompletedProcess (never raises)."""
    return subprocess.run([TANDEM, *map(str, args)], capture_output=True,
                          text=True, **kwargs)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def make_model(path, names, seed=0, rounds=8, objective="binary:logistic"):
    """Trains a small XGBoost model whose feature names are NAMES on random
    data (NaNs included) and saves it as JSON."""
    import numpy as np
    import xgboost as xgb
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, len(names))) * rng.uniform(1, 100, size=len(names))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + rng.normal(size=400) * 10 > 0).astype(float)
    d = xgb.DMatrix(X, label=y, feature_names=list(names))
    booster = xgb.train({"objective": objective, "max_depth": 3, "eta": 0.3,
                         "seed": seed}, d, rounds)
    booster.save_model(path)
    return path


def fmt_time(ms):
    """Milliseconds since the epoch as RFC 3339 with milliseconds."""
    t = EPOCH + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def write_csv(path, columns, rows):
    """ROWS are dicts (None or absent: an empty cell)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return path


NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def write_jsonl(path, columns, rows, numbers=()):
    """The same events as write_csv, as JSON Lines: the columns in NUMBERS
    as JSON numbers where their text is a JSON number, the rest as
    strings; empty cells left out."""
    with open(path, "w") as f:
        for row in rows:
            members = []
            for c in columns:
                v = row.get(c)
                if v is None or v == "":
                    continue
                text = v if c in numbers and NUMBER.fullmatch(v) else json.dumps(v)
                members.append(json.dumps(c) + ":" + text)
            f.write("{" + ",".join(members) + "}\n")
    return path


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_lines(path):
    with open(path, "rb") as f:
        return f.read().split(b"\n")[:-1]


# The pipeline the batch and replay tests share: every kind of feature
# (exact, hopped and `all` windows, filters, derived features before and
# after the aggregations, categories) and a three-way decision.
FRAUD_FEATURES = [
    "log_amount", "mcc_code", "hour", "n_10m", "n_1h", "sum_1h", "max_24h",
    "mean_30d", "std_30d", "since", "big_1h", "merchants_1h", "last_1h",
    "total_all", "ratio",
]

FRAUD_YAML = """\
name: fraud
entity: card
time: ts
id: txn
fields:
  txn: string
  card: string
  ts: time
  amount: number
  merchant: string
  mcc: {type: category, values: [grocery, fuel, online, travel], unknown: missing}
features:
  - {name: log_amount, expr: "log1p(amount)"}
  - {name: mcc_code, expr: "mcc"}
  - {name: hour, expr: "hour_of_day()"}
  - {name: n_10m, agg: count, window: 10m}
  - {name: n_1h, agg: count, window: 1h}
  - {name: sum_1h, agg: sum(amount), window: 1h}
  - {name: max_24h, agg: max(amount), window: 24h}
  - {name: mean_30d, agg: mean(amount), window: 30d, hop: 1h}
  - {name: std_30d, agg: stddev(amount), window: 30d, hop: 1h}
  - {name: since, agg: since_last}
  - {name: big_1h, agg: count, window: 1h, where: "amount > 200"}
  - {name: merchants_1h, agg: distinct(merchant), window: 1h}
  - {name: last_1h, agg: last(log_amount), window: 1h}
  - {name: total_all, agg: sum(amount), window: all}
  - {name: ratio, expr: "amount / max(mean_30d, 1)"}
model: {path: MODEL}
decision:
  - {when: "score >= 0.7", then: block}
  - {when: "score >= 0.4", then: review}
  - {then: approve}
state:
  lateness: 10m
"""

FRAUD_COLUMNS = ["txn", "card", "ts", "amount", "merchant", "mcc"]
MERCHANTS = ["m%d" % i for i in range(12)]
MCCS = ["grocery", "fuel", "online", "travel", "casino"]  # casino: not in values (FRAUD_YAML: unknown: missing)


def fraud_pipeline(directory, model_seed=0, model_name="model.json",
                   yaml_name="pipeline.yaml"):
    """Writes the shared pipeline and its model into DIRECTORY."""
    make_model(os.path.join(directory, model_name), FRAUD_FEATURES, model_seed)
    return write(os.path.join(directory, yaml_name),
                 FRAUD_YAML.replace("MODEL", model_name))


def fraud_events(seed, n, entities=8, invalid=0.0, duplicates=0.03,
                 late=0.1, start_ms=1_700_000_000_000):
    """A random stream for the shared pipeline, as a list of row dicts:
    mostly in order per entity, some events late (within the 10 minute
    lateness and a few beyond it), repeated timestamps, repeated ids
    (with different field values: the original result must come back),
    missing amounts, merchants and categories, and with probability
    INVALID an invalid event (a bad number, a bad time, no entity, no
    time)."""
    rng = random.Random(seed)
    cards = ["c%02d" % i for i in range(entities)]
    now = start_ms
    rows = []
    for i in range(n):
        now += rng.choice([0, 0, 1, 500, 15_000, 60_000, 240_000, 900_000])
        t = now
        r = rng.random()
        if r < late:
            t = now - rng.randint(1, 600_000)   # within lateness
        elif r < late * 1.2:
            t = now - rng.randint(600_001, 7_200_000)  # beyond it
        amount = rng.choice([None, "0", "-0", "1", "12.5", "199.99", "250",
                             "%.2f" % rng.uniform(0, 1000),
                             "%.3f" % rng.expovariate(0.01)])
        row = {
            "txn": "t%05d" % i,
            "card": rng.choice(cards),
            "ts": fmt_time(t),
            "amount": amount,
            "merchant": rng.choice(MERCHANTS + [None]),
            "mcc": rng.choice(MCCS + [None]),
        }
        if rows and rng.random() < duplicates:
            # A repeated id: same id and card, other values.
            prev = rng.choice(rows[-20:])
            if prev.get("card") and prev.get("ts"):
                row["txn"] = prev["txn"]
                row["card"] = prev["card"]
        if rng.random() < invalid:
            kind = rng.randrange(4)
            if kind == 0:
                row["amount"] = "12,5x"
            elif kind == 1:
                row["ts"] = "yesterday"
            elif kind == 2:
                row["card"] = None
            else:
                row["ts"] = None
        rows.append(row)
    return rows


# The pipeline of the time-rule tests (test_time_rules.py,
# test_time_torture.py): features whose values a test can count by hand
# from an entity's events (a count and a sum over all of them, a count in
# an exact 1 h window), a model over them and a two-way decision. EXTRA
# goes before the decision (lookups, materialize:, store:), STATE last.
COUNTS_FEATURES = ["n_all", "sum_all", "n_1h"]
COUNTS_COLUMNS = ["txn", "card", "ts", "amount"]


def counts_yaml(name, state, features="", extra=""):
    return f"""\
name: {name}
entity: card
time: ts
id: txn
fields: {{txn: string, card: string, ts: time, amount: number}}
features:
  - {{name: n_all, agg: count, window: all}}
  - {{name: sum_all, agg: sum(amount), window: all}}
  - {{name: n_1h, agg: count, window: 1h}}
{features}model: {{path: model.json}}
{extra}decision:
  - {{when: "score >= 0.5", then: review}}
  - {{then: approve}}
{state}
"""


# The hybrid tests' pipeline (test_hybrid.py, and the same cases on Redis in
# test_hybrid_redis.py): two windows, a table it materializes and looks up.
# STORE and EXTRA are replaced by the caller.
HYBRID_FEATURES = ["log_amount", "n_1h", "mean_7d", "profile_mean", "profile_n"]
HYBRID_COLUMNS = ["txn", "card", "ts", "amount"]


def hybrid_yaml(name):
    return """\
name: %s
entity: card
time: ts
id: txn
store: STORE
fields: {txn: string, card: string, ts: time, amount: number}
features:
  - {name: log_amount, expr: "log1p(amount)"}
  - {name: n_1h, agg: count, window: 1h}
  - {name: mean_7d, agg: mean(amount), window: 7d}
  - {name: profile_mean, lookup: profile.mean_7d, default: -1}
  - {name: profile_n, lookup: profile.n_1h}
model: {path: model.json}
materialize:
  - {table: profile, columns: [mean_7d, n_1h, score], keep: 3}
decision:
  - {when: "score >= 0.5", then: block}
  - {then: approve}
EXTRA
""" % name
