"""A shadow (challenger) model: `shadow: {path: M}` in a pipeline.

The shared test pipeline gets a second XGBoost model (other seed, half of
the features, in another order) as its shadow. On a seeded stream with
repeated ids and invalid events:

- batch: every column of the output without the shadow is unchanged
  (score and decision are the served model's, whatever the shadow says);
  shadow_score equals, bit for bit as float32, XGBoost's own prediction
  of the shadow model on the `--features-only` rows of the same run
  (infinite features as missing, as the pipeline gives them to models);
  shadow_decision is the rule that score meets, computed here;
- live: `tandem serve --decision-log` answers the same stream (`tandem
  replay`: 0 differences, shadow columns included), and each decision
  record's shadow_score equals batch's for its event;
- `tandem compare --shadow RUN` on the live run: decisions changed
  between served and shadow equal the count made here from the log, and
  after `tandem eval` with labels, the roc_auc delta equals the two AUCs
  computed here by hand.
"""
import csv
import json
import math
import os
import random

import numpy as np
import xgboost as xgb

from common import expect, finish, run, tmpdir
from pipeline_util import (FRAUD_COLUMNS, FRAUD_FEATURES, fraud_events, fraud_pipeline,
                           make_model, write, write_csv)
from serve_util import Server

out = tmpdir()
plain = fraud_pipeline(out)
shadow_names = list(reversed(FRAUD_FEATURES[::2]))
make_model(os.path.join(out, "shadow.json"), shadow_names, seed=7, rounds=12)
text = open(plain).read()
pipeline = write(os.path.join(out, "shadowed.yaml"),
                 text.replace("model: {path: model.json}",
                              "model: {path: model.json}\nshadow: {path: shadow.json}"))
events = fraud_events(seed=31, n=1500, entities=20, invalid=0.02, duplicates=0.05)
src = write_csv(os.path.join(out, "events.csv"), FRAUD_COLUMNS, events)

with_shadow = os.path.join(out, "shadow.out.csv")
without = os.path.join(out, "plain.out.csv")
features = os.path.join(out, "features.csv")
run("batch", pipeline, "--in", src, "--out", with_shadow, "--no-registry")
run("batch", plain, "--in", src, "--out", without, "--no-registry")
run("batch", pipeline, "--in", src, "--out", features, "--features-only", "--no-registry")
rows = list(csv.DictReader(open(with_shadow)))
base = list(csv.DictReader(open(without)))
feats = list(csv.DictReader(open(features)))
expect(len(rows) == len(base) == len(feats) > 1000,
       f"rows: {len(rows)} with shadow, {len(base)} without, {len(feats)} features")
changed = [i for i, (a, b) in enumerate(zip(rows, base))
           if {k: a[k] for k in b} != b]
expect(not changed, f"the shadow changed {len(changed)} rows of the served output, "
       f"e.g. {rows[changed[0]] if changed else ''}")
expect(list(rows[0])[-3:] == ["shadow_score", "shadow_decision", "duplicate"],
       f"columns: {list(rows[0])}")


def feature_value(text):
    if text == "":
        return np.nan
    v = float(text)
    # The pipeline gives a model an infinite (or float32-overflowing)
    # feature as missing.
    return np.nan if math.isinf(v) or abs(v) > np.finfo(np.float32).max else v


X = np.array([[feature_value(r[n]) for n in shadow_names] for r in feats])
booster = xgb.Booster(model_file=os.path.join(out, "shadow.json"))
want = booster.predict(xgb.DMatrix(X, feature_names=shadow_names, missing=np.nan))
got = np.array([np.float32(r["shadow_score"]) for r in rows], dtype=np.float32)
differ = np.nonzero(got.view(np.uint32) != want.astype(np.float32).view(np.uint32))[0]
expect(len(differ) == 0, f"{len(differ)} shadow scores differ from XGBoost's, e.g. "
       f"row {differ[:1]}: {got[differ[:1]]} vs {want[differ[:1]]}")


def rule(score):
    return "block" if score >= 0.7 else "review" if score >= 0.4 else "approve"


bad = [r for r in rows if r["shadow_decision"] != rule(float(np.float32(r["shadow_score"])))]
expect(not bad, f"{len(bad)} shadow decisions are not the rule of their score: {bad[:1]}")
flips = sum(1 for r in rows if r["shadow_decision"] != r["decision"])
expect(flips > 0, "the shadow never decides otherwise: the comparison checks nothing")
print(f"ok batch: {len(rows)} rows, shadow == XGBoost bit for bit, {flips} "
      f"decisions would change", flush=True)

# ---- live ----
registry = os.path.join(out, "registry.db")
dlog = os.path.join(out, "decisions")
with Server(pipeline, "--decision-log", dlog, "--registry", registry) as server:
    r = run("replay", pipeline, "--in", src, "--url", server.url, "--batch", "16",
            check=False)
    expect(r.returncode == 0 and " 0 differences" in r.stderr,
           f"replay with a shadow: {r.returncode} {r.stderr[-1500:]}")
live_run = json.loads(run("runs", "--registry", registry, "--command", "live",
                          "--json").stdout.splitlines()[0])
records = [json.loads(x) for x in open(live_run["output"]["path"])]
batch_shadow = {r["txn"]: r["shadow_score"] for r in rows if r["duplicate"] == "0"}
wrong = [x for x in records if not x["duplicate"] and
         float(np.float32(x["shadow_score"])) != float(np.float32(batch_shadow[x["event_id"]]))]
expect(len(records) > 1000 and not wrong,
       f"{len(wrong)} logged shadow scores differ from batch's: {wrong[:1]}")

cmp = json.loads(run("compare", "--shadow", live_run["id"], "--registry", registry,
                     "--json", "--examples", "0").stdout)
log_flips = sum(1 for x in records if x["decision"] != x["shadow_decision"])
expect(cmp["decisions"] is not None and cmp["decisions"]["changed"] == log_flips and
       cmp["decisions"]["compared"] == len(records),
       f"compare --shadow decisions {cmp['decisions']}, counted {log_flips} of "
       f"{len(records)}")
expect(cmp["shift"]["psi"] is not None and cmp["shift"]["psi"] > 0,
       f"compare --shadow psi: {cmp['shift']}")

# Labels for every event, then the metric deltas.
rng = random.Random(3131)
labels = os.path.join(out, "labels.csv")
ids = sorted({x["event_id"] for x in records})
truth = {i: rng.randint(0, 1) for i in ids}
with open(labels, "w") as f:
    f.write("event_id,label\n")
    for i in ids:
        f.write(f"{i},{truth[i]}\n")
run("eval", "--record", live_run["id"], "--registry", registry, "--labels", labels)


def auc(scores, ys):
    pos = [s for s, y in zip(scores, ys) if y]
    neg = [s for s, y in zip(scores, ys) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


served = [x for x in records if not x["duplicate"] and x["source"] == "model"]
ys = [truth[x["event_id"]] for x in served]
auc_served = auc([x["score"] for x in served], ys)
auc_shadow = auc([x["shadow_score"] for x in served], ys)
cmp = json.loads(run("compare", "--shadow", live_run["id"], "--registry", registry,
                     "--json", "--examples", "0").stdout)
metric = {m["name"]: m for m in (cmp["metrics"] or [])}
roc = metric.get("roc_auc")
expect(roc is not None and math.isclose(roc["a"], auc_served, rel_tol=1e-12) and
       math.isclose(roc["b"], auc_shadow, rel_tol=1e-12),
       f"compare --shadow roc_auc {roc}, by hand served {auc_served}, shadow {auc_shadow}")

finish("test_shadow")
