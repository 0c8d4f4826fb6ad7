"""Drift in real time (`tandem serve PIPELINE --drift-reference RUN|FILE`,
docs/pipelines.md) against the real binary:

1. A reference run (`tandem batch --explain`, recorded in a temporary
   registry) and a server watching it: events from the same distribution
   give PSI < 0.1 for every feature and the score; after ?reset=1, a
   shifted stream (amounts x5, other merchants) gives PSI > 0.25 for the
   amount-based features and the score while the hour and mcc stay low.
   Every PSI equals numpy's computation of it from the reference file and
   the features the answers carried (?explain=features): 10 bins at the
   reference's deciles plus one for missing values, a 0.0001 floor; the
   reference's duplicates and the live duplicates are not counted.
   /metrics passes promtool, and its tandem_feature_psi values equal the
   endpoint's.
2. A file reference (path.jsonl) works, and its score PSI equals
   `tandem compare`'s PSI between the reference run and a batch run over
   the same live events.
3. A features-only CSV reference works (no score); a reference without
   features fails with a clear message; without --drift-reference the
   endpoint answers 404 and /metrics has no drift series.
"""
import json
import os
import re
import subprocess

import numpy as np

from common import TANDEM, expect, finish, tmpdir
from pipeline_util import (FRAUD_COLUMNS, FRAUD_FEATURES, fraud_events,
                           fraud_pipeline, write_csv, write_jsonl)
from serve_util import Server, curl

out = tmpdir()
REG = os.path.join(out, "registry.db")
ENV = dict(os.environ, TANDEM_REGISTRY=REG)
BINS = 10
EPSILON = 1e-4


def tandem(*args):
    return subprocess.run([TANDEM, *map(str, args)], capture_output=True,
                          text=True, env=ENV)


def run_id(proc):
    m = re.search(r"tandem batch: run ([0-9a-f]{12})\n", proc.stderr)
    return m.group(1) if m else None


def batch(events, name, *flags):
    """A recorded batch run over EVENTS; returns (run id, output path)."""
    path = write_csv(os.path.join(out, name + ".csv"), FRAUD_COLUMNS, events)
    result = os.path.join(out, name + (".features.csv" if "--features-only" in flags
                                       else ".jsonl"))
    proc = tandem("batch", pipeline, "--in", path, "--out", result, *flags)
    expect(proc.returncode == 0 and run_id(proc), f"batch {name}: {proc.stderr}")
    return run_id(proc), result


def send(server, events):
    """Posts EVENTS in requests of 500 with ?explain=features; returns the
    answers."""
    path = write_jsonl(os.path.join(out, "send.jsonl"), FRAUD_COLUMNS, events,
                       numbers={"amount"})
    lines = open(path).read().splitlines()
    answers = []
    for i in range(0, len(lines), 500):
        r = curl(server, "POST", "/v1/pipelines/fraud/events?explain=features",
                 "[" + ",".join(lines[i:i + 500]) + "]")
        expect(r.status == 200, f"events: {r}")
        answers += r.json()
    return answers


def shifted(events):
    """Amounts x5 and merchants no one has seen."""
    rows = []
    for e in events:
        e = dict(e)
        if e.get("amount") is not None:
            e["amount"] = "%.2f" % (float(e["amount"]) * 5)
        if e.get("merchant") is not None:
            e["merchant"] = "new-" + e["merchant"]
        rows.append(e)
    return rows


def values(rows, name):
    """A column (a feature, or "score") of results, NaN for missing."""
    v = [(r["score"] if name == "score" else r["features"][name]) for r in rows]
    return np.array([np.nan if x is None else x for x in v], dtype=np.float64)


def psi(reference, live):
    """PSI as docs/pipelines.md defines it, in numpy."""
    present = reference[~np.isnan(reference)]
    cuts = np.quantile(present, [i / BINS for i in range(1, BINS)])

    def fractions(v):
        counts = np.zeros(BINS + 1)
        bins = np.searchsorted(cuts, v[~np.isnan(v)], side="left")
        np.add.at(counts, bins, 1)
        counts[BINS] = np.isnan(v).sum()
        return counts / len(v)

    a, b = fractions(reference), fractions(live)
    a = np.where(a > 0, a, EPSILON)
    b = np.where(b > 0, b, EPSILON)
    return float(np.sum((b - a) * np.log(b / a)))


def applied(answers):
    return [a for a in answers if "error" not in a and not a.get("duplicate")]


