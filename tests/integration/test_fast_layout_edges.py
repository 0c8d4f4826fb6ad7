"""The fast layouts of categorical XGBoost trees and of LightGBM trees at
their edges, through `tandem score`: rows are made from each model's own
splits (thresholds and their float32 and double neighbours, values either
side of LightGBM's kZeroThreshold, every category of a set and past it,
negative, fractional, huge and missing categories). lending_club_cat must
give XGBoost's own predictions bit for bit with the layout on and forced
off (TANDEM_KERNEL=reference); every LightGBM fixture must give the same
bits through both of its layouts (the default bitvector layout and the
record walk, TANDEM_KERNEL=scalar) as through the reference walk (which
test_lightgbm_fixtures.py checks against LightGBM's own predictions)."""
import json
import os
import re
import subprocess

import numpy as np
import xgboost as xgb

from common import ROOT, TANDEM, bits_equal, expect, finish, tmpdir, \
    write_matrix_csv

out = tmpdir()
rng = np.random.default_rng(20261207)
ZERO = 1.0000000180025095e-35  # LightGBM's kZeroThreshold (1e-35f)
ROWS = 3000
ODD_CATEGORIES = [-1.0, -0.5, -0.0, 0.5, 2.5, 1e9, 2147483647.0, 2147483648.0,
                  4294967296.0, -2147483649.0, 16777217.0, 1e30, -1e30]
SPECIAL = [np.nan, 0.0, -0.0, np.inf, -np.inf, ZERO, -ZERO]


def score(model, data, path, kernel=None, double=False):
    """Scores with tandem (the layout chosen unless kernel says otherwise);
    returns the margins as float64 (LightGBM) or float32 (XGBoost)."""
    env = dict(os.environ)
    env.pop("TANDEM_KERNEL", None)
    if kernel:
        env["TANDEM_KERNEL"] = kernel
    proc = subprocess.run([TANDEM, "score", "--model", model, "--in", data,
                           "--out", path, "--margin", "--no-registry"],
                          capture_output=True, text=True, env=env)
    if not expect(proc.returncode == 0, f"score {model}: {proc.stderr}"):
        return None
    values = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return values if double else values.astype(np.float32)


def edge_rows(candidates, num_features, float32, specials=SPECIAL):
    """ROWS rows: mostly edges of a split on that feature, else specials."""
    X = np.empty((ROWS, num_features))
    for f in range(num_features):
        pool = np.array(candidates[f] or specials)
        pick = rng.integers(0, len(pool), ROWS)
        special = np.array(specials)[rng.integers(0, len(specials), ROWS)]
        X[:, f] = np.where(rng.random(ROWS) < 0.8, pool[pick], special)
    return X.astype(np.float32) if float32 else X


def write_rows(path, names, X):
    """Doubles in shortest round-trip text (repr), NaN as an empty field."""
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for row in X:
            f.write(",".join("" if np.isnan(v) else repr(float(v))
                             for v in row) + "\n")


# lending_club_cat against XGBoost itself.
model = os.path.join(ROOT, "tests", "fixtures", "xgboost",
                     "lending_club_cat.model.json")
with open(model) as f:
    learner = json.load(f)["learner"]
names = learner["feature_names"]
types = learner["feature_types"]
candidates = [[] for _ in names]
for tree in learner["gradient_booster"]["model"]["trees"]:
    for node, left in enumerate(tree["left_children"]):
        if left == -1:
            continue
        f = tree["split_indices"][node]
        if tree["split_type"][node] == 1:
            top = max(tree["categories"]) + 2
            candidates[f] += list(range(top + 33)) + ODD_CATEGORIES
        else:
            t = np.float32(tree["split_conditions"][node])
            candidates[f] += [t, np.nextafter(t, np.float32(np.inf)),
                              np.nextafter(t, np.float32(-np.inf)), -t]
# XGBoost's DMatrix refuses infinities: the finite specials only.
X = edge_rows(candidates, len(names), float32=True,
              specials=[v for v in SPECIAL if not np.isinf(v)])
data = os.path.join(out, "lending_club_cat.csv")
write_matrix_csv(data, names, X)
booster = xgb.Booster()
booster.load_model(model)
expected = booster.predict(xgb.DMatrix(X, feature_names=names,
                                       feature_types=types,
                                       enable_categorical=True),
                           output_margin=True)
for kernel in (None, "reference"):
    got = score(model, data, os.path.join(out, f"cat_{kernel}.csv"), kernel)
    what = f"lending_club_cat, {kernel or 'fast layout'}"
    if got is not None and bits_equal(expected, got, what):
        print(f"ok {what}: {ROWS} edge rows give XGBoost's margins")

# Every LightGBM fixture: the layout against the reference walk.
fixtures = os.path.join(ROOT, "tests", "fixtures", "lightgbm")
for name in sorted(os.listdir(fixtures)):
    if not name.endswith(".model.txt"):
        continue
    model = os.path.join(fixtures, name)
    with open(model) as f:
        text = f.read()
    names = re.search(r"^feature_names=(.*)$", text, re.M).group(1).split()
    candidates = [[] for _ in names]
    for tree in text.split("\nTree=")[1:]:
        fields = dict(line.split("=", 1) for line in tree.splitlines()
                      if "=" in line)
        if "split_feature" not in fields:
            continue
        features = [int(v) for v in fields["split_feature"].split()]
        thresholds = [float(v) for v in fields["threshold"].split()]
        decision = [int(v) for v in fields["decision_type"].split()]
        for f, t, d in zip(features, thresholds, decision):
            if d & 1:  # categorical: threshold indexes cat_boundaries
                candidates[f] += list(range(70)) + ODD_CATEGORIES
            else:
                candidates[f] += [t, np.nextafter(t, np.inf),
                                  np.nextafter(t, -np.inf),
                                  float(np.nextafter(np.float32(t),
                                                     np.float32(np.inf))),
                                  -t, ZERO, -ZERO,
                                  np.nextafter(ZERO, np.inf),
                                  np.nextafter(ZERO, 0.0)]
    X = edge_rows(candidates, len(names), float32=False)
    data = os.path.join(out, name + ".csv")
    write_rows(data, names, X)
    reference = score(model, data, os.path.join(out, name + ".ref.csv"),
                      "reference", double=True)
    for kernel in (None, "scalar"):
        what = kernel or "default layout"
        fast = score(model, data, os.path.join(out, f"{name}.{what}.csv"),
                     kernel, double=True)
        if fast is None or reference is None:
            continue
        same = (fast.view(np.uint64) == reference.view(np.uint64)) | \
            (np.isnan(fast) & np.isnan(reference))
        if expect(same.all(), f"{name}, {what}: {(~same).sum()} of "
                  f"{same.size} margins differ from the reference walk"):
            print(f"ok {name}: {ROWS} edge rows, {what} == reference walk")
finish("fast layout edges")
