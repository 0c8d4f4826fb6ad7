"""`tandem inspect` says a feature's type in words, `--json` keeps the code.

The expected types are read from the model files' own `feature_types`
(XGBoost's codes: c categorical, q and float numbers, int integers, i
indicators) with Python's json module, not from tandem.
"""
import json
import os
import re

from common import FIXTURES, expect, finish, run

WORDS = {"c": "categorical (c)", "q": "number (q)", "float": "number (float)",
         "int": "integer (int)", "i": "indicator, 0 or 1 (i)"}


def main():
    models = [os.path.join(FIXTURES, "xgboost", "lending_club_cat.model.json"),
              os.path.join(FIXTURES, "..", "..", "examples", "credit-risk", "model.json")]
    for path in models:
        with open(path) as f:
            learner = json.load(f)["learner"]
        names, codes = learner["feature_names"], learner["feature_types"]
        text = run("inspect", path).stdout
        rows = dict(re.findall(r"^\s+\d+\s+(\S+)\s+(.+?)\s*$", text, re.M))
        for name, code in zip(names, codes):
            expect(rows.get(name) == WORDS[code],
                   f"{os.path.basename(path)}: {name} shows {rows.get(name)!r}, "
                   f"the file says {code!r}")
        shown = json.loads(run("inspect", "--json", path).stdout)
        expect([f["type"] for f in shown["features"]] == codes,
               f"{os.path.basename(path)}: --json types differ from the file's")
    finish("inspect_types")


if __name__ == "__main__":
    main()
