"""Every LightGBM fixture (models and predictions made by the LightGBM 4.6
command-line program itself) scored by `tandem score`: predictions and raw
scores must equal LightGBM's exactly, as doubles (the fixtures print the
shortest decimal that round-trips, so this is the last digit printed).
Covers binary, poisson, random forest (averaged), cross_entropy,
categorical splits, linear trees, multiclass, multiclassova, regression
and zero_as_missing."""
import filecmp
import glob
import os

import numpy as np

from common import FIXTURES, expect, fail, finish, run, tmpdir

out = tmpdir()
models = sorted(glob.glob(os.path.join(FIXTURES, "lightgbm", "*.model.txt")))
expect(len(models) == 10, f"expected 10 LightGBM fixtures, found {len(models)}")


def read(path):
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)


for model in models:
    name = os.path.basename(model)[: -len(".model.txt")]
    base = os.path.join(FIXTURES, "lightgbm", name)
    for kind, flags in (("pred", []), ("raw", ["--margin"])):
        path = os.path.join(out, f"{name}.{kind}.csv")
        run("score", "--model", model, "--in", base + ".input.csv", "--out", path,
            "--threads", 1, *flags)
        got, expected = read(path), read(f"{base}.{kind}.csv")
        if got.shape != expected.shape:
            fail(f"{name} {kind}: shape {got.shape} != {expected.shape}")
            continue
        same = got.view(np.uint64) == expected.view(np.uint64)
        if same.all():
            print(f"ok {name} {kind}: {got.size} doubles identical")
        else:
            i = tuple(np.argwhere(~same)[0])
            fail(f"{name} {kind}: {int((~same).sum())} values differ; first at {i}: "
                 f"expected {expected[i]!r}, got {got[i]!r}")
        path3 = os.path.join(out, f"{name}.{kind}.t3.csv")
        run("score", "--model", model, "--in", base + ".input.csv", "--out", path3,
            "--threads", 3, *flags)
        expect(filecmp.cmp(path, path3, shallow=False),
               f"{name} {kind}: output differs between 1 and 3 threads")

# --iterations keeps the first rounds: all of them is the same as none.
model = os.path.join(FIXTURES, "lightgbm", "synth_multiclass3.model.txt")
data = os.path.join(FIXTURES, "lightgbm", "synth_multiclass3.input.csv")
run("score", "--model", model, "--in", data, "--out", os.path.join(out, "all.csv"))
run("score", "--model", model, "--in", data, "--out", os.path.join(out, "60.csv"),
    "--iterations", 60)
expect(filecmp.cmp(os.path.join(out, "all.csv"), os.path.join(out, "60.csv"),
                   shallow=False), "--iterations 60 differs from all 60 rounds")
run("score", "--model", model, "--in", data, "--out", os.path.join(out, "10.csv"),
    "--iterations", 10)
expect(not filecmp.cmp(os.path.join(out, "all.csv"), os.path.join(out, "10.csv"),
                       shallow=False), "--iterations 10 changed nothing")
proc = run("score", "--model", model, "--in", data, "--out",
           os.path.join(out, "61.csv"), "--iterations", 61, check=False)
expect(proc.returncode == 2 and "from 1 to 60" in proc.stderr,
       f"--iterations 61: {proc.returncode} {proc.stderr}")
print("ok --iterations")
finish("lightgbm fixtures")
