"""Trains fresh XGBoost models at test time (Debian's python3-xgboost, fixed
seeds) over many objectives, depths, missing-value rates, tree methods,
dart, random forests and categorical features, saves them as JSON, and
checks that `tandem score` gives XGBoost's own predictions bit for bit as
float32: transformed scores and margins."""
import json
import os

import numpy as np
import xgboost as xgb

from common import bits_equal, expect, finish, read_scores, run, tmpdir, \
    write_matrix_csv

out = tmpdir()
print("xgboost", xgb.__version__)


def make_data(seed, rows, cols, nan_rate, n_cat=0, n_levels=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, cols)).astype(np.float32)
    X[:, 0] *= 1000  # a wide-ranged column
    X[:, 1] = np.round(X[:, 1] * 3)  # a column with ties
    for j in range(cols - n_cat, cols):
        X[:, j] = rng.integers(0, n_levels, size=rows)
    if nan_rate > 0:
        X[rng.random(size=X.shape) < nan_rate] = np.nan
    signal = np.nan_to_num(X[:, 2]) + 0.5 * np.nan_to_num(X[:, 3]) + \
        0.001 * np.nan_to_num(X[:, 0])
    if n_cat:
        signal += np.where(np.nan_to_num(X[:, cols - 1]) % 2 == 1, 1.0, -0.5)
    return X, signal, rng


def labels_for(objective, signal, rng, num_class):
    n = len(signal)
    noisy = signal + rng.normal(scale=0.5, size=n)
    if objective.startswith("binary:"):
        return (noisy > 0).astype(np.float32)
    if objective == "reg:logistic":
        return (1 / (1 + np.exp(-noisy))).astype(np.float32)
    if objective.startswith("multi:"):
        return np.digitize(noisy, np.quantile(noisy, np.linspace(0, 1, num_class + 1)[1:-1])).astype(np.float32)
    if objective in ("count:poisson", "reg:tweedie"):
        return rng.poisson(np.exp(noisy / 3)).astype(np.float32)
    if objective == "reg:gamma":
        return np.exp(noisy / 3).astype(np.float32) + 0.01
    if objective == "reg:squaredlogerror":
        return np.abs(noisy).astype(np.float32)
    if objective == "survival:cox":
        times = np.exp(noisy / 2) + 0.1
        return np.where(rng.random(n) < 0.2, -times, times).astype(np.float32)
    if objective.startswith("rank:"):
        return np.clip(np.round(noisy + 2), 0, 4).astype(np.float32)
    return noisy.astype(np.float32)


def check(name, params, rounds, X, y, X_test, feature_names=None,
          feature_types=None, group=None):
    kwargs = {}
    if feature_types is not None:
        kwargs = dict(feature_types=feature_types, enable_categorical=True)
    dtrain = xgb.DMatrix(X, label=y, feature_names=feature_names, **kwargs)
    if group is not None:
        dtrain.set_group(group)
    params = dict(params, seed=7, nthread=2)
    booster = xgb.train(params, dtrain, rounds)
    model = os.path.join(out, name + ".json")
    booster.save_model(model)
    dtest = xgb.DMatrix(X_test, feature_names=feature_names, **kwargs)
    names = feature_names or [f"f{i}" for i in range(X.shape[1])]
    data = os.path.join(out, name + ".csv")
    write_matrix_csv(data, names, X_test)
    ok = True
    for kind, margin in (("pred", False), ("margin", True)):
        expected = booster.predict(dtest, output_margin=margin)
        path = os.path.join(out, f"{name}.{kind}.csv")
        run("score", "--model", model, "--in", data, "--out", path,
            *(["--margin"] if margin else []))
        _, got = read_scores(path)
        ok &= bits_equal(expected.reshape(got.shape), got, f"{name} {kind}")
    if ok:
        print(f"ok {name}: {len(X_test)} rows bit-identical (scores and margins)")
    return booster, model, data


def check_iterations(name, booster, model, data, rounds):
    """--iterations N equals XGBoost's iteration_range=(0, N)."""
    names = booster.feature_names
    X = np.genfromtxt(data, delimiter=",", skip_header=1, dtype=np.float64,
                      ndmin=2, missing_values="", filling_values=np.nan)
    kwargs = {}
    if booster.feature_types and "c" in booster.feature_types:
        kwargs = dict(feature_types=booster.feature_types, enable_categorical=True)
    dtest = xgb.DMatrix(X.astype(np.float32), feature_names=names, **kwargs)
    expected = booster.predict(dtest, iteration_range=(0, rounds))
    path = os.path.join(out, f"{name}.it{rounds}.csv")
    run("score", "--model", model, "--in", data, "--out", path,
        "--iterations", rounds)
    _, got = read_scores(path)
    if bits_equal(expected.reshape(got.shape), got, f"{name} --iterations {rounds}"):
        print(f"ok {name}: --iterations {rounds} equals iteration_range=(0, {rounds})")


objectives = [
    "reg:squarederror", "reg:squaredlogerror", "reg:pseudohubererror",
    "reg:absoluteerror", "reg:logistic", "binary:logistic", "binary:logitraw",
    "binary:hinge", "count:poisson", "reg:gamma", "reg:tweedie",
    "survival:cox", "multi:softmax", "multi:softprob", "rank:pairwise",
    "rank:ndcg", "rank:map",
]
if tuple(int(p) for p in xgb.__version__.split(".")[:2]) >= (2, 0):
    objectives.append("reg:quantileerror")

