#!/usr/bin/python3
"""Regenerates the XGBoost seed models in tests/fuzz/corpus/model/.

Run with Debian's python (python3-xgboost 1.7.4), from the repository root:

    /usr/bin/python3 tests/fuzz/make_corpus.py

It trains tiny models on fixed random data (so the output is stable), saves
them with Booster.save_model, and derives a few variants and malformed files
from them by editing the JSON text. The regress-* files are written by hand
and are left alone.
"""
import json
import os
import re

import numpy as np
import pandas as pd
import xgboost as xgb

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "model")


def data(rows=200, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    x[rng.random(size=x.shape) < 0.1] = np.nan  # exercise default_left
    return x, rng


def train(params, dtrain, rounds=5):
    params = dict(params, seed=0, nthread=1)
    return xgb.train(params, dtrain, num_boost_round=rounds)


def save(booster, name):
    path = os.path.join(OUT, name)
    booster.save_model(path)
    return path


def write(name, text):
    with open(os.path.join(OUT, name), "w") as f:
        f.write(text)


def main():
    os.makedirs(OUT, exist_ok=True)

    # binary:logistic, gbtree, named features.
    x, rng = data()
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) > 0).astype(int)
    d = xgb.DMatrix(x, label=y, feature_names=["a", "b", "c", "d"],
                    missing=np.nan)
    binary = save(train({"objective": "binary:logistic", "max_depth": 2}, d),
                  "binary_logistic.json")

    # multi:softprob, 3 classes, unnamed features.
    x, rng = data(seed=1)
    y = rng.integers(0, 3, size=len(x))
    d = xgb.DMatrix(x, label=y, missing=np.nan)
    multi = save(train({"objective": "multi:softprob", "num_class": 3,
                        "max_depth": 2}, d, rounds=3), "multi_softprob.json")

    # dart booster: weight_drop holds each tree's weight.
    x, rng = data(seed=2)
    y = np.nan_to_num(x[:, 2]) * 2.0 + rng.normal(size=len(x)) * 0.1
    d = xgb.DMatrix(x, label=y, missing=np.nan)
    save(train({"booster": "dart", "objective": "reg:squarederror",
                "max_depth": 2, "rate_drop": 0.5, "skip_drop": 0.0}, d),
         "dart_regression.json")

    # Categorical splits (split_type 1, categories_* arrays, NaN thresholds):
    # one partition-based feature and one one-hot feature.
    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame({
        "color": pd.Categorical(rng.choice(list("abcdefgh"), size=n)),
        "size": pd.Categorical(rng.choice(["s", "m"], size=n)),
        "x": rng.normal(size=n).astype(np.float32),
    })
    y = (frame["color"].isin(["a", "c", "f"]).astype(int) +
         (frame["size"] == "m").astype(int) + (frame["x"] > 0).astype(int))
    d = xgb.DMatrix(frame, label=y.astype(float), enable_categorical=True)
    save(train({"objective": "reg:squarederror", "tree_method": "hist",
                "max_depth": 3, "max_cat_to_onehot": 4}, d),
         "categorical.json")

    # count:poisson (log link and a log base_score).
    x, rng = data(seed=4)
    y = rng.poisson(lam=np.exp(np.nan_to_num(x[:, 0]) * 0.5))
    d = xgb.DMatrix(x, label=y, missing=np.nan)
    save(train({"objective": "count:poisson", "max_depth": 2}, d),
         "count_poisson.json")

    # XGBoost 3 style: base_score as a list "[5E-1]" and version 3.0.x
    # (which also turns on the clamped sigmoid).
    text = open(binary).read()
    text, n1 = re.subn(r'"base_score":"([^"]*)"', r'"base_score":"[\1]"', text)
    text, n2 = re.subn(r'"version":\[[0-9,]*\]', '"version":[3,0,2]', text)
    assert n1 == 1 and n2 == 1
    write("base_score_list.json", text)

    # A per-class base_score list for the multiclass model.
    text = open(multi).read()
    text, n1 = re.subn(r'"base_score":"[^"]*"',
                       '"base_score":"[2E-1,5E-1,3E-1]"', text)
    assert n1 == 1
    write("base_score_list_multi.json", text)

    # Malformed files, each derived from the binary model.
    model = json.load(open(binary))

    def variant(name, edit):
        m = json.loads(json.dumps(model))
        edit(m, m["learner"]["gradient_booster"]["model"]["trees"][0])
        write(name, json.dumps(m, separators=(",", ":")))

    def cycle(m, t):
        t["left_children"][1] = 0  # node 1 points back at the root

    def out_of_range(m, t):
        t["right_children"][0] = len(t["right_children"])

    def short_array(m, t):
        t["split_conditions"] = t["split_conditions"][:-1]

    def bad_feature(m, t):
        t["split_indices"][0] = 99

    variant("bad_cycle.json", cycle)
    variant("bad_child_out_of_range.json", out_of_range)
    variant("bad_short_array.json", short_array)
    variant("bad_feature_index.json", bad_feature)
    text = open(binary).read()
    write("bad_truncated.json", text[: len(text) // 2])


if __name__ == "__main__":
    main()
