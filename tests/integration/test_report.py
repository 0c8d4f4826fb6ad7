"""`tandem report` through the real binary: two batch runs of the fraud
pipeline with different models are recorded in a temporary registry and
labelled by a deterministic rule; reports of one run (labels on the command
line, and metrics recorded by `tandem eval --record`) and of both are
written and checked: well-formed HTML (python's html.parser, with the tags
balanced), self-contained (no http(s) reference, no script), and the
numbers the other commands print (ROC AUC from `tandem eval --json`, PSI
and changed decisions from `tandem compare --json`); errors (an unknown
run, an output that is gone, bad labels) exit 2 naming the fault and
leave no file. Then headless Chromium renders the two-run report: its DOM
holds the key texts and its screenshot (kept as build/report-screenshot.png)
is a real picture."""
import html.parser
import json
import os
import re
import shutil
import subprocess

from common import FIXTURES, ROOT, TANDEM, expect, finish, tmpdir
from pipeline_util import (FRAUD_COLUMNS, fraud_events, fraud_pipeline,
                           read_csv, write_csv)
from png_util import png_pixels

out = tmpdir()
REG = os.path.join(out, "registry.db")
ENV = dict(os.environ, TANDEM_REGISTRY=REG)


def tandem(*args):
    return subprocess.run([TANDEM, *map(str, args)], capture_output=True,
                          text=True, env=ENV)


def run_id(proc, command):
    m = re.search(r"tandem %s: run ([0-9a-f]{12})\n" % command, proc.stderr)
    return m.group(1) if m else None


# ---- two batch runs, and labels from a rule ----
fraud = os.path.join(out, "fraud")
os.makedirs(fraud)
pipe_a = fraud_pipeline(fraud, model_seed=0)
pipe_b = fraud_pipeline(fraud, model_seed=5, model_name="model_b.json",
                        yaml_name="pipeline_b.yaml")
events = fraud_events(7, 1500, invalid=0.0)
events_csv = write_csv(os.path.join(fraud, "events.csv"), FRAUD_COLUMNS,
                       events)
runs, outputs = [], []
for pipe, name in ((pipe_a, "a"), (pipe_b, "b")):
    result = os.path.join(fraud, f"out_{name}.csv")
    proc = tandem("batch", pipe, "--in", events_csv, "--out", result)
    rid = run_id(proc, "batch")
    expect(proc.returncode == 0 and rid, f"batch {name}: {proc.stderr}")
    runs.append(rid)
    outputs.append(result)
rows_a, rows_b = read_csv(outputs[0]), read_csv(outputs[1])
expect([r["txn"] for r in rows_a] == [r["txn"] for r in rows_b],
       "the two runs' outputs are not in the same order")

# The rule: run A's score decides, and every 7th transaction is flipped,
# so that neither model is perfect and A is the better one.
score_a = {r["txn"]: float(r["score"]) for r in rows_a}


def rule(txn):
    return int(score_a[txn] >= 0.5) ^ int(int(txn[1:]) % 7 == 0)


labels = write_csv(os.path.join(out, "labels.csv"), ["txn", "is_fraud"],
                   [{"txn": r["txn"], "is_fraud": str(rule(r["txn"]))}
                    for r in rows_a])
positives = sum(rule(r["txn"]) for r in rows_a)
expect(0 < positives < len(rows_a), f"the rule labels {positives} positive")
print(f"ok two batch runs of {len(rows_a)} rows, {positives} labelled "
      f"positive")

# What the other commands say about the same data.
evals = []
for path in outputs:
    proc = tandem("eval", "--pred", path, "--labels", labels, "--label-col",
                  "is_fraud", "--json")
    expect(proc.returncode == 0, f"eval: {proc.stderr}")
    evals.append(json.loads(proc.stdout) if proc.returncode == 0 else {})
proc = tandem("compare", runs[0], runs[1], "--json")
expect(proc.returncode == 0, f"compare: {proc.stderr}")
compared = json.loads(proc.stdout) if proc.returncode == 0 else {}


