"""Categories by name, in the model's order, never silently missing.

1. XGBoost: a model trained here with python3-xgboost on a pandas
   DataFrame whose category column's values first appear out of sorted
   order. A pipeline listing `values` in pandas' cat.categories order (the
   documented order) gives xgboost's own predictions bit for bit; an
   event with a category not in values is rejected with a message that
   names the field, the value and both fixes; `unknown: missing` scores
   it as xgboost scores a missing category; the live endpoint answers
   the same (a 400 naming the value, or the missing score). `tandem
   score` given a
   category name for this model (its file records no names) exits 2 and
   says the feature takes pandas' codes.
2. LightGBM: the lending_club fixture with the pandas_categorical line
   LightGBM's Python package writes (the fixture's category_mappings, in
   its categorical columns' order). `tandem score` over the labels (CSV
   and JSON Lines) equals the fixture's predictions made by LightGBM over
   the codes; an unknown label exits 2 naming the categories; a pipeline
   whose values are in another order is refused with the model's order in
   the message, and one in the model's order scores the labels as
   LightGBM did.
"""
import json
import os
import random

import numpy as np
import pandas as pd
import xgboost as xgb

from common import FIXTURES, bits_equal, expect, fail, finish, tmpdir
from pipeline_util import read_csv, read_jsonl, tandem, write
from serve_util import Server, curl

out = tmpdir()
rng = random.Random(77)

# ---- 1. XGBoost, trained here on a pandas categorical ----
COLORS = ["teal", "amber", "zinc", "coral", "beige", "mauve"]  # not sorted
n = 1500
colors = [rng.choice(COLORS) for _ in range(n)]
amounts = [round(rng.uniform(0, 100), 2) for _ in range(n)]
frame = pd.DataFrame({"color": pd.Categorical(colors), "amount": amounts})
expect(list(frame["color"].cat.categories) == sorted(COLORS),
       "pandas' categories are not sorted: the documented order is wrong")
weight = {c: rng.uniform(-2, 2) for c in COLORS}
label = np.array([1.0 if weight[c] + a / 50 + rng.gauss(0, 0.5) > 1 else 0.0
                  for c, a in zip(colors, amounts)])
booster = xgb.train({"objective": "binary:logistic", "max_depth": 3,
                     "tree_method": "hist", "max_cat_to_onehot": 1, "seed": 3},
                    xgb.DMatrix(frame, label=label, enable_categorical=True), 12)
model = os.path.join(out, "color.json")
booster.save_model(model)

# Events: known colors, missing ones, and a color the model never saw.
events = []
for i in range(400):
    color = rng.choice(COLORS + ["", "violet"])
    events.append((i, color, round(rng.uniform(0, 100), 2)))
lines = ["id,ts,color,amount"] + ["e%d,%d,%s,%s" % (i, 1767225600 + i, c, a)
                                  for i, c, a in events]
src = write(os.path.join(out, "events.csv"), "\n".join(lines) + "\n")


def pipeline(values, extra=""):
    return write(os.path.join(out, "p%d.yaml" % rng.randrange(10**9)), f"""\
name: colors
entity: id
time: ts
fields:
  id: string
  ts: time
  amount: number
  color: {{type: category, values: [{", ".join(values)}]{extra}}}
model: {model}
""")


def xgb_scores(rows):
    """xgboost's predictions over (color or None, amount) rows."""
    df = pd.DataFrame({"color": pd.Categorical([c for c, _ in rows],
                                               categories=sorted(COLORS)),
                       "amount": [a for _, a in rows]})
    return booster.predict(xgb.DMatrix(df, enable_categorical=True))


