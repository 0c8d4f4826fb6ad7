"""A live run evaluated when its labels arrive (docs/monitoring.md).

The fraud example: a batch run over the generated history materializes
card_profile; `tandem serve --state --decision-log` answers the last days
(sent by `tandem replay`, which checks live == batch); the server stops,
which closes its segment, recorded as a live run. Labels then come late,
shuffled, for most events only (some never come) and with labels of
events the server never saw. `tandem eval --record RUN --labels L`:

- counts decisions, unlabeled decisions and labels of unknown events as
  computed here from the files;
- its metrics of the model-answered events (live.by_source.model) equal
  ROC AUC, average precision, log loss and Brier computed here in Python
  (by hand: no scikit-learn on the machine) from `tandem batch`'s scores
  of the same events, and equal `tandem eval` on that batch output with
  the same labels;
- the metrics are stored with the run (`tandem runs --json`), and
  `tandem report RUN --labels L` evaluates the same labeled decisions and
  renders, curves included, in headless Chromium.
"""
import csv
import json
import math
import os
import random
import shutil
import subprocess

from common import ROOT, expect, finish, run, tmpdir
from serve_util import Server

out = tmpdir()
pipeline = os.path.join(ROOT, "examples", "fraud", "pipeline.yaml")
subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "examples", "fraud", "generate.py"),
                "--cards", "150", "--split", "0.8", "--out", os.path.join(out, "txns")],
               check=True, capture_output=True)
history = os.path.join(out, "txns.history.csv")
live = os.path.join(out, "txns.live.csv")
store = os.path.join(out, "tables")
registry = os.path.join(out, "registry.db")
run("batch", pipeline, "--in", history, "--out", os.path.join(out, "h.csv"),
    "--materialize", "card_profile", "--store", store, "--registry", registry)

dlog = os.path.join(out, "decisions")
with Server(pipeline, "--state", os.path.join(out, "state"), "--store", store,
            "--decision-log", dlog, "--registry", registry) as server:
    r = run("replay", pipeline, "--in", live, "--store", store, "--url", server.url,
            check=False)
    expect(r.returncode == 0 and " 0 differences" in r.stderr,
           f"replay: {r.returncode} {r.stderr[-1000:]}")
runs = [json.loads(x) for x in
        run("runs", "--registry", registry, "--command", "live", "--json").stdout.splitlines()]
expect(len(runs) == 1, f"{len(runs)} live runs, expected one segment")
run_id = runs[0]["id"]
segment = runs[0]["output"]["path"]
records = [json.loads(x) for x in open(segment)]
decided = {r["event_id"]: r for r in records if not r["duplicate"]}

# Batch over the same events: the reference scores.
batch_out = os.path.join(out, "live.scores.csv")
run("batch", pipeline, "--in", live, "--store", store, "--out", batch_out, "--no-registry")
batch_rows = list(csv.DictReader(open(batch_out)))
batch_score = {}
for row in batch_rows:
    if row.get("duplicate", "0") == "0":
        batch_score[row["txn_id"]] = float(row["score"])

# Late labels: shuffled, 80% of the events, and 25 of events never seen.
truth = {row["txn_id"]: int(row["is_fraud"]) for row in csv.DictReader(open(live))}
rng = random.Random(2525)
ids = sorted(truth)
rng.shuffle(ids)
arrived = ids[:int(len(ids) * 0.8)]
unknown = ["late%04d" % i for i in range(25)]
labels = os.path.join(out, "labels.csv")
with open(labels, "w") as f:
    f.write("txn_id,is_fraud\n")
    rows = [(i, truth[i]) for i in arrived] + [(u, rng.randint(0, 1)) for u in unknown]
    rng.shuffle(rows)
    for i, y in rows:
        f.write(f"{i},{y}\n")

got = json.loads(run("eval", "--record", run_id, "--registry", registry,
                     "--labels", labels, "--id-col", "txn_id", "--label-col",
                     "is_fraud", "--json").stdout)
lv = got["live"]
labeled = [i for i in arrived if i in decided and decided[i]["score"] is not None]
expect(lv["decisions"] == len(decided) and lv["labeled"] == len(labeled) and
       lv["unlabeled"] == len(decided) - len(labeled) and
       lv["labels_unknown"] == len(unknown) and
       set(lv["labels_unknown_examples"]) <= set(unknown),
       f"live counts {lv} (decisions {len(decided)}, labeled {len(labeled)})")


