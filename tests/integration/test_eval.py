"""`tandem eval` against scikit-learn: for the XGBoost and LightGBM fixture
models' predictions (tandem's own `score` output and the libraries' files)
with labels drawn from those predictions with a fixed seed (the fixtures
carry no labels): binary labels ~ Bernoulli(p), multiclass ~ Categorical(p),
regression y = prediction + noise (with some zeros for MAPE). Every metric
of `tandem eval --json` must equal sklearn's at relative tolerance 1e-9.

Why not 0: both sides compute the same definitions in float64, but sum in
different orders (numpy's pairwise sums against tandem's compensated sums
and exact integer counts), so the last bits may differ; the differences seen
are ~1e-16 relative. Ranking ties, sklearn's zero_division, log-loss
clipping and renormalization, calibration bin edges and MAPE's eps are all
exercised. Then matching by id, JSON Lines, the label column inside the
predictions, task inference, and every input error: exit status 2 and a
one-line message naming the file and line."""
import json
import math
import os
import random
import warnings

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, average_precision_score,
                             brier_score_loss, confusion_matrix, f1_score,
                             log_loss, mean_absolute_error,
                             mean_absolute_percentage_error,
                             mean_squared_error,
                             precision_recall_fscore_support, r2_score,
                             roc_auc_score, roc_curve)

from common import FIXTURES, expect, fail, finish, run, tmpdir

warnings.simplefilter("ignore")  # sklearn warns on zero_division; we check it
RTOL = 1e-9
worst = [0.0, ""]  # the largest relative difference seen, for the log
out = tmpdir()
XGB = os.path.join(FIXTURES, "xgboost")
LGB = os.path.join(FIXTURES, "lightgbm")


def close(name, got, want):
    """Relative tolerance RTOL; an exact zero must be exactly zero."""
    if got is None or want is None or (isinstance(want, float) and math.isnan(want)):
        return expect(got is None and (want is None or math.isnan(want)),
                      f"{name}: got {got!r}, sklearn {want!r}")
    want = float(want)
    if want != 0:
        worst[:] = max(worst, [abs(got - want) / abs(want), name])
    ok = got == want or abs(got - want) <= RTOL * abs(want)
    return expect(ok, f"{name}: got {got!r}, sklearn {want!r} "
                      f"(relative {abs(got - want) / max(abs(want), 1e-300):.3g})")