def check_against_numpy(report, reference_rows, live_rows, label):
    worst = 0.0
    for name in FRAUD_FEATURES + ["score"]:
        got = (report["score"] if name == "score"
               else report["features"][name])["psi"]
        ref, live = values(reference_rows, name), values(live_rows, name)
        if name == "score":  # float32 scores, as the model computes them
            ref = ref.astype(np.float32).astype(np.float64)
            live = live.astype(np.float32).astype(np.float64)
        want = psi(ref, live)
        worst = max(worst, abs(got - want) / max(abs(want), 1e-12))
    expect(worst < 1e-9, f"{label}: PSI differs from numpy's by {worst:g}")
    return worst


def metric_psi(text):
    series = {}
    for m in re.finditer(r'^tandem_feature_psi\{pipeline="fraud",'
                         r'feature="([^"]+)"\} (\S+)$', text, re.M):
        series[m.group(1)] = float(m.group(2))
    return series


def train_on(path):
    """Replaces the pipeline's model by one trained on a features-only
    output, whose label is a large amount (as a fraud model's might be):
    the score then moves with the amounts."""
    import xgboost as xgb
    with open(path) as f:
        header = f.readline().strip().split(",")
        rows = [line.rstrip("\n").split(",") for line in f]
    columns = [header.index(n) for n in FRAUD_FEATURES]
    X = np.array([[float(r[c]) if r[c] != "" else np.nan for c in columns]
                  for r in rows])
    rng = np.random.default_rng(0)
    y = (np.nan_to_num(X[:, 0]) + rng.normal(size=len(X)) * 0.5 > 5.5)
    d = xgb.DMatrix(X, label=y.astype(float), feature_names=FRAUD_FEATURES)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3,
                         "eta": 0.3, "seed": 0}, d, 10)
    booster.save_model(os.path.join(out, "model.json"))


pipeline = fraud_pipeline(out)
reference_events = fraud_events(1, 6000, entities=200)
train_on(batch(reference_events, "training", "--features-only")[1])
T_END = max(int(np.datetime64(e["ts"][:-1]).astype("datetime64[ms]").astype(np.int64))
            for e in reference_events)

# ---- 1. a registry run as the reference ----
ref_run, ref_path = batch(reference_events, "reference", "--explain")
reference_rows = [r for r in map(json.loads, open(ref_path))
                  if not r.get("duplicate")]
duplicates = sum(1 for r in map(json.loads, open(ref_path)) if r.get("duplicate"))
with Server(pipeline, "--drift-reference", ref_run[:8], env=ENV) as server:
    report = curl(server, "GET", "/v1/pipelines/fraud/drift").json()
    expect(report["reference"]["run"] == ref_run and
           report["reference"]["path"] == os.path.realpath(ref_path) and
           report["reference"]["rows"] == len(reference_rows) and
           report["reference"]["duplicates_skipped"] == duplicates and
           report["events"] == 0 and report["features"]["hour"]["psi"] is None,
           f"before any event: {json.dumps(report)[:600]}")

    # (a) the same distribution
    same = fraud_events(2, 6000, entities=200)
    answers = send(server, same)
    live_a = applied(answers)
    report = curl(server, "GET", "/v1/pipelines/fraud/drift").json()
    expect(report["events"] == len(live_a),
           f"events counted {report['events']}, applied {len(live_a)}")
    psis = {n: report["features"][n]["psi"] for n in FRAUD_FEATURES}
    psis["score"] = report["score"]["psi"]
    expect(all(v < 0.1 for v in psis.values()),
           f"same distribution: PSI {psis}")
    w = check_against_numpy(report, reference_rows, live_a, "same distribution")
    print(f"ok same distribution: max PSI {max(psis.values()):.4f} "
          f"({max(psis, key=psis.get)}), numpy agrees to {w:.1e}")
    metrics = curl(server, "GET", "/metrics").body
    check = subprocess.run(["promtool", "check", "metrics"], input=metrics,
                           capture_output=True, text=True)
    expect(check.returncode == 0, "promtool: " + check.stdout + check.stderr)
    expect(metric_psi(metrics) == psis,
           f"/metrics {metric_psi(metrics)} != endpoint {psis}")
    expect(f'tandem_drift_events_total{{pipeline="fraud"}} {len(live_a)}\n'
           in metrics, "tandem_drift_events_total")
    print("ok /metrics passes promtool and equals the endpoint")

    # (b) a shifted stream, counted from a reset
    r = curl(server, "GET", "/v1/pipelines/fraud/drift?reset=1")
    expect(r.status == 200 and r.json()["events"] == 0, f"reset: {r}")
    start = T_END + 3_600_000
    moved = shifted(fraud_events(3, 6000, entities=200, start_ms=start))
    live_b = applied(send(server, moved))
    report = curl(server, "GET", "/v1/pipelines/fraud/drift").json()
    psis = {n: report["features"][n]["psi"] for n in FRAUD_FEATURES}
    psis["score"] = report["score"]["psi"]
    high = ["log_amount", "sum_1h", "max_24h", "last_1h", "score"]
    low = ["hour", "mcc_code", "n_10m", "n_1h"]
    expect(all(psis[n] > 0.25 for n in high) and
           all(psis[n] < 0.1 for n in low),
           f"shifted: PSI {psis}")
    check_against_numpy(report, reference_rows, live_b, "shifted")
    print("ok shifted: " + ", ".join(f"{n} {psis[n]:.2f}" for n in high + low))
    metrics = curl(server, "GET", "/metrics").body
    expect(metric_psi(metrics) == psis, "/metrics after the shift")

