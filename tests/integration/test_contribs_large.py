"""Exact contributions of a model too large for the TreeSHAP leaf tables,
on the default path, against XGBoost 1.7.4's own
Booster.predict(pred_contribs=True), bit for bit.

The model is trained here: 30 trees of depth 10 on 32 features, so the
tables (at most 64 MiB for a model; a depth-10 tree's table holds up to
2^10 patterns per leaf, about 14 MiB for these trees) take only the first
few trees, and the rest go through the
vector lanes (src/model/shap_batch.c) when a call explains 4 rows or more,
or through the per-row recursion for fewer. No switch is set: this is
what `tandem score --contribs` and the KServe endpoint do for users.

- `tandem score --contribs` on 333 rows (blocks of 16 lanes and a part
  one; missing values; rows on split thresholds), 1 and 2 threads
  byte-identical; 3 rows (the recursion) the same values again.
- `tandem serve`: a v2 infer request with {"contribs": true} for the 333
  rows returns the same bits; one row alone returns that row's.
"""
import filecmp
import json
import os

import numpy as np
import xgboost as xgb

from common import bits_equal, expect, finish, run, tmpdir, write_matrix_csv
from serve_util import Server, curl, infer_body

out = tmpdir()
FEATURES = 32
ROUNDS = 30


def make_data(seed, rows):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    X[:, 1] = np.round(X[:, 1] * 2)  # ties: rows on both sides of a split
    filled = np.nan_to_num(X)
    weights = rng.normal(size=FEATURES)
    signal = np.sin(2 * filled) @ weights + filled[:, 0] * filled[:, 1]
    X[rng.random(size=X.shape) < 0.08] = np.nan
    return X, (signal + rng.normal(scale=0.5, size=rows) > 0).astype(np.float32)


def read_csv(path):
    return np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64,
                         ndmin=2, missing_values="", filling_values=np.nan)


names = [f"x{i}" for i in range(FEATURES)]
X, y = make_data(11, 8000)
booster = xgb.train({"objective": "binary:logistic", "max_depth": 10,
                     "eta": 0.1, "seed": 3, "nthread": 1,
                     "tree_method": "hist"},
                    xgb.DMatrix(X, label=y, feature_names=names), ROUNDS)
model = os.path.join(out, "large.json")
booster.save_model(model)
leaves = sum(tree.count("leaf=") for tree in booster.get_dump())
# Deep, full trees are what overflow the tables; a model of shallow or
# sparse trees would leave this test checking the tables alone.
expect(leaves >= ROUNDS * 250, f"only {leaves} leaves in {ROUNDS} trees")

X_test, _ = make_data(12, 333)
# Rows exactly on the first tree's thresholds (XGBoost sends x < t left),
# read from the saved model as the float32 values it holds.
with open(model) as f:
    tree = json.load(f)["learner"]["gradient_booster"]["model"]["trees"][0]
inner = [i for i, left in enumerate(tree["left_children"]) if left != -1]
for row, node in enumerate(inner[:40]):
    X_test[row, tree["split_indices"][node]] = \
        np.float32(tree["split_conditions"][node])
want = booster.predict(xgb.DMatrix(X_test, feature_names=names),
                       pred_contribs=True).astype(np.float32)

data = os.path.join(out, "rows.csv")
write_matrix_csv(data, names, X_test)
paths = {}
for threads in (1, 2):
    paths[threads] = os.path.join(out, f"contribs_{threads}.csv")
    run("score", "--model", model, "--in", data, "--out", paths[threads],
        "--threads", threads, "--contribs")
got = read_csv(paths[1]).astype(np.float32)
if bits_equal(want, got, "score --contribs, 333 rows"):
    print(f"ok score --contribs: {got.shape[0]} x {got.shape[1]} "
          "bit-identical to XGBoost")
expect(filecmp.cmp(paths[1], paths[2], shallow=False),
       "score --contribs: 1 and 2 threads differ")

few = os.path.join(out, "rows3.csv")
write_matrix_csv(few, names, X_test[:3])
run("score", "--model", model, "--in", few, "--out", few + ".out",
    "--threads", 1, "--contribs")
if bits_equal(want[:3], read_csv(few + ".out").astype(np.float32),
              "score --contribs, 3 rows"):
    print("ok score --contribs: 3 rows (the recursion) bit-identical")

rows = [[None if np.isnan(v) else float(v) for v in row] for row in X_test]
with Server("--model", f"large={model}") as server:
    r = curl(server, "POST", "/v2/models/large/infer",
             infer_body(rows, parameters={"contribs": True}))
    if expect(r.status == 200, f"infer with contribs answered {r}"):
        outs = {o["name"]: o for o in r.json()["outputs"]}
        served = np.array(outs["contribs"]["data"],
                          dtype=np.float32).reshape(want.shape)
        if bits_equal(want, served, "serve, 333 rows"):
            print("ok serve: 333 rows' contributions bit-identical to XGBoost")
    r = curl(server, "POST", "/v2/models/large/infer",
             infer_body(rows[5:6], parameters={"contribs": True}))
    if expect(r.status == 200, f"one row with contribs answered {r}"):
        outs = {o["name"]: o for o in r.json()["outputs"]}
        one = np.array(outs["contribs"]["data"], dtype=np.float32).reshape(1, -1)
        if bits_equal(want[5:6], one, "serve, row 5 alone"):
            print("ok serve: one row alone bit-identical to XGBoost")
finish("test_contribs_large")