known = [(c or None, a) for _, c, a in events if c != "violet"]
dst = os.path.join(out, "sorted.csv")
r = tandem("batch", pipeline(sorted(COLORS)), "--in", src, "--out", dst)
if expect(r.returncode == 0, f"batch, sorted values: {r.stderr}"):
    got = np.array([float(row["score"]) for row in read_csv(dst)], dtype=np.float32)
    if expect(len(got) == len(known), f"{len(got)} scores for {len(known)} known events"):
        bits_equal(xgb_scores(known), got, "values in pandas' order vs xgboost")
    rejects = (read_jsonl(dst + ".rejects.jsonl")
               if os.path.exists(dst + ".rejects.jsonl") else [])
    violet = [i for i, c, _ in events if c == "violet"]
    expect(len(rejects) == len(violet) and all(
        'field "color": "violet" is not one of its 6 values' in rej["error"]
        and "unknown: missing" in rej["error"] and "add it to values" in rej["error"]
        for rej in rejects), f"unknown category rejects: {rejects[:2]}")
# unknown: missing scores it as xgboost scores a missing category.
dst = os.path.join(out, "lenient.csv")
r = tandem("batch", pipeline(sorted(COLORS), ", unknown: missing"), "--in",
           src, "--out", dst)
if expect(r.returncode == 0, f"batch, unknown: missing: {r.stderr}"):
    rows = [(None if c in ("", "violet") else c, a) for _, c, a in events]
    got = np.array([float(row["score"]) for row in read_csv(dst)], dtype=np.float32)
    if expect(len(got) == len(rows), f"{len(got)} scores for {len(rows)} events"):
        bits_equal(xgb_scores(rows), got, "unknown: missing vs xgboost's missing")
r = tandem("batch", pipeline(sorted(COLORS), ", unknown: maybe"), "--in", src,
           "--out", os.path.join(out, "x.csv"))
expect(r.returncode == 2 and "unknown is reject" in r.stderr and ".yaml:" in r.stderr,
       f"unknown: maybe: {r.returncode} {r.stderr}")
# Live, the same rules: 400 naming the value, or missing when declared.
for extra, status in (("", 400), (", unknown: missing", 200)):
    try:
        server = Server(pipeline(sorted(COLORS), extra))
    except AssertionError as e:
        fail(f"live, values{extra}: {e}")
        continue
    with server:
        r = curl(server, "POST", "/v1/pipelines/colors/events",
                 {"id": "live1", "ts": 1767225600, "color": "violet", "amount": 12.5})
        if status == 400:
            expect(r.status == 400 and '"violet" is not one of its 6 values'
                   in r.json().get("error", ""), f"live unknown category: {r}")
        elif expect(r.status == 200, f"live unknown: missing: {r}"):
            got = np.array([r.json()["score"]], dtype=np.float32)
            bits_equal(xgb_scores([(None, 12.5)]), got, "live unknown: missing")

# tandem score: a name for a model whose file records none.
names_csv = write(os.path.join(out, "names.csv"), "color,amount\nteal,3\n")
r = tandem("score", "--model", model, "--in", names_csv, "--out",
           os.path.join(out, "s.csv"))
expect(r.returncode == 2 and "names.csv:2:1" in r.stderr and '"teal"' in r.stderr
       and "code" in r.stderr and "cat.categories" in r.stderr
       and not os.path.exists(os.path.join(out, "s.csv")),
       f"score with a category name for XGBoost: {r.returncode} {r.stderr}")

# ---- 2. LightGBM with pandas_categorical ----
base = os.path.join(FIXTURES, "lightgbm", "lending_club_binary")
meta = json.load(open(base + ".meta.json"))
cats = meta["categorical_feature"]
mappings = meta["category_mappings"]
lgb_model = os.path.join(out, "lending.model.txt")
with open(lgb_model, "w") as f:
    f.write(open(base + ".model.txt").read().rstrip("\n") + "\n")
    f.write("\npandas_categorical:" + json.dumps([mappings[c] for c in cats]) + "\n")
inputs = pd.read_csv(base + ".input.csv", dtype=str, keep_default_na=False)
want = pd.read_csv(base + ".pred.csv", float_precision="round_trip")["pred"].to_numpy()
# Labels for codes; an unseen code (k = number of labels) stays a code.
labelled = inputs.copy()
for c in cats:
    labelled[c] = [mappings[c][int(v)] if v != "" and int(v) < len(mappings[c])
                   else v for v in inputs[c]]
