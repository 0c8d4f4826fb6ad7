"""tandem's linear model format (docs/linear-models.md), checked against
values computed independently here in Python: the same sum in the same
order (intercept, then each term in the file's order) with Python's double
arithmetic and math.exp, which must match exactly; and numpy's dot product,
which must agree to 1e-12. Plus imputation, refused missing values and
malformed files."""
import json
import math
import os

import numpy as np

from common import expect, fail, finish, run, tmpdir

out = tmpdir()
rng = np.random.default_rng(5)
names = ["amount", "age", "tenure", "balance", "utilization"]
X = rng.normal(size=(500, len(names))) * [1000, 20, 5, 3000, 0.3] + [500, 40, 6, 2000, 0.4]
X[rng.random(X.shape) < 0.1] = np.nan
data = os.path.join(out, "rows.csv")
with open(data, "w") as f:
    f.write("id," + ",".join(names) + "\n")
    for i, row in enumerate(X):
        f.write(f"r{i}," + ",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")

coef = {n: float(c) for n, c in zip(names, rng.normal(size=len(names)) * [1e-3, 0.02, 0.1, 1e-4, 1.5])}
impute = {"amount": 0.0, "age": 40.0, "tenure": 5.5, "balance": 1234.5, "utilization": 0.25}


def write_model(name, model):
    path = os.path.join(out, name + ".json")
    with open(path, "w") as f:
        json.dump(model, f)
    return path


def linear(intercept, coefs, row):
    total = intercept
    for n, x in zip(names, row):
        total += coefs[n] * (impute[n] if math.isnan(x) else x)
    return total


def scores(model_path, extra=()):
    path = os.path.join(out, "scores.csv")
    run("score", "--model", model_path, "--in", data, "--out", path, *extra)
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)


def compare(name, got, expected, via_numpy):
    expected = np.asarray(expected, dtype=np.float64).reshape(got.shape)
    same = got.view(np.uint64) == expected.view(np.uint64)
    if not same.all():
        i = tuple(np.argwhere(~same)[0])
        fail(f"{name}: {int((~same).sum())} differ; first {i}: {expected[i]!r} vs {got[i]!r}")
        return
    close = np.allclose(got, np.asarray(via_numpy).reshape(got.shape), rtol=1e-12, atol=1e-12)
    if expect(close, f"{name}: disagrees with numpy beyond 1e-12"):
        print(f"ok {name}: {got.size} values exact, and within 1e-12 of numpy")


Ximp = np.where(np.isnan(X), [impute[n] for n in names], X)
w = np.array([coef[n] for n in names])
base = {"format": "tandem-linear", "intercept": -0.75, "coefficients": coef,
        "missing": impute}
margin = [linear(-0.75, coef, row) for row in X]
for link, fn, np_fn in (("identity", lambda m: m, lambda m: m),
                        ("logit", lambda m: 1.0 / (1.0 + math.exp(-m)),
                         lambda m: 1 / (1 + np.exp(-m))),
                        ("exp", math.exp, np.exp)):
    path = write_model(link, dict(base, link=link))
    compare(f"{link}", scores(path), [fn(m) for m in margin], np_fn(Ximp @ w - 0.75))
    compare(f"{link} --margin", scores(path, ["--margin"]), margin, Ximp @ w - 0.75)

# Softmax over three classes: one coefficient per class for each feature.
k = 3
coef3 = {n: [float(c) for c in rng.normal(size=k) * 0.01] for n in names}
b3 = [0.1, -0.2, 0.05]
path = write_model("softmax", {"format": "tandem-linear", "link": "softmax",
                               "intercept": b3, "coefficients": coef3,
                               "missing": impute})
expected = []
for row in X:
    m = [linear(b3[c], {n: coef3[n][c] for n in names}, row) for c in range(k)]
    top = max(m)
    e = [math.exp(v - top) for v in m]
    s = sum(e)
    expected.append([v / s for v in e])
W3 = np.array([coef3[n] for n in names])
M = Ximp @ W3 + b3
P = np.exp(M - M.max(axis=1, keepdims=True))
compare("softmax", scores(path), expected, P / P.sum(axis=1, keepdims=True))

# Missing values: "error" refuses the row, naming the place, and writes nothing.
strict = write_model("strict", dict(base, link="logit", missing={"age": "error"},
                                    default_missing=0.0))
first_missing_age = next(i for i, row in enumerate(X) if math.isnan(row[1]))
proc = run("score", "--model", strict, "--in", data, "--out",
           os.path.join(out, "strict.csv"), check=False)
expect(proc.returncode == 2 and
       f"rows.csv:{first_missing_age + 2}:" in proc.stderr and
       "column \"age\" is missing, and the model does not allow" in proc.stderr and
       not os.path.exists(os.path.join(out, "strict.csv")),
       f"missing age with \"error\": {proc.returncode} {proc.stderr}")
