"""examples/fraud/train.py trains a model that tandem scores as XGBoost does.

The script is run through its own shebang (so a python3 first on PATH
without numpy cannot break it), on a small seeded history from
generate.py. Its model must name the features `tandem batch
--features-only` writes, and `tandem score` over those features must
equal xgboost's own predictions bit for bit as float32: the independent
reference is the library the script trained with.

Then the newcomer's order: a copy of the example pipeline with no
`model:` line (no model exists yet) trains through train.py, whose
features include the raw field `amount` (--features-only writes the
number and category fields); with `model:` added, `tandem batch` scores
equal xgboost's predictions over --features-only output, bit for bit.
"""
import os
import subprocess

import numpy as np
import pandas as pd
import xgboost as xgb

from common import ROOT, TANDEM, bits_equal, expect, finish, read_scores, run, tmpdir

HERE = os.path.join(ROOT, "examples", "fraud")


def main():
    work = tmpdir()
    prefix = os.path.join(work, "txns")
    subprocess.run(["/usr/bin/python3", os.path.join(HERE, "generate.py"),
                    "--cards", "300", "--days", "10", "--seed", "11",
                    "--split", "0.8", "--out", prefix], check=True)
    model = os.path.join(work, "model.json")
    # A PATH whose python3 is not Debian's must not matter.
    fake = os.path.join(work, "fakebin")
    os.mkdir(fake)
    with open(os.path.join(fake, "python3"), "w") as f:
        f.write("#!/bin/sh\necho 'not this python' >&2\nexit 3\n")
    os.chmod(os.path.join(fake, "python3"), 0o755)
    env = dict(os.environ, PATH=fake + os.pathsep + os.environ["PATH"])
    proc = subprocess.run([os.path.join(HERE, "train.py"), "--history",
                           prefix + ".history.csv", "--out", model,
                           "--trees", "10", "--tandem", TANDEM],
                          env=env, capture_output=True, text=True)
    expect(proc.returncode == 0,
           f"train.py exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    if proc.returncode != 0:
        finish("fraud_train")
    features = os.path.join(work, "features.csv")
    run("batch", os.path.join(HERE, "pipeline.yaml"), "--in",
        prefix + ".live.csv", "--out", features, "--features-only",
        "--store", os.path.join(work, "tables"))
    booster = xgb.Booster(model_file=model)
    frame = pd.read_csv(features)
    names = booster.feature_names
    expect(set(names) <= set(frame.columns),
           f"the model's features {names} are not all in --features-only's "
           f"columns {list(frame.columns)}")
    x = frame[names].to_numpy(dtype=np.float32)
    expected = booster.predict(xgb.DMatrix(x, feature_names=names))
    matrix = os.path.join(work, "matrix.csv")
    frame[names].to_csv(matrix, index=False)
    out = os.path.join(work, "scores.csv")
    run("score", "--model", model, "--in", matrix, "--out", out)
    _, got = read_scores(out)
    bits_equal(expected, got[:, 0], "train.py's model, tandem vs xgboost")
    expect(len(expected) > 100, f"only {len(expected)} live events scored")
    no_model(work, prefix, env)
    finish("fraud_train")


def no_model(work, prefix, env):
    text = open(os.path.join(HERE, "pipeline.yaml")).read()
    expect("model: {path: model.json}\n" in text, "the example's model line moved")
    pipeline = os.path.join(work, "nomodel.yaml")
    with open(pipeline, "w") as f:
        f.write(text.replace("model: {path: model.json}\n", ""))
    model = os.path.join(work, "first.model.json")
    proc = subprocess.run([os.path.join(HERE, "train.py"), "--history",
                           prefix + ".history.csv", "--out", model,
                           "--trees", "8", "--tandem", TANDEM,
                           "--pipeline", pipeline],
                          env=env, capture_output=True, text=True)
    if not expect(proc.returncode == 0, "train.py on a pipeline without a "
                  f"model exited {proc.returncode}: {proc.stderr.strip()[-800:]}"):
        return
    booster = xgb.Booster(model_file=model)
    names = booster.feature_names
    expect("amount" in names and "mcc" in names,
           f"the raw fields amount and mcc are not training columns: {names}")
    with open(pipeline, "a") as f:
        f.write("model: {path: first.model.json}\n")
    features = os.path.join(work, "first.features.csv")
    tables = os.path.join(work, "tables")
    run("batch", pipeline, "--in", prefix + ".live.csv", "--out", features,
        "--features-only", "--store", tables)
    scores = os.path.join(work, "first.scores.csv")
    run("batch", pipeline, "--in", prefix + ".live.csv", "--out", scores,
        "--store", tables)
    frame = pd.read_csv(features, dtype={"txn_id": str})
    scored = pd.read_csv(scores, dtype={"txn_id": str, "score": str})
    expect(list(frame["txn_id"]) == list(scored["txn_id"]),
           "features and scores are not the same events in the same order")
    expected = booster.predict(xgb.DMatrix(
        frame[names].to_numpy(dtype=np.float32), feature_names=names))
    got = np.array([float(v) for v in scored["score"]], dtype=np.float32)
    bits_equal(expected, got, "a model trained without a model line, tandem "
               "batch vs xgboost")


if __name__ == "__main__":
    main()