lab_csv = os.path.join(out, "labels.csv")
labelled.to_csv(lab_csv, index=False)
dst = os.path.join(out, "lgb.csv")
r = tandem("score", "--model", lgb_model, "--in", lab_csv, "--out", dst)
if expect(r.returncode == 0, f"score with labels: {r.stderr}"):
    got = pd.read_csv(dst, float_precision="round_trip")["score"].to_numpy()
    bad = np.flatnonzero(got != want)
    expect(len(bad) == 0, f"labels: {len(bad)} of {len(want)} scores differ from "
           f"LightGBM's, first row {bad[:1]}")
lab_jsonl = os.path.join(out, "labels.jsonl")
with open(lab_jsonl, "w") as f:
    for _, row in labelled.iterrows():
        obj = {}
        for k, v in row.items():
            if v == "":
                continue
            obj[k] = v if k in cats and not v.isdigit() else float(v)
        f.write(json.dumps(obj) + "\n")
dst = os.path.join(out, "lgb.jsonl")
r = tandem("score", "--model", lgb_model, "--in", lab_jsonl, "--out", dst)
if expect(r.returncode == 0, f"score with labels, JSON Lines: {r.stderr}"):
    got = np.array([json.loads(line)["score"] for line in open(dst)])
    expect(np.array_equal(got, want), "labels in JSON Lines: scores differ from LightGBM's")
bad_csv = write(os.path.join(out, "bad.csv"), ",".join(inputs.columns) + "\n" +
                ",".join("term_99" if c == "term" else "1" for c in inputs.columns) + "\n")
r = tandem("score", "--model", lgb_model, "--in", bad_csv, "--out", os.path.join(out, "b.csv"))
expect(r.returncode == 2 and '"term_99" is not one of the model\'s 2 categories' in r.stderr
       and "bad.csv:2:3" in r.stderr, f"an unknown label: {r.returncode} {r.stderr}")

# A pipeline over the same rows: each column a field; categories by label.
def lgb_pipeline(order):
    fields = ["  rid: string", "  ts: time"]
    for c in inputs.columns:
        if c in cats:
            fields.append("  %s: {type: category, values: [%s]}"
                          % (c, ", ".join(order(mappings[c]))))
        else:
            fields.append("  %s: number" % c)
    return write(os.path.join(out, "lgb%d.yaml" % rng.randrange(10**9)),
                 "name: lending\nentity: rid\ntime: ts\nfields:\n" +
                 "\n".join(fields) + "\nmodel: %s\n" % lgb_model)


known_rows = [i for i in range(len(inputs))
              if all(inputs[c][i] == "" or int(inputs[c][i]) < len(mappings[c])
                     for c in cats)]
events = labelled.iloc[known_rows].copy()
events.insert(0, "ts", [1767225600 + i for i in range(len(events))])
events.insert(0, "rid", ["r%d" % i for i in range(len(events))])
ev_csv = os.path.join(out, "lgb_events.csv")
events.to_csv(ev_csv, index=False)
r = tandem("batch", lgb_pipeline(lambda v: list(reversed(v))), "--in", ev_csv,
           "--out", os.path.join(out, "rev.csv"))
expect(r.returncode == 2 and "its values differ from the model's categories at "
       "position 1" in r.stderr and "values: [term_36, term_60]" in r.stderr
       and not os.path.exists(os.path.join(out, "rev.csv")),
       f"reversed values: {r.returncode} {r.stderr}")
dst = os.path.join(out, "lgb_batch.csv")
r = tandem("batch", lgb_pipeline(list), "--in", ev_csv, "--out", dst)
if expect(r.returncode == 0, f"batch, the model's order: {r.stderr}"):
    got = pd.read_csv(dst, float_precision="round_trip")["score"].to_numpy()
    expect(len(known_rows) > 500 and np.array_equal(got, want[known_rows]),
           f"pipeline with labels: {np.sum(got != want[known_rows])} of "
           f"{len(known_rows)} scores differ from LightGBM's")

finish("test_categories")
