#!/usr/bin/env python3
"""Trains the benchmark's models with XGBoost (python3-xgboost) and writes
each model's JSON and a CSV of rows in the model's feature order to DIR.

  make_models.py DIR [NAME...]

  large:   500 trees, depth 8, binary:logistic, 32 features, 5% missing
  medium:  100 trees, depth 6, binary:logistic, 32 features, 5% missing
  classes: 4 classes x 100 rounds, depth 6, multi:softprob, 32 features
  small:   10 trees, depth 6, binary:logistic, 32 features, 5% missing
           (where the transport, not the trees, is most of a request)

With NAMEs, only those models are trained (the others take minutes).

The data is synthetic with a fixed seed, so every run trains the same
models. Depth is forced by max_depth with min_child_weight=0 and lambda=0
so trees actually reach it.
"""
import os
import sys

import numpy as np
import xgboost as xgb

FEATURES = 32


def data(rows, seed, classes=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    signal = x[:, 0] * x[:, 1] + np.sin(x[:, 2] * 3) + x[:, 3:8].sum(axis=1) * 0.3
    signal += rng.normal(scale=0.5, size=rows)
    if classes:
        y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    else:
        y = (signal > np.median(signal)).astype(np.float32)
    x[rng.random(size=x.shape) < 0.05] = np.nan
    return x, y


def train(out_dir, name, rounds, depth, classes=0):
    x, y = data(200000, 7, classes)
    params = {"max_depth": depth, "eta": 0.1, "min_child_weight": 0,
              "lambda": 0, "tree_method": "hist", "max_bin": 256,
              "nthread": os.cpu_count() or 2, "seed": 1}
    if classes:
        params.update(objective="multi:softprob", num_class=classes)
    else:
        params.update(objective="binary:logistic")
    booster = xgb.train(params, xgb.DMatrix(x, label=y), rounds)
    booster.save_model(os.path.join(out_dir, name + ".model.json"))
    sample, _ = data(10000, 11, classes)
    with open(os.path.join(out_dir, name + ".input.csv"), "w") as fp:
        fp.write(",".join("f%d" % i for i in range(FEATURES)) + "\n")
        for row in sample:
            fp.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")


MODELS = {
    "large": (500, 8, 0),
    "medium": (100, 6, 0),
    "classes": (100, 6, 4),
    "small": (10, 6, 0),
}


def main():
    out_dir = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
        rounds, depth, classes = MODELS[name]
        train(out_dir, name, rounds, depth, classes=classes)


if __name__ == "__main__":
    main()
