"""Every LightGBM fixture (models and predictions made by the LightGBM 4.6
command-line program itself) scored by `tandem score`: predictions and raw
scores must equal LightGBM's exactly, as doubles (the fixtures print the
shortest decimal that round-trips, so this is the last digit printed).
Covers binary, poisson, random forest (averaged), cross_entropy,
categorical splits, linear trees, multiclass, multiclassova, regression
and zero_as_missing."""
import filecmp
import os

import numpy as np

from common import (FIXTURES, expect, fail, finish, run, score_fixtures,
                    tmpdir)

out = tmpdir()


def read(path):
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)


for name, base, kind, path in score_fixtures(
        "lightgbm", ".model.txt", 10, (("pred", []), ("raw", ["--margin"])),
        out, threads=3):
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
# Bad LightGBM files from the command line: one line naming file and line,
# exit status 2, no output.
text = open(os.path.join(FIXTURES, "lightgbm", "credit_data_binary.model.txt")).read()
lines = text.split("\n")
tree_start = lines.index("Tree=3")


def bad_case(name, content, message):
    path = os.path.join(out, name + ".model.txt")
    with open(path, "w") as f:
        f.write(content)
    target = os.path.join(out, name + ".out.csv")
    proc = run("score", "--model", path, "--in", data_for_binary, "--out", target,
               check=False)
    if expect(proc.returncode == 2 and message in proc.stderr and
              len(proc.stderr.strip().splitlines()) == 1 and
              not os.path.exists(target),
              f"{name}: {proc.returncode} {proc.stderr.strip()}"):
        print(f"ok {name}: {proc.stderr.strip()}")


data_for_binary = os.path.join(FIXTURES, "lightgbm", "credit_data_binary.input.csv")
bad_case("truncated", text[: len(text) // 2],
         "ends before \"end of trees\" (truncated?)")


def edit(key, transform):
    out_lines = list(lines)
    for i in range(tree_start, len(out_lines)):
        if out_lines[i].startswith(key + "="):
            out_lines[i] = key + "=" + transform(out_lines[i][len(key) + 1:])
            return "\n".join(out_lines), i + 1
    raise AssertionError(key)


content, line = edit("left_child", lambda v: " ".join(["999"] + v.split()[1:]))
bad_case("child-outside-tree", content, f":{line}: left_child: value 1 (999)")
content, line = edit("split_feature", lambda v: " ".join(["13"] + v.split()[1:]))
bad_case("feature-beyond-count", content, f":{line}: split_feature: value 1 (13) must be an integer from 0 to 12")
content = text.replace("objective=binary sigmoid:1", "objective=quantum_loss")
bad_case("unknown-objective", content, "objective \"quantum_loss\" is not supported")
finish("lightgbm fixtures")
