"""`tandem eval --pred P` reads P's `label` column, as its help says.

The help gave `--label-col` a default of `label` yet demanded the option.
Now a predictions file with a `label` column is evaluated without it, and
the metrics equal scikit-learn's on the same seeded scores and labels (the
independent reference); a file without that column exits 2 naming it and
the two ways to give labels.
"""
import json
import os

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from common import expect, finish, run, tmpdir


def main():
    work = tmpdir()
    rng = np.random.default_rng(20)
    for trial in range(4):
        n = int(rng.integers(20, 400))
        labels = rng.integers(0, 2, size=n)
        labels[:2] = [0, 1]
        scores = np.clip(labels * 0.3 + rng.random(n) * 0.7, 0, 1).round(
            int(rng.integers(1, 4)))  # rounding makes ties
        path = os.path.join(work, f"p{trial}.csv")
        with open(path, "w") as f:
            f.write("id,score,label\n")
            for i, (s, y) in enumerate(zip(scores, labels)):
                f.write(f"r{i},{s!r},{y}\n")
        proc = run("eval", "--pred", path, "--json", check=False)
        expect(proc.returncode == 0, f"trial {trial}: exit {proc.returncode}, {proc.stderr!r}")
        if proc.returncode != 0:
            continue
        got = json.loads(proc.stdout)
        want = roc_auc_score(labels, scores)
        expect(abs(got["roc_auc"] - want) <= 1e-12,
               f"trial {trial}: roc_auc {got['roc_auc']} != sklearn {want}")
        want = average_precision_score(labels, scores)
        expect(abs(got["average_precision"] - want) <= 1e-12,
               f"trial {trial}: average_precision {got['average_precision']} != {want}")
    path = os.path.join(work, "nolabel.csv")
    with open(path, "w") as f:
        f.write("score,is_fraud\n0.1,0\n0.9,1\n")
    proc = run("eval", "--pred", path, check=False)
    expect(proc.returncode == 2 and 'no label column "label"' in proc.stderr and
           "--label-col" in proc.stderr and "--labels" in proc.stderr,
           f"no label column: exit {proc.returncode}, {proc.stderr.strip()!r}")
    finish("eval_label_default")


if __name__ == "__main__":
    main()
