"""Exact contributions through the vector lanes (src/model/shap_batch.c:
XGBoost's TreeSHAP for 16 rows at once, one row per lane), against
XGBoost 1.7.4's own Booster.predict(pred_contribs=True), bit for bit.

Depth-8 models are trained here with python3-xgboost on few features (so
paths meet the same feature again and are unwound), with missing values,
categorical splits, multiclass (one block per class), dart and
--iterations. `tandem score --contribs` runs them with the leaf tables
left out (TANDEM_SHAP_TABLES=off), so every tree goes through the lanes,
with each lane kernel (TANDEM_KERNEL=avx512, avx2, scalar: the portable
one; a kernel this CPU lacks falls back to the portable one), on row
counts that fill several blocks and a part one (333), one part block
(5) and too few rows for the lanes (3, the per-row recursion). 1 and 2
threads write the same bytes, and the default (tables and lanes) the
same bytes again."""
import filecmp
import os

import numpy as np
import xgboost as xgb

from common import bits_equal, expect, finish, run, tmpdir, write_matrix_csv

out = tmpdir()


def read_csv(path):
    return np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64,
                         ndmin=2, missing_values="", filling_values=np.nan)


def make_data(seed, rows, cols, n_cat=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, cols)).astype(np.float32)
    X[:, 1] = np.round(X[:, 1] * 2)  # ties: rows on both sides of a split
    for j in range(cols - n_cat, cols):
        X[:, j] = rng.integers(0, 6, size=rows)
    X[rng.random(size=X.shape) < 0.1] = np.nan
    signal = np.nan_to_num(X[:, 0]) * np.nan_to_num(X[:, 1]) + \
        np.sin(3 * np.nan_to_num(X[:, 2])) + 0.5 * np.nan_to_num(X[:, 3])
    noisy = signal + rng.normal(scale=0.3, size=rows)
    return X, noisy


def score(model, data, path, threads, env):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        run("score", "--model", model, "--in", data, "--out", path,
            "--threads", threads, *flags)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check(name, params, rounds, X, y, types=None, iterations=None):
    global flags
    kwargs = {}
    if types is not None:
        kwargs = dict(feature_types=types, enable_categorical=True)
    names = [f"x{i}" for i in range(X.shape[1])]
    booster = xgb.train(dict(params, seed=5, nthread=2, max_depth=8),
                        xgb.DMatrix(X, label=y, feature_names=names, **kwargs),
                        rounds)
    model = os.path.join(out, name + ".json")
    booster.save_model(model)
    depth = max(len(line) - len(line.lstrip("\t"))
                for tree in booster.get_dump() for line in tree.split("\n"))
    expect(depth >= 6, f"{name}: trees only {depth} deep")
    X_test, _ = make_data(hash(name) % 1000, 333, X.shape[1],
                          n_cat=0 if types is None else types.count("c"))
    flags = ["--contribs"]
    extra = {}
    if iterations:
        flags += ["--iterations", iterations]
        extra = {"iteration_range": (0, iterations)}
    for rows in (333, 5, 3):
        data = os.path.join(out, f"{name}_{rows}.csv")
        write_matrix_csv(data, names, X_test[:rows])
        want = booster.predict(
            xgb.DMatrix(X_test[:rows], feature_names=names, **kwargs),
            pred_contribs=True, **extra).reshape(rows, -1)
        first = None
        for kernel in ("avx512", "avx2", "scalar"):
            for threads in (1, 2):
                path = os.path.join(out, f"{name}_{rows}_{kernel}_{threads}.csv")
                score(model, data, path, threads,
                      {"TANDEM_SHAP_TABLES": "off", "TANDEM_KERNEL": kernel})
                if first is None:
                    first = path
                    got = read_csv(path)
                    what = f"{name}, {rows} rows, {kernel} lanes"
                    if bits_equal(want.astype(np.float32),
                                  got.astype(np.float32), what):
                        print(f"ok {what}: {got.shape[0]} x {got.shape[1]} "
                              "bit-identical to XGBoost")
                else:
                    expect(filecmp.cmp(first, path, shallow=False),
                           f"{name}, {rows} rows: {kernel} with {threads} "
                           f"threads differs from {os.path.basename(first)}")
        path = os.path.join(out, f"{name}_{rows}_default.csv")
        score(model, data, path, 2, {})
        expect(filecmp.cmp(first, path, shallow=False),
               f"{name}, {rows} rows: the default (tables) differs from the "
               "lanes")


flags = []
X, y = make_data(1, 3000, 5)
check("binary_d8", {"objective": "binary:logistic"}, 12, X,
      (y > 0).astype(np.float32))
y3 = np.digitize(y, np.quantile(y, [0.33, 0.66])).astype(np.float32)
check("multiclass_d8", {"objective": "multi:softprob", "num_class": 3}, 6,
      X, y3, iterations=4)
check("dart_d8", {"booster": "dart", "objective": "reg:squarederror",
                  "rate_drop": 0.3, "skip_drop": 0.1}, 10, X,
      y.astype(np.float32))
Xc, yc = make_data(2, 3000, 6, n_cat=2)
check("categorical_d8", {"objective": "reg:squarederror",
                         "tree_method": "hist", "max_cat_to_onehot": 2}, 8,
      Xc, yc.astype(np.float32), types=["q"] * 4 + ["c"] * 2)
finish("test_contribs_lanes")