print("ok a missing value the model refuses names the row and column")

# A scorecard: points per bin ([-inf, e1), [e1, e2), ..., [en, inf)) on
# top of a linear part; a binned-only feature; imputed and explicit
# missing points; bin edges hit exactly.
card = {"format": "tandem-linear", "link": "identity", "intercept": 600.0,
        "coefficients": {"amount": -0.01},
        "missing": {"amount": 0.0, "age": 40.0},
        "bins": {"age": {"edges": [25, 40, 60], "points": [-20, 5, 15, 25]},
                 "utilization": {"edges": [0.2, 0.5, 0.9],
                                 "points": [30, 10, -15, -40], "missing": -5}}}
path = write_model("scorecard", card)
X_card = X.copy()
X_card[::7, 1] = 40.0  # exactly on an edge: belongs to [40, 60)
X_card[::11, 4] = 0.5
with open(data, "w") as f:
    f.write("id," + ",".join(names) + "\n")
    for i, row in enumerate(X_card):
        f.write(f"r{i}," + ",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")


def points(edges, pts, x):
    i = 0
    while i < len(edges) and x >= edges[i]:
        i += 1
    return pts[i]


expected = []
for row in X_card:
    total = 600.0
    total += -0.01 * (0.0 if math.isnan(row[0]) else row[0])
    age = 40.0 if math.isnan(row[1]) else row[1]
    total += points([25, 40, 60], [-20, 5, 15, 25], age)
    total += -5 if math.isnan(row[4]) else points([0.2, 0.5, 0.9], [30, 10, -15, -40], row[4])
    expected.append(total)
got = scores(path)
if expect(got.ravel().tolist() == expected, "scorecard differs from Python"):
    print(f"ok scorecard: {len(expected)} scores exact (bins, edges, imputed and missing points)")
info = json.loads(run("inspect", "--json", path).stdout)
expect([f["name"] for f in info["features"]] == ["amount", "age", "utilization"],
       f"scorecard features {info['features']}")
strict_card = write_model("strict_card", dict(card, bins=dict(card["bins"], tenure={
    "edges": [1, 5], "points": [0, 1, 2], "missing": "error"})))
proc = run("score", "--model", strict_card, "--in", data, "--out",
           os.path.join(out, "sc.csv"), check=False)
expect(proc.returncode == 2 and "column \"tenure\" is missing" in proc.stderr,
       f"binned missing with error: {proc.stderr}")
bad_bins = write_model("bad_bins", dict(card, bins={"age": {"edges": [40, 25], "points": [1, 2, 3]}}))
proc = run("inspect", bad_bins, check=False)
expect(proc.returncode == 2 and "at /bins/age/edges/1: edges must be finite and increasing" in proc.stderr,
       f"bad bins: {proc.stderr}")
bad_points = write_model("bad_points", dict(card, bins={"age": {"edges": [25], "points": [1]}}))
proc = run("inspect", bad_points, check=False)
expect(proc.returncode == 2 and "\"points\" must have 2 numbers" in proc.stderr,
       f"bad points: {proc.stderr}")
print("ok scorecard errors")

# Malformed files name the JSON pointer.
bad_cases = [
    ("unknown-key", dict(base, link="logit", extra=1), "at /extra: unknown member \"extra\""),
    ("unknown-link", dict(base, link="probit"), "at /link: unknown link \"probit\""),
    ("array-intercept", dict(base, link="logit", intercept=[1, 2]),
     "only a softmax model has one intercept per class"),
    ("softmax-scalar", dict(base, link="softmax"), "needs one intercept per class"),
    ("missing-unknown", dict(base, link="logit", missing={"nope": 1}),
     "at /missing/nope: \"nope\" is not a feature of this model"),
    ("coef-not-number", dict(base, link="logit", coefficients=dict(coef, age="x")),
     "at /coefficients/age: expected a number"),
    ("softmax-short", {"format": "tandem-linear", "link": "softmax", "intercept": b3,
                       "coefficients": dict(coef3, age=[1, 2])},
     "at /coefficients/age: has 2 values, expected 3"),
]
for name, model, message in bad_cases:
    proc = run("inspect", write_model(name, model), check=False)
    if expect(proc.returncode == 2 and message in proc.stderr,
              f"{name}: {proc.returncode} {proc.stderr.strip()}"):
        print(f"ok {name}: {proc.stderr.strip()}")
info = json.loads(run("inspect", "--json", write_model("info", dict(base, link="logit"))).stdout)
expect(info["format"] == "tandem-linear" and info["objective"] == "linear:logit" and
       [f["name"] for f in info["features"]] == names, f"inspect: {info}")
finish("linear models")
