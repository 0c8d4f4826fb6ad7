"""`tandem score` on generated, hostile CSV, checked against Python's csv
module as the reference splitter.

The file (about 12 MB, so that records cross the 8 MiB chunks and the
cut between the two workers' pieces) mixes plain records, which the
reader cuts in place, with everything that sends a record to the
byte-at-a-time state machine: quoted fields holding commas, doubled
quotes, LF, CR and CRLF; CRLF line ends; fields of up to 20,000 bytes;
empty fields; blank lines; and a last record without its newline. Two
kept columns (--keep) come back in the output as written, so every
record's split is visible; four numeric features drive a model of eight
one-split trees whose sum says, per feature, whether the value was
below 0.5, at or above it, or missing, so every numeric cell's reading
is visible too. The expected output is computed here from csv.reader's
records, not from tandem. A NUL byte placed past the first chunk must be
reported at its line and column with no output file left behind.
"""
import csv
import io
import json
import os
import random

from common import expect, finish, run, tmpdir, xgboost_regression_model

rng = random.Random(2211)
out = tmpdir()
FEATURES = ["f0", "f1", "f2", "f3"]


def tree(feature, leaf, missing_left):
    """x_feature < 0.5 goes left (leaf 0), else right (leaf `leaf`);
    a missing value goes left when missing_left."""
    return {
        "base_weights": [0.0, 0.0, float(leaf)], "categories": [],
        "categories_nodes": [], "categories_segments": [],
        "categories_sizes": [], "default_left": [int(missing_left), 0, 0],
        "id": 0, "left_children": [1, -1, -1], "loss_changes": [0.0] * 3,
        "parents": [2147483647, 0, 0], "right_children": [2, -1, -1],
        "split_conditions": [0.5, 0.0, float(leaf)],
        "split_indices": [feature, 0, 0], "split_type": [0] * 3,
        "sum_hessian": [1.0] * 3,
        "tree_param": {"num_deleted": "0", "num_feature": "4",
                       "num_nodes": "3", "size_leaf_vector": "0"},
    }


# Feature t adds 0 below 0.5, 3 * 4^t at or above, 2 * 4^t when missing.
trees = []
for t in range(4):
    trees.append(tree(t, 4 ** t, True))
    trees.append(tree(t, 2 * 4 ** t, False))
model = xgboost_regression_model(trees, FEATURES)
model_path = os.path.join(out, "model.json")
with open(model_path, "w") as f:
    json.dump(model, f)

NUMBERS = {"0.25": "low", "0.75": "high", "0.5": "high", "-3": "low",
           # 0.49999999 is 0.5 in float32, which XGBoost compares in.
           "1e3": "high", "0.4999999": "low", "0.49999999": "high",
           "": "missing", "NaN": "missing",
           "nan": "missing", "NA": "missing", "null": "missing",
           " 0.75": "high", "0.25 ": "low"}


def expected_score(values):
    total = 0
    for t, text in enumerate(values):
        side = NUMBERS[text]
        total += {"low": 0, "high": 3, "missing": 2}[side] * 4 ** t
    return str(total)


def kept_text():
    """A kept field's text and how it is written in the file."""
    kind = rng.randrange(10)
    if kind == 0:
        return "", ""
    if kind == 1:  # long, across 64-byte blocks and chunk ends
        text = "".join(rng.choice("abcdefgh0123456789.-") for _ in
                       range(rng.choice([63, 64, 65, 1000, 20000])))
        return text, text
    if kind in (2, 3):  # quoted, with everything a quote may hold
        text = "".join(rng.choice(['a', ',', '""', '\n', '\r', '\r\n', 'z', ' '])
                       for _ in range(rng.randrange(12)))
        return text.replace('""', '"'), '"' + text + '"'
    text = "".join(rng.choice("abcXYZ0123456789.-_ ") for _ in
                   range(rng.randrange(40)))
    return text, text


def numeric_text():
    text = rng.choice(list(NUMBERS))
    if rng.randrange(8) == 0 and text.strip() == text:
        return text, '"' + text + '"'
    return text, text


header = FEATURES[2:] + ["k1"] + FEATURES[:2] + ["k2"]
body = io.StringIO()
body.write(",".join(header) + "\n")
rows = 0
starts = []  # where each record starts
while body.tell() < 12 << 20:
    if rng.randrange(200) == 0:
        body.write(rng.choice(["\n", "\r\n"]))  # a blank line: skipped
    starts.append(body.tell())
    fields = {}
    for name in header:
        fields[name] = kept_text()[1] if name.startswith("k") else numeric_text()[1]
    body.write(",".join(fields[name] for name in header))
    body.write(rng.choice(["\n", "\n", "\n", "\r\n"]))
    rows += 1
data = body.getvalue().rstrip("\r\n")  # the last record without its newline
in_path = os.path.join(out, "in.csv")
with open(in_path, "w", newline="") as f:
    f.write(data)

# The reference: Python's csv module splits the same bytes.
want = []
records = list(csv.reader(io.StringIO(data, newline="")))
names = records[0]
for record in records[1:]:
    if not record:
        continue  # a blank line
    row = dict(zip(names, record))
    want.append([row["k1"], row["k2"],
                 expected_score([row[name] for name in FEATURES])])
expect(len(want) == rows, f"the generator wrote {rows} rows, csv read {len(want)}")

for threads in (1, 2):
    out_path = os.path.join(out, f"out{threads}.csv")
    run("score", "--model", model_path, "--in", in_path, "--out", out_path,
        "--keep", "k1", "--keep", "k2", "--threads", threads)
    with open(out_path, newline="") as f:
        got = list(csv.reader(f))
    expect(got[0] == ["k1", "k2", "score"], f"output header {got[0]}")
    got = got[1:]
    expect(len(got) == len(want), f"{threads} threads: {len(got)} rows, want {len(want)}")
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    expect(not bad, f"{threads} threads: {len(bad)} rows differ, the first "
           f"(row {bad[0] + 1 if bad else 0}): {got[bad[0]] if bad else ''!r}, "
           f"want {want[bad[0]] if bad else ''!r}")

# A NUL byte in a plain field past the first chunk: named at its place,
# nothing written.
line_start = next(at for at in starts if at >= 9 << 20)
bad_data = data[:line_start] + "\0" + data[line_start:]
line = data.count("\n", 0, line_start) + 1
bad_path = os.path.join(out, "nul.csv")
with open(bad_path, "w", newline="") as f:
    f.write(bad_data)
bad_out = os.path.join(out, "nul-out.csv")
proc = run("score", "--model", model_path, "--in", bad_path, "--out", bad_out,
           "--threads", 2, check=False)
expect(proc.returncode != 0, "a NUL byte was accepted")
expect(f"{bad_path}:{line}:1: NUL byte in a field" in proc.stderr,
       f"NUL byte at line {line} column 1 reported as: {proc.stderr.strip()}")
expect(not os.path.exists(bad_out), "a failed run left an output file")
finish("test_score_csv_tokenizer")
