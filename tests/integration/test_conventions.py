"""Conventions users already have.

1. `tandem score --margin` names its values margin (CSV `margin`,
   `margin_0..`; JSON Lines `"margin"`, `"margins"`), and the values are
   the library's own margins: xgboost's output_margin for a model trained
   here (bit for bit as float32), LightGBM's raw scores from the
   multiclass fixture (exact). A margin in a column named score was read
   downstream as a probability.
2. `make install PREFIX=DIR` installs a man page for tandem and for each
   command of `tandem --help`'s list; `man -l` renders each, and each
   names every option its command's --help names (one source).
3. The installed bash completion registers with `complete -p`, completes
   the commands (also after `help`) and, for each command, exactly the
   options its --help names.
4. docs/cli.md's flag table lists every option line of every command's
   help, with that command in the flag's row.
5. `tandem runs` shows a run's --tag labels and the headline metrics that
   `tandem eval --record` stored (auc and ap, computed here with
   scikit-learn from the scores tandem wrote); --json has the tags; a
   --tag without "=" is a usage error that writes nothing.
"""
import json
import os
import re
import subprocess

import numpy as np
import pandas as pd
import xgboost as xgb

from common import FIXTURES, ROOT, TANDEM, bits_equal, expect, finish, tmpdir
from pipeline_util import tandem

out = tmpdir()
rng = np.random.default_rng(20)

# ---- 1. --margin: named margin, equal to the library's margins ----
X = rng.normal(size=(300, 4)) * [1, 10, 100, 0.1]
X[rng.random(X.shape) < 0.1] = np.nan
y = (np.nan_to_num(X[:, 0]) + rng.normal(size=300) > 0).astype(float)
names = ["a", "b", "c", "d"]
booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": 1},
                    xgb.DMatrix(X, label=y, feature_names=names), 10)
model = os.path.join(out, "m.json")
booster.save_model(model)
rows = os.path.join(out, "rows.csv")
pd.DataFrame(X, columns=names).to_csv(rows, index=False, float_format="%.9g")
X32 = pd.read_csv(rows).to_numpy(dtype=np.float32)
want = booster.predict(xgb.DMatrix(X32, feature_names=names), output_margin=True)
for suffix in (".csv", ".jsonl"):
    dst = os.path.join(out, "margins" + suffix)
    r = tandem("score", "--model", model, "--in", rows, "--out", dst, "--margin",
               "--no-registry")
    if not expect(r.returncode == 0, f"score --margin {suffix}: {r.stderr}"):
        continue
    if suffix == ".csv":
        frame = pd.read_csv(dst, dtype=str)
        expect(list(frame.columns) == ["margin"], f"--margin CSV header {list(frame.columns)}")
        got = np.array([float(v) for v in frame.iloc[:, 0]], dtype=np.float32)
    else:
        lines = [json.loads(line) for line in open(dst)]
        expect(all(list(obj) == ["margin"] for obj in lines),
               f"--margin JSON Lines keys {list(lines[0])}")
        got = np.array([obj.get("margin", np.nan) for obj in lines], dtype=np.float32)
    bits_equal(want, got, f"--margin {suffix} vs xgboost output_margin")
# Without --margin the column stays score.
dst = os.path.join(out, "scores.csv")
r = tandem("score", "--model", model, "--in", rows, "--out", dst, "--no-registry")
expect(r.returncode == 0 and open(dst).readline() == "score\n",
       f"score header without --margin: {r.stderr}")
# Several outputs: LightGBM's multiclass fixture and its raw scores.
base = os.path.join(FIXTURES, "lightgbm", "synth_multiclass3")
raw = pd.read_csv(base + ".raw.csv", float_precision="round_trip").to_numpy()
for suffix in (".csv", ".jsonl"):
    dst = os.path.join(out, "multi" + suffix)
    r = tandem("score", "--model", base + ".model.txt", "--in", base + ".input.csv",
               "--out", dst, "--margin", "--no-registry")
    if not expect(r.returncode == 0, f"multiclass --margin {suffix}: {r.stderr}"):
        continue
    if suffix == ".csv":
        frame = pd.read_csv(dst, float_precision="round_trip")
        expect(list(frame.columns) == ["margin_0", "margin_1", "margin_2"],
               f"multiclass --margin header {list(frame.columns)}")
        got = frame.to_numpy()
    else:
        lines = [json.loads(line) for line in open(dst)]
        expect(all(list(obj) == ["margins"] for obj in lines),
               f"multiclass --margin JSON keys {list(lines[0])}")
        got = np.array([obj.get("margins") for obj in lines])
    expect(got.shape == raw.shape and np.array_equal(got, raw),
           f"multiclass --margin {suffix}: differs from LightGBM's raw scores")

# ---- 2. man pages, installed, one per command ----
prefix = os.path.join(out, "prefix")
proc = subprocess.run(["make", "-s", "-C", ROOT, "install", "PREFIX=" + prefix],
                      capture_output=True, text=True)
expect(proc.returncode == 0, f"make install: {proc.stderr[-800:]}")
general = tandem("--help").stdout
listing = general.split("commands:\n", 1)[1].split("\n\n", 1)[0]
commands = [line.split()[0] for line in listing.splitlines()
            if line.strip() and line.split()[0] not in ("help", "version")]
