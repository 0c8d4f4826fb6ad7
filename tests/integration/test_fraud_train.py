"""examples/fraud/train.py trains a model that tandem scores as XGBoost does.

The script is run through its own shebang (so a python3 first on PATH
without numpy cannot break it), on a small seeded history from
generate.py. Its model must name the features `tandem batch
--features-only` writes, and `tandem score` over those features must
equal xgboost's own predictions bit for bit as float32: the independent
reference is the library the script trained with.
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
    finish("fraud_train")


if __name__ == "__main__":
    main()
