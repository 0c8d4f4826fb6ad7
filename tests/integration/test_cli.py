"""`tandem score` and `tandem inspect` from the command line: column
matching by name in any order, --keep, multiclass columns, unnamed
features, and every kind of bad input answered with a one-line error that
names the place, exit status 2, and no output file left behind."""
import filecmp
import json
import os
import shutil
import subprocess

from common import FIXTURES, TANDEM, expect, finish, read_scores, run, tmpdir

out = tmpdir()
XGB = os.path.join(FIXTURES, "xgboost")
model = os.path.join(XGB, "credit_data_binary.model.json")
inputs = os.path.join(XGB, "credit_data_binary.input.csv")


def write(name, text):
    path = os.path.join(out, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def expect_error(name, args, message, status=2):
    """Runs tandem expecting failure: exit status, message, no output."""
    target = os.path.join(out, name + ".out.csv")
    proc = run(*args, "--out", target, check=False) if "score" in args else \
        run(*args, check=False)
    ok = expect(proc.returncode == status,
                f"{name}: exit status {proc.returncode}, expected {status} "
                f"({proc.stderr.strip()})")
    ok &= expect(message in proc.stderr,
                 f"{name}: message {proc.stderr.strip()!r} lacks {message!r}")
    ok &= expect(len(proc.stderr.strip().splitlines()) == 1,
                 f"{name}: error is not one line: {proc.stderr!r}")
    leftovers = [f for f in os.listdir(out) if f.startswith("." + name)
                 or f.startswith(name + ".out.csv")]
    ok &= expect(not leftovers, f"{name}: left files behind: {leftovers}")
    if ok:
        print(f"ok {name}: {proc.stderr.strip()}")


# Columns in another order, extra columns, --keep: same scores.
with open(inputs) as f:
    lines = f.read().splitlines()
header = lines[0].split(",")
order = list(reversed(range(len(header))))
shuffled = [",".join(["id", "note"] + [header[i] for i in order])]
for n, line in enumerate(lines[1:]):
    cells = line.split(",")
    shuffled.append(",".join([f"row{n}", f"\"a, \"\"quoted\"\" note {n}\""] +
                             [cells[i] for i in order]))
shuffled_path = write("shuffled.csv", "\r\n".join(shuffled) + "\r\n")
run("score", "--model", model, "--in", inputs, "--out", os.path.join(out, "a.csv"))
run("score", "--model", model, "--in", shuffled_path, "--out",
    os.path.join(out, "b.csv"), "--keep", "id,note")
with open(os.path.join(out, "a.csv")) as fa, open(os.path.join(out, "b.csv")) as fb:
    a = fa.read().splitlines()
    b = fb.read().splitlines()
expect(b[0] == "id,note,score", f"--keep header: {b[0]}")
expect(b[1].startswith('row0,"a, ""quoted"" note 0",'), f"--keep row: {b[1]}")
expect([x.rsplit(",", 1)[1] for x in b[1:]] == a[1:],
       "reordered columns with --keep changed the scores")
print("ok columns matched by name in any order; --keep copies id columns")

# Multiclass probabilities get one column per class.
mc = os.path.join(XGB, "synth_multiclass4")
run("score", "--model", mc + ".model.json", "--in", mc + ".input.csv",
    "--out", os.path.join(out, "mc.csv"))
head, scores = read_scores(os.path.join(out, "mc.csv"))
expect(head == ["score_0", "score_1", "score_2", "score_3"], f"header {head}")
print("ok multiclass columns score_0..score_3")

# Same output file bytes for every thread count and run.
for threads in (1, 2, 3, 8):
    run("score", "--model", model, "--in", inputs, "--out",
        os.path.join(out, f"t{threads}.csv"), "--threads", threads)
    expect(filecmp.cmp(os.path.join(out, "t1.csv"),
                       os.path.join(out, f"t{threads}.csv"), shallow=False),
           f"--threads {threads} changed the output")
print("ok output identical for 1, 2, 3 and 8 threads")

# Each run writes OUT.manifest.json with the hashes of model, input and
# output (checked against sha256sum), rows, columns and flags.
def sha256(path):
    return subprocess.run(["sha256sum", path], capture_output=True,
                          text=True).stdout.split()[0]


manifest = json.load(open(os.path.join(out, "b.csv.manifest.json")))
expect(manifest["model"]["sha256"] == sha256(model) and
       manifest["input"]["sha256"] == sha256(shuffled_path) and
       manifest["output"]["sha256"] == sha256(os.path.join(out, "b.csv")) and
       manifest["input"]["rows"] == len(lines) - 1 and
       manifest["input"]["columns"] == len(header) + 2 and
       manifest["flags"]["keep"] == ["id", "note"] and
       manifest["tandem_version"] and manifest["rows_per_second"] > 0,
       f"manifest: {manifest}")
print("ok manifest: SHA-256 of model, input and output match sha256sum")

# inspect: text and JSON, with the file's SHA-256.
proc = run("inspect", "--json", model)
info = json.loads(proc.stdout)
sha = subprocess.run(["sha256sum", model], capture_output=True,
                     text=True).stdout.split()[0]
expect(info["sha256"] == sha, "inspect sha256 differs from sha256sum")
expect(info["objective"] == "binary:logistic" and info["trees"] == 50 and
       info["max_depth"] == 4 and
       [f["name"] for f in info["features"]] == header,
       f"inspect: {info}")
text = run("inspect", model).stdout
expect("binary:logistic" in text and sha in text, "inspect text output")
print("ok inspect reports objective, trees, depth and SHA-256")

# A model trained without feature names, scored by position or by f0..fN.
unnamed = json.load(open(model))
unnamed["learner"]["feature_names"] = []
unnamed_path = write("unnamed.json", json.dumps(unnamed))
run("score", "--model", unnamed_path, "--in", inputs, "--out",
    os.path.join(out, "unnamed.csv"))
expect(filecmp.cmp(os.path.join(out, "a.csv"), os.path.join(out, "unnamed.csv"),
                   shallow=False), "unnamed model scored by position differs")
print("ok unnamed features matched by position")

# ---- bad input ----
good_model_text = open(model).read()
truncated = write("truncated.json", good_model_text[: len(good_model_text) // 3])
expect_error("truncated-model", ["score", "--model", truncated, "--in", inputs],
             "truncated.json:1:")
gblinear = json.load(open(model))
gblinear["learner"]["gradient_booster"] = {"name": "gblinear", "model": {}}
expect_error("gblinear", ["score", "--model", write("gblinear.json", json.dumps(gblinear)),
                          "--in", inputs],
             "at /learner/gradient_booster/name: booster \"gblinear\" is not supported")
bad_tree = json.load(open(model))
bad_tree["learner"]["gradient_booster"]["model"]["trees"][3]["split_indices"][0] = 999
expect_error("bad-feature-index",
             ["score", "--model", write("badtree.json", json.dumps(bad_tree)), "--in", inputs],
             "at /learner/gradient_booster/model/trees/3/split_indices/0: 999 is out of range")
expect_error("not-a-model", ["inspect", write("notes.txt", "hello\n")],
             "not a model format tandem reads")
expect_error("missing-model", ["score", "--model", os.path.join(out, "nope.json"),
                               "--in", inputs], "nope.json: cannot open")
expect_error("empty-model", ["inspect", write("empty.json", "")],
             "the model file is empty")

missing_col = write("missing.csv", "\n".join(
    [",".join(h for h in header if h != "Seniority")] +
    [",".join(c for h, c in zip(header, line.split(",")) if h != "Seniority")
     for line in lines[1:4]]) + "\n")
expect_error("missing-column", ["score", "--model", model, "--in", missing_col],
             "missing.csv:1: no column \"Seniority\", which the model needs")
bad_cell_lines = list(lines[:5])
cells = bad_cell_lines[3].split(",")
cells[2] = "12abc"
bad_cell_lines[3] = ",".join(cells)
column = len(",".join(cells[:2])) + 2
expect_error("non-numeric", ["score", "--model", model, "--in",
                             write("cell.csv", "\n".join(bad_cell_lines) + "\n")],
             f"cell.csv:4:{column}: column \"{header[2]}\": \"12abc\" is not a number")
ragged = list(lines[:6])
ragged[5] = ragged[5] + ",1"
expect_error("ragged", ["score", "--model", model, "--in",
                        write("ragged.csv", "\n".join(ragged) + "\n")],
             f"ragged.csv:6: {len(header) + 1} fields, but the header has {len(header)}")
expect_error("empty-csv", ["score", "--model", model, "--in", write("empty.csv", "")],
             "empty.csv: the file is empty")
expect_error("unterminated-quote", ["score", "--model", model, "--in",
                                    write("quote.csv", lines[0] + "\n\"1,2\n")],
             "quote.csv:2:1: unterminated quoted field")
expect_error("duplicate-column", ["score", "--model", model, "--in",
                                  write("dup.csv", lines[0] + "," + header[0] + "\n")],
             f"dup.csv:1: column \"{header[0]}\" appears twice")
expect_error("keep-unknown", ["score", "--model", model, "--in", inputs, "--keep", "nope"],
             "no column \"nope\" to keep")
expect_error("missing-input", ["score", "--model", model, "--in", os.path.join(out, "no.csv")],
             "no.csv: cannot open")
expect_error("usage-threads", ["score", "--model", model, "--in", inputs, "--threads", "x"],
             "--threads must be a number")
expect_error("usage-missing", ["score", "--model", model], "--model, --in and --out are required")
expect_error("usage-command", ["frobnicate"], "unknown command 'frobnicate'")
inf_lines = list(lines[:4])
cells = inf_lines[2].split(",")
cells[3] = "1e39"
inf_lines[2] = ",".join(cells)
expect_error("infinite-float32", ["score", "--model", model, "--in",
                                  write("inf.csv", "\n".join(inf_lines) + "\n")],
             f"inf.csv:3:{len(','.join(cells[:3])) + 2}: column \"{header[3]}\": "
             "1e39 is infinite in float32")
# A duplicate header in a model without names is still an error (this
# once exited 0 with "success").
unnamed2 = json.load(open(model))
unnamed2["learner"]["feature_names"] = []
dup_path = write("dup-unnamed.json", json.dumps(unnamed2))
expect_error("duplicate-unnamed", ["score", "--model", dup_path, "--in",
                                   write("f0f0.csv", "f0,f0\n1,2\n")],
             "f0f0.csv:1: column \"f0\" appears twice")
# A manifest that cannot be written leaves neither a new output nor a
# temporary file, and keeps the old output.
blocked = os.path.join(out, "blocked.csv")
with open(blocked, "w") as f:
    f.write("old\n")
os.mkdir(blocked + ".manifest.json")
proc = run("score", "--model", model, "--in", inputs, "--out", blocked, check=False)
expect(proc.returncode == 1 and open(blocked).read() == "old\n" and
       not [f for f in os.listdir(out) if f.startswith(".blocked")],
       f"manifest failure: {proc.returncode} {proc.stderr}")
os.rmdir(blocked + ".manifest.json")
print("ok a failed manifest leaves the old output and no temporary files")

# A failing run never replaces an existing output file.
keep_path = write("existing.csv", "old contents\n")
proc = run("score", "--model", model, "--in", write("cell2.csv", "\n".join(bad_cell_lines) + "\n"),
           "--out", keep_path, check=False)
expect(proc.returncode == 2 and open(keep_path).read() == "old contents\n",
       "a failed run replaced the existing output")
# A bad row after many good ones (past the first chunk) still leaves nothing.
big = [lines[0]] + lines[1:] * 10
big.append(bad_cell_lines[3])
proc = run("score", "--model", model, "--in", write("big.csv", "\n".join(big) + "\n"),
           "--out", os.path.join(out, "big.out.csv"), check=False)
expect(proc.returncode == 2 and not os.path.exists(os.path.join(out, "big.out.csv"))
       and not [f for f in os.listdir(out) if f.startswith(".big.out.csv")],
       f"late error left output behind: {proc.stderr}")
expect(f"big.csv:{len(big)}:" in proc.stderr, f"late error location: {proc.stderr}")
print("ok failed runs leave existing and new outputs untouched")

for command in ("score", "inspect"):
    proc = run(command, "--help")
    expect(proc.stdout.startswith("usage: tandem " + command), f"{command} --help")
expect(run("--help").stdout.startswith("tandem "), "tandem --help")
print("ok --help")
shutil.rmtree(out)
finish("cli")