# ---- the reference metrics, by hand ----
def auc(scores, ys):
    """Mann-Whitney U with ties counted half: equal to the trapezoidal ROC
    AUC over distinct scores."""
    pos = [s for s, y in zip(scores, ys) if y == 1]
    neg = [s for s, y in zip(scores, ys) if y == 0]
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_pos = sum(r for r, y in zip(ranks, ys) if y == 1)
    return (rank_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def average_precision(scores, ys):
    """sklearn's step sum over distinct thresholds, highest first."""
    total_pos = sum(ys)
    pairs = sorted(zip(scores, ys), key=lambda p: -p[0])
    ap, tp, fp, prev_recall, i = 0.0, 0, 0, 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            tp += pairs[j][1]
            fp += 1 - pairs[j][1]
            j += 1
        recall = tp / total_pos
        ap += (recall - prev_recall) * tp / (tp + fp)
        prev_recall = recall
        i = j
    return ap


def log_loss(scores, ys):
    eps = 2.0 ** -52
    total = 0.0
    for s, y in zip(scores, ys):
        p = min(max(s, eps), 1 - eps)
        total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
    return total / len(ys)


model_ids = [i for i in labeled if decided[i]["source"] == "model"]
scores = [batch_score[i] for i in model_ids]
ys = [truth[i] for i in model_ids]
expect(0 < sum(ys) < len(ys), f"the labels hold one class only ({sum(ys)} of {len(ys)})")
want = {"roc_auc": auc(scores, ys), "average_precision": average_precision(scores, ys),
        "log_loss": log_loss(scores, ys),
        "brier": sum((s - y) ** 2 for s, y in zip(scores, ys)) / len(ys)}
m = lv["by_source"]["model"]
expect(m["count"] == len(model_ids), f"model rows {m['count']} != {len(model_ids)}")
for k, v in want.items():
    expect(math.isclose(m[k], v, rel_tol=1e-12, abs_tol=1e-15),
           f"live model {k}: tandem {m[k]}, reference {v}")
print("ok live metrics of", len(model_ids), "model answers:",
      {k: round(v, 6) for k, v in want.items()}, flush=True)

# tandem eval on batch output of the same rows gives the same numbers.
same_rows = os.path.join(out, "labels.model.csv")
with open(same_rows, "w") as f:
    f.write("txn_id,is_fraud\n")
    for i in model_ids:
        f.write(f"{i},{truth[i]}\n")
batch_only = os.path.join(out, "batch.model.csv")
with open(batch_only, "w") as f:
    f.write("txn_id,score\n")
    for i in model_ids:
        f.write(f"{i},{[r for r in batch_rows if r['txn_id'] == i][0]['score']}\n")
b = json.loads(run("eval", "--pred", batch_only, "--labels", same_rows, "--id-col",
                   "txn_id", "--label-col", "is_fraud", "--json").stdout)
for k in ("roc_auc", "average_precision", "log_loss", "brier", "ks"):
    expect(b[k] == m[k], f"{k}: eval of batch output {b[k]}, live {m[k]}")

# Stored with the run, and the report renders.
stored = [json.loads(x) for x in run("runs", "--registry", registry, "--command",
                                     "live", "--json").stdout.splitlines()][0]
expect(stored["metrics"] and stored["metrics"]["live"]["labeled"] == len(labeled),
       f"metrics not stored with the live run: {str(stored['metrics'])[:300]}")
report = os.path.join(out, "live.html")
r = run("report", run_id, "--registry", registry, "--out", report, "--labels", labels,
        "--id-col", "txn_id", "--label-col", "is_fraud", check=False)
expect(r.returncode == 0 and os.path.exists(report), f"report: {r.returncode} {r.stderr}")
html = open(report).read() if os.path.exists(report) else ""
expect(f"{len(labeled)} rows evaluated" in html,
       f"the live report does not evaluate the {len(labeled)} labeled decisions")
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if chromium is None:
    print("SKIP Chromium: not installed (scripts/setup.sh installs it)")
elif os.path.exists(report):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1200,2400"]
    proc = subprocess.run([chromium, *flags, "--dump-dom", "file://" + report],
                          capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    expect(proc.returncode == 0 and "</html>" in dom and run_id in dom and
           "Score distribution" in dom and "ROC curve" in dom,
           f"chromium --dump-dom of the live report: {proc.returncode} "
           f"{proc.stderr[-500:]}")
    shot = os.path.join(out, "live.png")
    proc = subprocess.run([chromium, *flags, f"--screenshot={shot}", "file://" + report],
                          capture_output=True, text=True, timeout=180)
    expect(proc.returncode == 0 and os.path.exists(shot) and
           os.path.getsize(shot) > 10_000,
           f"chromium --screenshot: {proc.returncode} {proc.stderr[-500:]}")

finish("test_live_eval")