def write(name, text):
    path = os.path.join(out, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def write_csv(name, header, columns, fmt="%r"):
    lines = [",".join(header)]
    for row in zip(*columns):
        lines.append(",".join(v if isinstance(v, str) else fmt % v for v in row))
    return write(name, "\n".join(lines) + "\n")


def read_columns(path, names):
    """The named columns of a CSV as float64, parsed from the same text."""
    with open(path) as f:
        header = f.readline().strip().split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return data[:, [header.index(n) for n in names]]


def evaluate(*args):
    proc = run("eval", *args, "--json")
    return json.loads(proc.stdout)


def check_binary(name, r, y, p, thresholds, bins):
    expect(r["task"] == "binary", f"{name}: task {r['task']}")
    expect(r["count"] == len(y) and r["positives"] == int(y.sum()),
           f"{name}: counts")
    close(f"{name} base_rate", r["base_rate"], y.mean())
    close(f"{name} roc_auc", r["roc_auc"], roc_auc_score(y, p))
    close(f"{name} average_precision", r["average_precision"],
          average_precision_score(y, p))
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    close(f"{name} ks", r["ks"], np.max(np.abs(tpr - fpr)))
    probabilities = p.min() >= 0 and p.max() <= 1
    if probabilities:
        close(f"{name} log_loss", r["log_loss"], log_loss(y, p))
        close(f"{name} brier", r["brier"], brier_score_loss(y, p))
    else:
        expect(r["log_loss"] is None and r["brier"] is None
               and r["calibration"] is None, f"{name}: margins as probabilities")
    expect(len(r["thresholds"]) == len(thresholds), f"{name}: thresholds")
    for t, m in zip(thresholds, r["thresholds"]):
        yhat = (p >= t).astype(int)
        tn, fp, fn, tp = confusion_matrix(y, yhat, labels=[0, 1]).ravel()
        expect((m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp),
               f"{name} @{t}: confusion {m} vs {(tn, fp, fn, tp)}")
        prec, rec, f1, _ = precision_recall_fscore_support(
            y, yhat, average="binary", zero_division="warn")
        close(f"{name} @{t} precision", m["precision"], prec)
        close(f"{name} @{t} recall", m["recall"], rec)
        close(f"{name} @{t} f1", m["f1"], f1)
        close(f"{name} @{t} f1_score", m["f1"], f1_score(y, yhat))
        close(f"{name} @{t} accuracy", m["accuracy"], accuracy_score(y, yhat))
    if probabilities:
        cal = r["calibration"]
        prob_true, prob_pred = calibration_curve(y, p, n_bins=bins,
                                                 strategy="uniform")
        curve = cal["curve"]
        if expect(len(curve) == len(prob_true),
                  f"{name}: {len(curve)} bins, sklearn {len(prob_true)}"):
            for b, pt, pp in zip(curve, prob_true, prob_pred):
                close(f"{name} bin {b['bin']} fraction_positive",
                      b["fraction_positive"], pt)
                close(f"{name} bin {b['bin']} mean_predicted",
                      b["mean_predicted"], pp)
            edges = np.linspace(0.0, 1.0, bins + 1)
            counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
            expect([b["count"] for b in curve] == [int(c) for c in counts if c],
                   f"{name}: bin counts")
            expect(all(b["lower"] == edges[b["bin"]] and
                       b["upper"] == edges[b["bin"] + 1] for b in curve),
                   f"{name}: bin edges differ from np.linspace")


def check_multiclass(name, r, y, P):
    k = P.shape[1]
    yhat = np.argmax(P, axis=1)
    expect(r["task"] == "multiclass" and r["classes"] == k, f"{name}: task")
    close(f"{name} accuracy", r["accuracy"], accuracy_score(y, yhat))
    close(f"{name} log_loss", r["log_loss"], log_loss(y, P, labels=range(k)))
    close(f"{name} macro_f1", r["macro_f1"], f1_score(y, yhat, average="macro"))
    prec, rec, f1, support = precision_recall_fscore_support(
        y, yhat, labels=range(k), average=None)
    for j, c in enumerate(r["per_class"]):
        close(f"{name} class {j} precision", c["precision"], prec[j])
        close(f"{name} class {j} recall", c["recall"], rec[j])
        close(f"{name} class {j} f1", c["f1"], f1[j])
        expect(c["support"] == support[j], f"{name} class {j} support")


def check_regression(name, r, y, p):
    expect(r["task"] == "regression", f"{name}: task {r['task']}")
    close(f"{name} rmse", r["rmse"], mean_squared_error(y, p, squared=False))
    close(f"{name} mse", r["mse"], mean_squared_error(y, p))
    close(f"{name} mae", r["mae"], mean_absolute_error(y, p))
    close(f"{name} mape", r["mape"], mean_absolute_percentage_error(y, p))
    close(f"{name} r2", r["r2"], r2_score(y, p))


rng = np.random.default_rng(20240601)
THRESHOLDS = [0.5, 0.2, 0.9, 0.0, 1.5]  # 1.5: nothing positive (zero_division)
threshold_args = [a for t in THRESHOLDS for a in ("--threshold", t)]

# ---- binary: tandem score's own output, then the libraries' files ----
binary = [(XGB, n, "tandem") for n in ("credit_data_binary", "lending_club_binary",
                                       "lending_club_cat", "synth_binary_base_score")]
binary += [(LGB, n, "file") for n in ("credit_data_binary", "lending_club_binary",
                                      "synth_zero_as_missing", "credit_data_rf",
                                      "credit_data_xentropy")]
for folder, name, source in binary:
    base = os.path.join(folder, name)
    if source == "tandem":
        model = base + (".model.json" if folder == XGB else ".model.txt")
        pred = os.path.join(out, f"{name}.score.csv")
        run("score", "--model", model, "--in", base + ".input.csv", "--out", pred)
        p = read_columns(pred, ["score"])[:, 0]
        col = []
    else:
        pred = base + ".pred.csv"
        p = read_columns(pred, ["pred"])[:, 0]
        col = ["--pred-col", "pred"]
    y = (rng.random(len(p)) < p).astype(int)
    labels = write_csv(f"{name}.labels.csv", ["label"], [list(y)], "%d")
    for bins in (10, 7):
        r = evaluate("--pred", pred, "--labels", labels, *col, *threshold_args,
                     "--bins", bins)
        check_binary(f"{folder[-7:]}/{name} bins={bins}", r, y, p, THRESHOLDS, bins)
    print(f"ok binary {os.path.basename(folder)}/{name}: {len(p)} rows, "
          f"{len(np.unique(p))} distinct scores")

# Heavy ties: scores rounded to two decimals, and XGBoost's margins (not
# probabilities: ranked, but no log loss, Brier or calibration).
p = np.round(rng.random(5000), 2)
y = (rng.random(5000) < p).astype(int)
pred = write_csv("ties.csv", ["score"], [list(p)])
labels = write_csv("ties.labels.csv", ["label"], [list(y)], "%d")
check_binary("ties", evaluate("--pred", pred, "--labels", labels, *threshold_args),
             y, p, THRESHOLDS, 10)
margin = os.path.join(XGB, "credit_data_binary.margin.csv")
with open(margin) as f:
    margin_col = f.readline().strip()
m = read_columns(margin, [margin_col])[:, 0]
y = (rng.random(len(m)) < 1 / (1 + np.exp(-m))).astype(int)
labels = write_csv("margin.labels.csv", ["label"], [list(y)], "%d")
r = evaluate("--pred", margin, "--pred-col", margin_col, "--labels", labels,
             "--threshold", 0)
check_binary("margins", r, y, m, [0.0], 10)
expect(any("outside [0, 1]" in n for n in r["notes"]), f"margins: notes {r['notes']}")
print("ok binary ties (5000 rows, 101 distinct scores) and margins")

# One class only: ROC AUC and KS undefined (null) with a note.
r = evaluate("--pred", pred, "--labels",
             write_csv("zeros.csv", ["label"], [[0] * 5000], "%d"), "--task", "binary")
expect(r["roc_auc"] is None and r["ks"] is None and r["average_precision"] is None,
       f"one class: {r['roc_auc']} {r['ks']}")
expect(any("only one class" in n for n in r["notes"]), "one class: no note")
expect(any("zero_division" in n for n in r["notes"]), "one class: no zero_division note")
print("ok one class: roc_auc, ks, average_precision null with notes")

# ---- multiclass ----
mc = os.path.join(XGB, "synth_multiclass4")
pred = os.path.join(out, "mc4.score.csv")
run("score", "--model", mc + ".model.json", "--in", mc + ".input.csv", "--out", pred)
cases = [("xgboost/synth_multiclass4", pred, ["score_%d" % j for j in range(4)], [])]
for name in ("synth_multiclass3", "synth_multiclassova3"):  # ova: rows not summing to 1
    cases.append((f"lightgbm/{name}", os.path.join(LGB, name + ".pred.csv"),
                  ["class_%d" % j for j in range(3)], ["--pred-col", "class"]))
for name, pred, cols, args in cases:
    P = read_columns(pred, cols)
    y = np.array([rng.choice(len(cols), p=row / row.sum()) for row in P])
    labels = write_csv(name.replace("/", "_") + ".labels.csv", ["label"], [list(y)], "%d")
    check_multiclass(name, evaluate("--pred", pred, "--labels", labels, *args), y, P)
    print(f"ok multiclass {name}: {len(y)} rows, {len(cols)} classes")

# ---- regression ----
cases = [("xgboost/synth_regression", XGB, "synth_regression"),
         ("xgboost/synth_count_poisson", XGB, "synth_count_poisson"),
         ("lightgbm/synth_regression", LGB, "synth_regression"),
         ("lightgbm/synth_linear_tree", LGB, "synth_linear_tree")]
for name, folder, base in cases:
    pred = os.path.join(folder, base + ".pred.csv")
    p = read_columns(pred, ["pred"])[:, 0]
    y = p + rng.normal(0, np.std(p) * 0.3 + 1e-3, len(p))
    y[::97] = 0.0  # MAPE divides these by eps
    labels = write_csv(base + ".reg.labels.csv", ["label"], [list(y)])
    check_regression(name, evaluate("--pred", pred, "--pred-col", "pred",
                                    "--labels", labels), y, p)
    print(f"ok regression {name}: {len(p)} rows")

# ---- ids, JSON Lines, the label inside the predictions, inference ----
n = 3000
p = rng.random(n)
y = (rng.random(n) < p).astype(int)
ids = [f"row-{i}" for i in range(n)]
pred = write_csv("ids.pred.csv", ["id", "score"], [ids, list(p)])
order = list(range(n))
random.Random(5).shuffle(order)
jsonl = write("ids.labels.jsonl", "".join(
    json.dumps({"id": ids[i], "label": int(y[i]), "other": [1]}) + "\n" for i in order))
by_id = evaluate("--pred", pred, "--labels", jsonl, "--id-col", "id")
check_binary("by id (shuffled JSON Lines)", by_id, y, p, [0.5], 10)
expect(by_id["matched_by"] == "id", "matched_by")
pred_jsonl = write("self.jsonl", "".join(
    json.dumps({"score": float(p[i]), "y": bool(y[i])}) + "\n" for i in range(n)))
inside = evaluate("--pred", pred_jsonl, "--label-col", "y")
check_binary("label column in P (JSON Lines, booleans)", inside, y, p, [0.5], 10)
for key in ("roc_auc", "average_precision", "log_loss", "brier", "ks"):
    expect(inside[key] == by_id[key], f"{key}: JSON Lines differs from CSV by id")
reg_labels = write_csv("reg.labels.csv", ["label"], [list(y * 2.5)])
expect(evaluate("--pred", pred, "--labels", reg_labels)["task"] == "regression",
       "labels outside {0, 1} should infer regression")
table = run("eval", "--pred", pred, "--labels", jsonl, "--id-col", "id").stdout
expect("roc_auc" in table and "calibration" in table, f"table output: {table[:200]}")
print("ok ids (shuffled JSON Lines), label column in P, inference, table output")

# A million rows with heavy ties, against sklearn.
n = 1_000_000
p = np.round(rng.random(n), 3)
y = (rng.random(n) < p).astype(int)
pred = os.path.join(out, "big.csv")
with open(pred, "w") as f:
    f.write("score,label\n")
    f.write("".join(f"{a!r},{b}\n" for a, b in zip(p.tolist(), y.tolist())))
check_binary("1M rows", evaluate("--pred", pred, "--label-col", "label"), y, p, [0.5], 10)
print("ok 1,000,000 rows")


# ---- errors: exit status 2, one line naming the file and line ----
def expect_error(name, args, *parts):
    proc = run("eval", *args, check=False)
    message = proc.stderr.strip()
    ok = expect(proc.returncode == 2, f"{name}: exit {proc.returncode} ({message})")
    for part in parts:
        ok &= expect(part in message, f"{name}: {message!r} lacks {part!r}")
    ok &= expect(len(message.splitlines()) == 1, f"{name}: not one line: {message!r}")
    if ok:
        print(f"ok error {name}: {message}")


pred = write_csv("e.pred.csv", ["id", "score"], [["a", "b", "c"], [0.1, 0.6, 0.8]])
good = write_csv("e.labels.csv", ["id", "label"], [["a", "b", "c"], [0, 1, 1]], "%d")
expect_error("bad label", ["--pred", pred, "--labels",
                           write("bad.csv", "label\n0\nyes\n1\n")],
             "bad.csv:3:1", "\"yes\"")
expect_error("binary label 2", ["--pred", pred, "--labels",
                                write("two.csv", "label\n0\n2\n1\n"), "--task", "binary"],
             "two.csv:3", "0 or 1")
expect_error("missing label", ["--pred", pred, "--labels",
                               write("gap.csv", "label\n0\n\n1\n")],
             "gap.csv:3:1", "missing")
expect_error("more labels", ["--pred", pred, "--labels",
                             write("long.csv", "label\n0\n1\n1\n0\n")],
             "long.csv:5", "row 4 has no prediction")
expect_error("more predictions", ["--pred", pred, "--labels",
                                  write("short.csv", "label\n0\n1\n")],
             "e.pred.csv:4", "row 3 has no label")
expect_error("missing id", ["--pred", pred, "--id-col", "id", "--labels",
                            write("ids.csv", "id,label\na,0\nc,1\nd,1\n")],
             "e.pred.csv:3", "\"b\"", "no label")
expect_error("id without prediction", ["--pred", pred, "--id-col", "id", "--labels",
                                       write("ids2.csv", "id,label\na,0\nb,1\nc,1\nz,0\n")],
             "ids2.csv:5", "\"z\"", "no prediction")
expect_error("duplicate id", ["--pred", pred, "--id-col", "id", "--labels",
                              write("dup.csv", "id,label\na,0\nb,1\na,1\n")],
             "dup.csv:4", "\"a\"", "again")
expect_error("unknown task", ["--pred", pred, "--labels", good, "--task", "ranking"],
             "unknown task 'ranking'")
expect_error("NaN score", ["--pred", write("nan.csv", "score\n0.1\nNaN\n0.3\n"),
                           "--labels", good], "nan.csv:3:1", "missing or NaN")
expect_error("not a number score", ["--pred", write("word.jsonl",
                                                    '{"score": 0.1, "label": 0}\n{"score": "high", "label": 1}\n'),
                                    "--label-col", "label"], "word.jsonl:2")
expect_error("no label column", ["--pred", pred, "--labels", pred], "e.pred.csv",
             "no label column \"label\"")
expect_error("no score column", ["--pred", good, "--labels", good], "e.labels.csv",
             "no column \"score\"")
expect_error("empty labels", ["--pred", pred, "--labels", write("empty.csv", "label\n")],
             "empty.csv", "no rows")
expect_error("multiclass label out of range",
             ["--pred", write("mc.csv", "score_0,score_1\n0.5,0.5\n0.2,0.8\n"),
              "--labels", write("mcl.csv", "label\n0\n2\n")],
             "mcl.csv:3", "class index")
expect_error("no labels given", ["--pred", pred], "--labels")

print(f"largest relative difference from sklearn: {worst[0]:.3g} ({worst[1]})")
finish("test_eval")