# ---- 2. a file reference; its score PSI is compare's ----
clean_ref = fraud_events(4, 3000, entities=40, duplicates=0)
clean_run, clean_path = batch(clean_ref, "clean-reference", "--explain")
live_events = fraud_events(5, 3000, entities=40, duplicates=0)
with Server(pipeline, "--drift-reference", clean_path, env=ENV) as server:
    send(server, live_events)
    report = curl(server, "GET", "/v1/pipelines/fraud/drift").json()
    expect(report["reference"]["run"] is None and
           report["reference"]["path"] == clean_path and
           report["reference"]["rows"] == 3000, f"file: {report['reference']}")
live_run, _ = batch(live_events, "live-as-batch", "--explain")
proc = tandem("compare", clean_run, live_run, "--json")
if expect(proc.returncode == 0, f"compare: {proc.stderr}"):
    compared = json.loads(proc.stdout)["shift"]["psi"]
    expect(abs(compared - report["score"]["psi"]) <= 1e-12 * max(1, compared),
           f"score PSI {report['score']['psi']} != compare's {compared}")
    print(f"ok a file reference; score PSI {compared:.6f} equals tandem compare's")

# ---- 3. features-only, no features, no reference ----
fo_run, fo_path = batch(clean_ref, "features-only", "--features-only")
with Server(pipeline, "--drift-reference", fo_run, env=ENV) as server:
    send(server, live_events[:500])
    report = curl(server, "GET", "/v1/pipelines/fraud/drift").json()
    expect(report["score"] is None and
           report["features"]["log_amount"]["psi"] is not None,
           f"features-only: {json.dumps(report)[:300]}")
    print("ok a --features-only CSV reference (no score)")

plain_run, plain_path = batch(clean_ref, "plain")
for ref in (plain_run, plain_path):
    proc = subprocess.run([TANDEM, "serve", pipeline, "--listen", "127.0.0.1:0",
                           "--drift-reference", ref], capture_output=True,
                          text=True, env=ENV, timeout=30)
    expect(proc.returncode != 0 and "no features" in proc.stderr and
           "--explain" in proc.stderr and "--features-only" in proc.stderr and
           (ref != plain_run or f"run {plain_run}" in proc.stderr),
           f"a reference without features: {proc.returncode} {proc.stderr}")
    print("ok a reference without features fails: " + proc.stderr.strip())
proc = subprocess.run([TANDEM, "serve", pipeline, "--listen", "127.0.0.1:0",
                       "--drift-reference", "ffffffffff"], capture_output=True,
                      text=True, env=ENV, timeout=30)
expect(proc.returncode != 0 and "ffffffffff" in proc.stderr,
       f"an unknown run: {proc.stderr}")

with Server(pipeline, env=ENV) as server:
    r = curl(server, "GET", "/v1/pipelines/fraud/drift")
    expect(r.status == 404 and "--drift-reference" in r.json()["error"],
           f"no reference: {r}")
    metrics = curl(server, "GET", "/metrics").body
    expect("tandem_feature_psi" not in metrics and
           "tandem_drift_events_total" not in metrics,
           "drift series without a reference")
    print("ok without a reference: 404 (" + r.json()["error"] + ")")

finish("drift")