# Every objective, with missing values, two depths.
for i, objective in enumerate(objectives):
    for depth in (2, 6):
        X, signal, rng = make_data(100 + i, 600, 8, nan_rate=0.1)
        num_class = 3 if objective.startswith("multi:") else 0
        y = labels_for(objective, signal, rng, num_class)
        params = {"objective": objective, "max_depth": depth, "eta": 0.3}
        if num_class:
            params["num_class"] = num_class
        group = None
        if objective.startswith("rank:"):
            group = [60] * 10
        X_test, _, _ = make_data(900 + i, 300, 8, nan_rate=0.1)
        check(f"{objective.replace(':', '_')}_d{depth}", params, 15, X, y,
              X_test, group=group)

# Missing-value rates and tree methods.
for nan_rate in (0.0, 0.3, 0.7):
    for method in ("exact", "hist", "approx"):
        X, signal, rng = make_data(7, 800, 10, nan_rate=nan_rate)
        y = labels_for("binary:logistic", signal, rng, 0)
        X_test, _, _ = make_data(8, 400, 10, nan_rate=nan_rate)
        check(f"nan{int(nan_rate * 100)}_{method}",
              {"objective": "binary:logistic", "max_depth": 5,
               "tree_method": method}, 25, X, y, X_test)

# Deep trees, many rounds, and explicit base scores.
X, signal, rng = make_data(11, 2000, 12, nan_rate=0.05)
y = labels_for("reg:squarederror", signal, rng, 0)
X_test, _, _ = make_data(12, 1000, 12, nan_rate=0.05)
check("deep_regression", {"objective": "reg:squarederror", "max_depth": 12,
                          "eta": 0.05}, 200, X, y, X_test)
yb = labels_for("binary:logistic", signal, rng, 0)
check("base_score_0_2", {"objective": "binary:logistic", "base_score": 0.2,
                         "max_depth": 3}, 20, X, yb, X_test)
check("logitraw_base_0_7", {"objective": "binary:logitraw", "base_score": 0.7,
                            "max_depth": 3}, 20, X, yb, X_test)
yp = labels_for("count:poisson", signal, rng, 0)
check("poisson_base_3", {"objective": "count:poisson", "base_score": 3.0,
                         "max_depth": 3}, 20, X, yp, X_test)

# dart (tree weights), with and without normalization, and random forests.
for normalize in ("tree", "forest"):
    check(f"dart_{normalize}", {"booster": "dart", "objective": "binary:logistic",
                                "rate_drop": 0.3, "skip_drop": 0.2,
                                "normalize_type": normalize, "max_depth": 4},
          30, X, yb, X_test)
check("dart_multiclass", {"booster": "dart", "objective": "multi:softprob",
                          "num_class": 4, "rate_drop": 0.2, "max_depth": 3},
      15, X, labels_for("multi:softprob", signal, rng, 4), X_test)
check_iterations("dart_multiclass", *check(
    "dart_multiclass_it", {"booster": "dart", "objective": "multi:softprob",
                           "num_class": 4, "rate_drop": 0.2, "max_depth": 3},
    15, X, labels_for("multi:softprob", signal, rng, 4), X_test), 6)
check_iterations("random_forest", *check(
    "random_forest", {"objective": "binary:logistic", "num_parallel_tree": 8,
                      "subsample": 0.7, "colsample_bynode": 0.6,
                      "max_depth": 5}, 3, X, yb, X_test), 2)
check_iterations("deep_regression", *check(
    "deep_regression_it", {"objective": "reg:squarederror", "max_depth": 6},
    50, X, y, X_test), 17)

# Categorical features: one-hot and partition splits, unseen categories,
# negative codes and missing values in the scored data.
for onehot in (2, 16):
    for method in ("hist", "approx"):
        X, signal, rng = make_data(21, 1500, 8, nan_rate=0.05, n_cat=3,
                                   n_levels=12)
        y = labels_for("binary:logistic", signal, rng, 0)
        X_test, _, trng = make_data(22, 800, 8, nan_rate=0.05, n_cat=3,
                                    n_levels=12)
        cats = X_test[:, 5:]
        cats[trng.random(cats.shape) < 0.05] = 12   # unseen
        cats[trng.random(cats.shape) < 0.02] = 40   # past any bitset
        cats[trng.random(cats.shape) < 0.02] = -1   # negative
        cats[trng.random(cats.shape) < 0.02] = 2.5  # not an integer
        X_test[:, 5:] = cats
        names = [f"x{i}" for i in range(5)] + ["cat_a", "cat_b", "cat_c"]
        types = ["q"] * 5 + ["c"] * 3
        check(f"categorical_onehot{onehot}_{method}",
              {"objective": "binary:logistic", "tree_method": method,
               "max_cat_to_onehot": onehot, "max_depth": 5},
              30, X, y, X_test, feature_names=names, feature_types=types)
        check(f"categorical_multiclass_{onehot}_{method}",
              {"objective": "multi:softprob", "num_class": 3,
               "tree_method": method, "max_cat_to_onehot": onehot,
               "max_depth": 4},
              10, X, labels_for("multi:softprob", signal, rng, 3), X_test,
              feature_names=names, feature_types=types)

finish("xgboost trained models")
