"""Every XGBoost fixture (models and predictions made by XGBoost 1.7.4
itself) scored by `tandem score`: probabilities and margins must equal
XGBoost's bit for bit as float32, for one and for several threads."""
from common import (bits_equal, expect, finish, read_scores, score_fixtures,
                    tmpdir)
import numpy as np

out = tmpdir()
for name, base, kind, path in score_fixtures(
        "xgboost", ".model.json", 8, (("pred", []), ("margin", ["--margin"])),
        out, threads=4):
    header, got = read_scores(path)
    expected = np.loadtxt(f"{base}.{kind}.csv", delimiter=",", skiprows=1,
                          dtype=np.float64, ndmin=2).astype(np.float32)
    ok = expect(got.shape == expected.shape,
                f"{name} {kind}: shape {got.shape} != {expected.shape}")
    if ok and bits_equal(expected, got, f"{name} {kind}"):
        print(f"ok {name} {kind}: {got.size} values bit-identical")
finish("xgboost fixtures")