expect(len(commands) >= 10, f"commands in tandem --help: {commands}")
man1 = os.path.join(prefix, "share", "man", "man1")


def flags(text):
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))


for command in [None] + commands:
    name = "tandem" if command is None else "tandem-" + command
    path = os.path.join(man1, name + ".1")
    if not expect(os.path.exists(path), f"no man page {name}.1"):
        continue
    proc = subprocess.run(["man", "-l", path], capture_output=True, text=True,
                          env=dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING=""))
    page = re.sub(r".\x08", "", proc.stdout)
    help_text = tandem(*([command] if command else []), "--help").stdout
    want = flags(help_text)
    expect(proc.returncode == 0 and "NAME" in page and "EXIT STATUS" in page
           and (command is None or "tandem " + command in page),
           f"man -l {name}.1: exit {proc.returncode}: {proc.stderr[:300]}")
    expect(want <= flags(page), f"{name}.1 lacks {sorted(want - flags(page))}")

# ---- 3. bash completion ----
completion = os.path.join(prefix, "share", "bash-completion", "completions", "tandem")


def complete(*words):
    """What bash completes for the last of WORDS after `tandem`."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); '
              'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _tandem; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    proc = subprocess.run(["bash", "-c", script, "bash", completion, TANDEM, *words],
                          capture_output=True, text=True)
    return set(line for line in proc.stdout.splitlines() if line)


if expect(os.path.exists(completion), "no bash completion installed"):
    proc = subprocess.run(["bash", "-c", f'source "{completion}"; complete -p tandem'],
                          capture_output=True, text=True)
    expect(proc.returncode == 0 and "-F _tandem" in proc.stdout,
           f"complete -p tandem: {proc.stdout} {proc.stderr}")
    expect(complete("") == set(commands) | {"help", "version"},
           f"commands completed: {sorted(complete(''))}")
    expect(complete("help", "re") == {c for c in commands if c.startswith("re")},
           f"tandem help re<TAB>: {complete('help', 're')}")
    for command in commands:
        want = flags(tandem(command, "--help").stdout)
        got = complete(command, "--")
        expect(got == want, f"tandem {command} --<TAB>: extra {sorted(got - want)}, "
               f"missing {sorted(want - got)}")

# ---- 4. the flag table ----
rows = {}
for line in open(os.path.join(ROOT, "docs", "cli.md")):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 3 and cells[0].startswith("`--"):
        for flag in re.findall(r"--[a-z][a-z0-9-]*", cells[0]):
            rows.setdefault(flag, set()).update(c.strip() for c in cells[1].split(","))
for command in commands:
    for line in tandem(command, "--help").stdout.splitlines():
        m = re.match(r"  (--[a-z][a-z0-9-]*)", line)
        if not m or m.group(1) == "--help":
            continue
        expect(command in rows.get(m.group(1), ()),
               f"docs/cli.md: {m.group(1)} has no row naming {command}")

# ---- 5. runs: tags and metrics ----
from sklearn.metrics import average_precision_score, roc_auc_score

registry = os.path.join(out, "registry.db")
labelled = pd.DataFrame(X, columns=names)
labelled.insert(0, "id", ["r%d" % i for i in range(len(labelled))])
labelled["label"] = y.astype(int)
labelled_csv = os.path.join(out, "labelled.csv")
labelled.to_csv(labelled_csv, index=False, float_format="%.9g")
scored = os.path.join(out, "tagged.csv")
r = tandem("score", "--model", model, "--in", labelled_csv, "--out", scored,
           "--keep", "id", "--registry", registry, "--tag", "model=v2",
           "--tag", "owner=risk team")
run_id = re.search(r"run ([0-9a-f]{12})", r.stderr)
if expect(r.returncode == 0 and run_id, f"score --tag: {r.stderr}"):
    run_id = run_id.group(1)
    r = tandem("eval", "--pred", scored, "--labels", labelled_csv, "--id-col", "id",
               "--record", run_id, "--registry", registry)
    expect(r.returncode == 0, f"eval --record: {r.stderr}")
    got = pd.read_csv(scored, dtype={"score": str})
    truth = labelled.set_index("id").loc[got["id"], "label"].to_numpy()
    values = np.array([float(v) for v in got["score"]])
    summary = "auc=%.4f ap=%.4f" % (roc_auc_score(truth, values),
                                    average_precision_score(truth, values))
    listing = tandem("runs", "--registry", registry).stdout.splitlines()
    header = listing[0].split()
    expect(header[-2:] == ["METRICS", "TAGS"], f"runs header {header}")
    row = next((line for line in listing if line.startswith(run_id)), "")
    expect(summary in row and row.endswith("model=v2,owner=risk team"),
           f"runs row {row!r}: want {summary!r} and the tags")
    obj = json.loads(tandem("runs", "--registry", registry, "--json").stdout.splitlines()[0])
    expect(obj.get("tags") == {"model": "v2", "owner": "risk team"},
           f"runs --json tags {obj.get('tags')}")
bad_out = os.path.join(out, "bad_tag.csv")
r = tandem("batch", "x.yaml", "--in", "x.csv", "--out", bad_out, "--tag", "nokey")
expect(r.returncode == 2 and "KEY=VALUE" in r.stderr and not os.path.exists(bad_out),
       f"--tag without =: {r.returncode} {r.stderr}")

finish("test_conventions")
