"""A file of the wrong kind is named as such, with what to do.

A pipeline file given as a model, an XGBoost model given as a pipeline,
and an XGBoost model saved in its binary UBJSON format (written here by
xgboost itself, with a seeded model) each exit 2 with a message that says
what the file is and how to use it, for `score`, `inspect` and `batch`.
"""
import os

import numpy as np
import xgboost as xgb

from common import ROOT, expect, finish, run, tmpdir

PIPELINE = os.path.join(ROOT, "examples", "fraud", "pipeline.yaml")
MODEL = os.path.join(ROOT, "examples", "credit-risk", "model.json")
CSV = os.path.join(ROOT, "examples", "credit-risk", "applicants.csv")


def check(args, words, what):
    proc = run(*args, check=False)
    expect(proc.returncode == 2, f"{what}: exit {proc.returncode}, {proc.stderr!r}")
    expect(all(w in proc.stderr for w in words),
           f"{what}: {proc.stderr.strip()!r} lacks {words}")


def main():
    work = tmpdir()
    rng = np.random.default_rng(20)
    x = rng.random((200, 4))
    booster = xgb.train({"max_depth": 3, "seed": 20},
                        xgb.DMatrix(x, label=x[:, 0] > 0.5), 3)
    ubj = os.path.join(work, "model.ubj")
    booster.save_model(ubj)
    with open(ubj, "rb") as f:
        expect(f.read(1) == b"{", "xgboost's UBJSON does not start with {")
    out = os.path.join(work, "out.csv")
    check(["score", "--model", PIPELINE, "--in", CSV, "--out", out],
          ["looks like a pipeline file", "tandem batch"], "pipeline as a model")
    check(["inspect", PIPELINE], ["looks like a pipeline file"], "inspect a pipeline")
    for command in (["inspect", ubj], ["score", "--model", ubj, "--in", CSV, "--out", out]):
        check(command, ["UBJSON", "save_model"], f"{command[0]} of a UBJSON model")
    check(["batch", MODEL, "--in", CSV, "--out", out],
          ["is an XGBoost model, not a pipeline", "tandem score --model"],
          "a model as a pipeline")
    expect(not os.path.exists(out), "an output was written")
    finish("wrong_file_kind")


if __name__ == "__main__":
    main()
