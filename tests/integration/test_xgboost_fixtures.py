"""Every XGBoost fixture (models and predictions made by XGBoost 1.7.4
itself) scored by `tandem score`: probabilities and margins must equal
XGBoost's bit for bit as float32, for one and for several threads."""
import filecmp
import glob
import os

from common import (FIXTURES, bits_equal, expect, finish, read_scores, run,
                    tmpdir)
import numpy as np

out = tmpdir()
models = sorted(glob.glob(os.path.join(FIXTURES, "xgboost", "*.model.json")))
expect(len(models) == 8, f"expected 8 XGBoost fixtures, found {len(models)}")
for model in models:
    name = os.path.basename(model)[: -len(".model.json")]
    base = os.path.join(FIXTURES, "xgboost", name)
    for kind, flags in (("pred", []), ("margin", ["--margin"])):
        path = os.path.join(out, f"{name}.{kind}.csv")
        run("score", "--model", model, "--in", base + ".input.csv", "--out", path,
            "--threads", 1, *flags)
        header, got = read_scores(path)
        expected = np.loadtxt(f"{base}.{kind}.csv", delimiter=",", skiprows=1,
                              dtype=np.float64, ndmin=2).astype(np.float32)
        ok = expect(got.shape == expected.shape,
                    f"{name} {kind}: shape {got.shape} != {expected.shape}")
        if ok and bits_equal(expected, got, f"{name} {kind}"):
            print(f"ok {name} {kind}: {got.size} values bit-identical")
        # The output bytes do not depend on the thread count.
        path4 = os.path.join(out, f"{name}.{kind}.t4.csv")
        run("score", "--model", model, "--in", base + ".input.csv", "--out", path4,
            "--threads", 4, *flags)
        expect(filecmp.cmp(path, path4, shallow=False),
               f"{name} {kind}: output differs between 1 and 4 threads")
finish("xgboost fixtures")
