"""Conventions users already have.

1. `tandem score --margin` names its values margin (CSV `margin`,
   `margin_0..`; JSON Lines `"margin"`, `"margins"`), and the values are
   the library's own margins: xgboost's output_margin for a model trained
   here (bit for bit as float32), LightGBM's raw scores from the
   multiclass fixture (exact). A margin in a column named score was read
   downstream as a probability.
"""
import json
import os

import numpy as np
import pandas as pd
import xgboost as xgb

from common import FIXTURES, bits_equal, expect, finish, tmpdir
from pipeline_util import tandem

out = tmpdir()
rng = np.random.default_rng(20)

# ---- 1. --margin: named margin, equal to the library's margins ----
X = rng.normal(size=(300, 4)) * [1, 10, 100, 0.1]
X[rng.random(X.shape) < 0.1] = np.nan
y = (np.nan_to_num(X[:, 0]) + rng.normal(size=300) > 0).astype(float)
names = ["a", "b", "c", "d"]
booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": 1},
                    xgb.DMatrix(X, label=y, feature_names=names), 10)
model = os.path.join(out, "m.json")
booster.save_model(model)
rows = os.path.join(out, "rows.csv")
pd.DataFrame(X, columns=names).to_csv(rows, index=False, float_format="%.9g")
X32 = pd.read_csv(rows).to_numpy(dtype=np.float32)
want = booster.predict(xgb.DMatrix(X32, feature_names=names), output_margin=True)
for suffix in (".csv", ".jsonl"):
    dst = os.path.join(out, "margins" + suffix)
    r = tandem("score", "--model", model, "--in", rows, "--out", dst, "--margin",
               "--no-registry")
    if not expect(r.returncode == 0, f"score --margin {suffix}: {r.stderr}"):
        continue
    if suffix == ".csv":
        frame = pd.read_csv(dst, dtype=str)
        expect(list(frame.columns) == ["margin"], f"--margin CSV header {list(frame.columns)}")
        got = np.array([float(v) for v in frame.iloc[:, 0]], dtype=np.float32)
    else:
        lines = [json.loads(line) for line in open(dst)]
        expect(all(list(obj) == ["margin"] for obj in lines),
               f"--margin JSON Lines keys {list(lines[0])}")
        got = np.array([obj.get("margin", np.nan) for obj in lines], dtype=np.float32)
    bits_equal(want, got, f"--margin {suffix} vs xgboost output_margin")
# Without --margin the column stays score.
dst = os.path.join(out, "scores.csv")
r = tandem("score", "--model", model, "--in", rows, "--out", dst, "--no-registry")
expect(r.returncode == 0 and open(dst).readline() == "score\n",
       f"score header without --margin: {r.stderr}")
# Several outputs: LightGBM's multiclass fixture and its raw scores.
base = os.path.join(FIXTURES, "lightgbm", "synth_multiclass3")
raw = pd.read_csv(base + ".raw.csv", float_precision="round_trip").to_numpy()
for suffix in (".csv", ".jsonl"):
    dst = os.path.join(out, "multi" + suffix)
    r = tandem("score", "--model", base + ".model.txt", "--in", base + ".input.csv",
               "--out", dst, "--margin", "--no-registry")
    if not expect(r.returncode == 0, f"multiclass --margin {suffix}: {r.stderr}"):
        continue
    if suffix == ".csv":
        frame = pd.read_csv(dst, float_precision="round_trip")
        expect(list(frame.columns) == ["margin_0", "margin_1", "margin_2"],
               f"multiclass --margin header {list(frame.columns)}")
        got = frame.to_numpy()
    else:
        lines = [json.loads(line) for line in open(dst)]
        expect(all(list(obj) == ["margins"] for obj in lines),
               f"multiclass --margin JSON keys {list(lines[0])}")
        got = np.array([obj.get("margins") for obj in lines])
    expect(got.shape == raw.shape and np.array_equal(got, raw),
           f"multiclass --margin {suffix}: differs from LightGBM's raw scores")

finish("test_conventions")
