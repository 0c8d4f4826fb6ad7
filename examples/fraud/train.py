#!/usr/bin/python3
"""Trains the fraud example's model (examples/fraud/model.json).

The training features come from tandem itself: `tandem batch
pipeline.yaml --features-only` over generate.py's history computes every
feature exactly as the live endpoint will, so there is no second feature
implementation to drift from the first. The label (is_fraud) is joined by
txn_id. XGBoost (python3-xgboost) then trains 200 trees of depth 6.

  examples/fraud/train.py [--history H.csv] [--out model.json] [--tandem T]
                          [--pipeline P.yaml]

The pipeline needs no model: line yet (--features-only runs without one).
The training columns are every number and category field and every
feature that --features-only writes (the keys and the decision rules'
lookup excepted), so the model may use a raw field such as amount.

Without --history it generates the default history (seed 7, 5,000 cards,
the first 80% of 30 days) into a temporary directory. It prints the
validation ROC AUC (last 20% of the history by time) and the features'
importance, then trains on the whole history and writes the model.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def roc_auc(labels, scores):
    """ROC AUC by the rank-sum formula (ties get their average rank)."""
    order = pd.Series(scores).rank(method="average").to_numpy()
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return (order[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def features(tandem, pipeline, history, tmp):
    """The pipeline's features for every history event, from tandem."""
    out = os.path.join(tmp, "features.csv")
    # The lookup feature reads a table: an empty store gives its default
    # (it is not a model feature; the decision rules use it).
    subprocess.run([tandem, "batch", pipeline, "--in", history, "--out", out,
                    "--features-only", "--store", os.path.join(tmp, "tables")],
                   check=True)
    return pd.read_csv(out, dtype={"txn_id": str, "card_id": str})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", help="history CSV from generate.py")
    parser.add_argument("--out", default=os.path.join(HERE, "model.json"))
    parser.add_argument("--tandem", default=os.path.join(ROOT, "build", "tandem"))
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--pipeline", default=os.path.join(HERE, "pipeline.yaml"))
    args = parser.parse_args()
    pipeline = args.pipeline
    with tempfile.TemporaryDirectory() as tmp:
        history = args.history
        if history is None:
            prefix = os.path.join(tmp, "txns")
            subprocess.run([sys.executable, os.path.join(HERE, "generate.py"),
                            "--split", "0.8", "--out", prefix], check=True)
            history = prefix + ".history.csv"
        feats = features(args.tandem, pipeline, history, tmp)
        labels = pd.read_csv(history, usecols=["txn_id", "is_fraud"],
                             dtype={"txn_id": str})
    data = feats.merge(labels, on="txn_id", how="inner", validate="one_to_one")
    names = [c for c in feats.columns
             if c not in ("txn_id", "card_id", "ts", "duplicate", "profile_score")]
    x = data[names].to_numpy(dtype=np.float32)
    y = data["is_fraud"].to_numpy()
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1,
              "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 2,
              "tree_method": "hist", "nthread": 2, "seed": 7,
              "eval_metric": "auc"}
    cut = int(len(data) * 0.8)  # the file is in time order
    train = xgb.DMatrix(x[:cut], label=y[:cut], feature_names=names)
    valid = xgb.DMatrix(x[cut:], label=y[cut:], feature_names=names)
    booster = xgb.train(params, train, args.trees)
    auc = roc_auc(y[cut:], booster.predict(valid))
    print("validation (last 20%% of the history by time): %d events, "
          "%d fraud, ROC AUC %.4f" % (len(y) - cut, y[cut:].sum(), auc))
    gain = booster.get_score(importance_type="gain")
    top = sorted(gain.items(), key=lambda kv: -kv[1])[:8]
    print("top features by gain: " + ", ".join(k for k, _ in top))
    final = xgb.train(params, xgb.DMatrix(x, label=y, feature_names=names),
                      args.trees)
    final.save_model(args.out)
    print("wrote %s (%d trees, %d features, trained on %d events)"
          % (args.out, args.trees, len(names), len(y)))


if __name__ == "__main__":
    main()