# ---- checking a page ----
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
        "meta", "source", "track", "wbr"}
SVG_LEAVES = {"rect", "line", "polyline", "circle", "path"}


class Checker(html.parser.HTMLParser):
    """Collects the text and checks that every element is closed in order
    (SVG shapes may close themselves with />)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.text = [], [], []
        self.tags = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag not in VOID and tag not in SVG_LEAVES:
            self.errors.append(f"<{tag}/> is not a void or SVG shape")

    def handle_endtag(self, tag):
        if tag in VOID:
            self.errors.append(f"</{tag}> closes a void element")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1:]}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_page(path, name):
    """Parses the page; returns (source, visible text, checker)."""
    if not expect(os.path.exists(path), f"{name}: no file"):
        return "", "", None
    source = open(path, encoding="utf-8").read()
    checker = Checker()
    checker.feed(source)
    checker.close()
    expect(not checker.errors and not checker.stack,
           f"{name}: not well-formed: {checker.errors[:5]} open "
           f"{checker.stack}")
    expect(source.startswith("<!DOCTYPE html>"), f"{name}: no doctype")
    expect(not re.search(r"https?:", source, re.I), f"{name}: http reference")
    expect("<script" not in source.lower(), f"{name}: has a script")
    expect(not re.search(r"<link|@import|url\(", source, re.I),
           f"{name}: loads something")
    for points in re.findall(r'<polyline[^>]* points="([^"]*)"', source):
        expect(len(points.split()) <= 500,
               f"{name}: a curve of {len(points.split())} points")
    return source, " ".join(checker.text), checker


def fmt4(x):
    return "%.4f" % x


# ---- one run, labels on the command line ----
one = os.path.join(out, "one.html")
proc = tandem("report", runs[0], "--labels", labels, "--label-col",
              "is_fraud", "--threshold", 0.4, "--threshold", 0.7, "--out", one)
expect(proc.returncode == 0, f"report of one run: {proc.stderr}")
source, text, checker = check_page(one, "one-run report")
if checker:
    ev = evals[0]
    for key in ("roc_auc", "average_precision", "log_loss", "brier", "ks"):
        expect(fmt4(ev[key]) in text, f"one-run report: no {key} {ev[key]}")
    expect(runs[0] in text and "fraud" in text, "one-run report: no run id")
    expect(checker.tags.get("svg", 0) == 6,
           f"one-run report: {checker.tags.get('svg')} charts, not 6 "
           "(histogram, ROC, PR, calibration, cumulative gain, lift)")
    expect(text.count("confusion matrix") == 1 and "0.7" in text,
           "one-run report: no confusion matrix")
    # The ROC curve runs from (0, 0) to (1, 1) exactly (x 0..1 is 64..542
    # in the SVG, y 0..1.02 is 308..18).
    roc = re.findall(r'<polyline[^>]* points="([^"]*)"', source)[0].split()
    expect(roc[0] == "64.00,308.00" and roc[-1] == "542.00,23.69",
           f"one-run report: the ROC curve runs from {roc[0]} to {roc[-1]}")
    print(f"ok one-run report: AUC {fmt4(ev['roc_auc'])} as tandem eval "
          f"prints it, 6 charts, curves at most 500 points")

# ---- many distinct scores: the curves are downsampled ----
model = os.path.join(FIXTURES, "xgboost", "credit_data_binary.model.json")
data = os.path.join(FIXTURES, "xgboost", "credit_data_binary.input.csv")
scored = os.path.join(out, "scored.csv")
proc = tandem("score", "--model", model, "--in", data, "--out", scored)
score_run = run_id(proc, "score")
expect(proc.returncode == 0 and score_run, f"score: {proc.stderr}")
credit = read_csv(data)
credit_labels = write_csv(
    os.path.join(out, "credit_labels.csv"), ["label"],
    [{"label": str(int(r["Records"] == "1") ^ int(i % 11 == 0))}
     for i, r in enumerate(credit)])
distinct = len({r["score"] for r in read_csv(scored)})
many = os.path.join(out, "many.html")
proc = tandem("report", score_run, "--labels", credit_labels, "--out", many)
expect(proc.returncode == 0, f"report of a score run: {proc.stderr}")
source, text, checker = check_page(many, "score-run report")
if checker:
    curves = [p.split() for p in
              re.findall(r'<polyline[^>]* points="([^"]*)"', source)]
    expect(distinct > 500 and len(curves[0]) == 500 and
           len(curves[1]) == 500, f"score-run report: curves of "
           f"{[len(c) for c in curves]} points for {distinct} scores")
    expect(curves[0][0] == "64.00,308.00" and curves[0][-1] == "542.00,23.69"
           and curves[1][-1].startswith("542.00,"),
           f"score-run report: endpoints {curves[0][0]} {curves[0][-1]} "
           f"{curves[1][-1]}")
    print(f"ok {distinct} distinct scores: ROC and PR drawn from 500 points, "
          f"endpoints exact")

# ---- one run, metrics recorded by tandem eval --record ----
proc = tandem("eval", "--pred", outputs[0], "--labels", labels, "--label-col",
              "is_fraud", "--record", runs[0])
expect(proc.returncode == 0, f"eval --record: {proc.stderr}")
stored = os.path.join(out, "stored.html")
proc = tandem("report", runs[0], "--out", stored)
expect(proc.returncode == 0, f"report from recorded metrics: {proc.stderr}")
source, text, checker = check_page(stored, "recorded-metrics report")
if checker:
    expect(fmt4(evals[0]["roc_auc"]) in text and
           "recorded with the run" in text,
           "recorded-metrics report: no recorded AUC")
    expect(checker.tags.get("svg", 0) == 2,
           "recorded-metrics report: expected the histogram and calibration")
    print("ok one-run report from the metrics tandem eval --record stored")

# ---- two runs ----
two = os.path.join(out, "two.html")
proc = tandem("report", runs[0], runs[1], "--labels", labels, "--label-col",
              "is_fraud", "--examples", 5, "--out", two)
expect(proc.returncode == 0, f"report of two runs: {proc.stderr}")
source, text, checker = check_page(two, "two-run report")
if checker:
    psi = compared["shift"]["psi"]
    changed = compared["decisions"]["changed"]
    expect(fmt4(psi) in text, f"two-run report: no PSI {fmt4(psi)}")
    expect(re.search(r"decisions changed\s+%s\b" %
                     "\u202f".join(re.findall(r"\d{1,3}(?=(?:\d{3})*$)",
                                              str(changed))), text),
           f"two-run report: no {changed} changed decisions")
    for ev in evals:
        expect(fmt4(ev["roc_auc"]) in text, f"two-run report: no AUC "
               f"{ev['roc_auc']}")
    delta = evals[1]["roc_auc"] - evals[0]["roc_auc"]
    expect("%+.4f" % delta in text, f"two-run report: no AUC delta {delta}")
    examples = compared["decisions"]["examples"]
    expect(all(e["id"] in text for e in examples[:5]),
           "two-run report: the changed-decision examples are missing")
    expect(runs[0] in text and runs[1] in text, "two-run report: run ids")
    expect(checker.tags.get("svg", 0) == 6 and
           source.count("<polyline") == 10,
           f"two-run report: {checker.tags.get('svg')} charts, "
           f"{source.count('<polyline')} lines (expected 6, and 2 per plot "
           f"but the histogram)")
    print(f"ok two-run report: PSI {fmt4(psi)} and {changed} changed "
          f"decisions as tandem compare computes them, both AUCs and delta")

# ---- escaping: a string from data ----
evil_labels = os.path.join(out, "la<b>els&.csv")
shutil.copy(labels, evil_labels)
escaped = os.path.join(out, "escaped.html")
proc = tandem("report", runs[0], "--labels", evil_labels, "--label-col",
              "is_fraud", "--out", escaped)
expect(proc.returncode == 0, f"report with an odd file name: {proc.stderr}")
source, text, checker = check_page(escaped, "escaped report")
if checker:
    expect("la&lt;b&gt;els&amp;.csv" in source and "la<b>els" not in source,
           "a file name from data is not escaped")
    print("ok strings from data are HTML-escaped")

# ---- errors: exit 2, a clear message, no file ----
def fails(name, args, needle):
    target = os.path.join(out, f"fail-{name}.html")
    proc = tandem("report", *args, "--out", target)
    expect(proc.returncode == 2 and needle in proc.stderr,
           f"{name}: exit {proc.returncode}, {proc.stderr.strip()}")
    leftovers = [f for f in os.listdir(out) if f.startswith(f"fail-{name}")]
    expect(not leftovers, f"{name}: left {leftovers}")


fails("unknown", ["ffffffffffff"], "ffffffffffff")
gone = os.path.join(fraud, "out_c.csv")
proc = tandem("batch", pipe_a, "--in", events_csv, "--out", gone)
run_c = run_id(proc, "batch")
os.remove(gone)
fails("gone", [run_c], gone)
bad = write_csv(os.path.join(out, "bad.csv"), ["is_fraud"],
                [{"is_fraud": "1"}, {"is_fraud": "2"}] +
                [{"is_fraud": "0"}] * (len(rows_a) - 2))
fails("labels", [runs[0], "--labels", bad, "--label-col", "is_fraud"],
      f"{bad}:3")
short = write_csv(os.path.join(out, "short.csv"), ["is_fraud"],
                  [{"is_fraud": "1"}])
fails("short", [runs[0], runs[1], "--labels", short, "--label-col",
                "is_fraud"], "short.csv")
fails("column", [runs[0], "--labels", labels, "--label-col", "nope"],
      "nope")
proc = tandem("report", runs[0])
expect(proc.returncode == 2 and "--out" in proc.stderr,
       f"no --out: {proc.returncode} {proc.stderr}")
print("ok errors exit 2 naming the run, the file or the line; no file left")

# ---- Chromium renders it ----
chromium = shutil.which("chromium") or shutil.which("chromium-browser")


if chromium is None:
    print("SKIP Chromium checks: chromium is not installed "
          "(apt-get install chromium; scripts/setup.sh installs it)")
else:
    flags = ["--headless", "--no-sandbox", "--disable-gpu",
             "--hide-scrollbars", "--window-size=1200,2400"]
    url = "file://" + os.path.abspath(two)
    proc = subprocess.run([chromium, *flags, "--dump-dom", url],
                          capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    expect(proc.returncode == 0 and "</html>" in dom,
           f"chromium --dump-dom: {proc.returncode} {proc.stderr[-500:]}")
    for needle in ("Score distribution", "ROC curve", "Precision-recall curve",
                   "Calibration", "population stability index", runs[0],
                   runs[1], fmt4(compared["shift"]["psi"]),
                   fmt4(evals[0]["roc_auc"])):
        expect(needle in dom, f"the rendered DOM lacks {needle!r}")
    shot = os.path.join(out, "report.png")
    proc = subprocess.run([chromium, *flags, f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=180)
    if expect(proc.returncode == 0 and os.path.exists(shot),
              f"chromium --screenshot: {proc.returncode} "
              f"{proc.stderr[-500:]}"):
        size = os.path.getsize(shot)
        width, height, colors = png_pixels(shot)
        expect(size > 20_000, f"the screenshot is only {size} bytes")
        expect((width, height) == (1200, 2400),
               f"the screenshot is {width}x{height}")
        expect(colors > 50, f"the screenshot has {colors} colours")
        os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
        kept = os.path.join(ROOT, "build", "report-screenshot.png")
        shutil.copy(shot, kept)
        print(f"ok Chromium renders the two-run report: DOM has the key "
              f"texts; screenshot {width}x{height}, {size} bytes, {colors} "
              f"colours, kept as {os.path.relpath(kept, ROOT)}")

finish("test_report")
