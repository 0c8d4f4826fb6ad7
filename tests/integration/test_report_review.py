"""What a reviewer reads first in `tandem report` (docs/runs.md), checked
number by number against computations made here from the runs' own output
files and the labels (numpy and scikit-learn), never against tandem:

Two recorded `tandem batch --explain` runs of the fraud pipeline with
different models, B over the same seeded transactions with amounts tripled
and half the merchants new (JSON Lines outputs keep the features), labels from a noisy rule, and metrics recorded for run A with
`tandem eval --record --threshold 0.3 --threshold 0.6`.

1. The summary comes first and holds each run's rows, ROC AUC and PR AUC
   (scikit-learn's roc_auc_score and average_precision_score), decision
   counts (counted here from the outputs), the score PSI (numpy, 10 bins
   at A's deciles), and the verdict the documented rules give for those
   numbers.
2. The decisions table: each decision's count and share per run, B - A.
3. Confusion matrices of both runs at the thresholds recorded with run A
   (0.3 and 0.6, as no --threshold is given), counted here.
4. Lift and cumulative gain by tenth: for each tenth, the smallest group
   of top-scored rows (ties together) holding at least that share, its
   positives, gain and lift, computed here.
5. Feature drift: each feature's PSI (10 bins at A's deciles plus one for
   missing values, over all rows, empty bins as 1e-4) computed here.
6. --log-scale: the histogram's bars are heights linear in log10 of each
   bin's share (a fit over every bar) and every bar is over 1 px tall (on
   the linear scale of these scores one is under half a pixel), and
   without it linear in the share; the shares in the bars' titles equal
   the bin counts computed here.
7. A regression run (the credit model scored, targets = score + seeded
   noise) with its RMSE recorded by `tandem eval --task regression
   --record`: the summary shows numpy's RMSE.
8. Headless Chromium renders each <section> alone (the others hidden by a
   style added to a copy of the page) to a PNG in the test's temporary
   directory (copied to build/report-sections/ to look at): each is a real
   picture (many colours), and its DOM holds the section's heading.
"""
import collections
import html.parser
import json
import os
import re
import shutil
import subprocess

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from common import ROOT, TANDEM, expect, finish, tmpdir
from png_util import png_pixels
from pipeline_util import (FRAUD_COLUMNS, FRAUD_FEATURES, fraud_events,
                           fraud_pipeline, write_csv)

out = tmpdir()
ENV = dict(os.environ, TANDEM_REGISTRY=os.path.join(out, "registry.db"))
EPSILON = 1e-4


def tandem(*args):
    return subprocess.run([TANDEM, *map(str, args)], capture_output=True,
                          text=True, env=ENV)


# ---- two --explain runs and noisy labels ----
pipe_a = fraud_pipeline(out, model_seed=1)
pipe_b = fraud_pipeline(out, model_seed=9, model_name="model_b.json",
                        yaml_name="pipeline_b.yaml")
events = fraud_events(23, 1200, invalid=0.0)
# Run B's events are the same transactions later: amounts tripled and every
# other merchant new, so the amount features drift and the others less.
shifted = []
for i, e in enumerate(events):
    e = dict(e)
    if e["amount"] is not None:
        e["amount"] = "%.2f" % (float(e["amount"]) * 3)
    if e["merchant"] is not None and i % 2:
        e["merchant"] = "new-" + e["merchant"]
    shifted.append(e)
events_csv = write_csv(os.path.join(out, "events.csv"), FRAUD_COLUMNS, events)
shifted_csv = write_csv(os.path.join(out, "shifted.csv"), FRAUD_COLUMNS, shifted)
runs, rows = [], []
for pipe, name, inp in ((pipe_a, "a", events_csv), (pipe_b, "b", shifted_csv)):
    result = os.path.join(out, f"out_{name}.jsonl")
    proc = tandem("batch", pipe, "--in", inp, "--out", result, "--explain")
    m = re.search(r"tandem batch: run ([0-9a-f]{12})\n", proc.stderr)
    expect(proc.returncode == 0 and m, f"batch {name}: {proc.stderr}")
    runs.append(m.group(1) if m else "")
    rows.append([json.loads(l) for l in open(result)])
n = len(rows[0])
expect(n == len(rows[1]) and n > 1000, f"{n} and {len(rows[1])} rows")
scores = [np.array([np.nan if r["score"] is None else r["score"] for r in rs])
          for rs in rows]
# The rule: a mix of both runs' scores and a feature, with every 5th row
# flipped, so that neither model is perfect.
mix = [0.6 * ra["score"] + 0.4 * rb["score"] + 0.002 * (ra["features"]["hour"] or 0)
       for ra, rb in zip(*rows)]
cut = np.quantile(mix, 0.8)
label_of = [int(x > cut) ^ int(i % 5 == 0) for i, x in enumerate(mix)]
labels = np.array(label_of)
labels_csv = write_csv(os.path.join(out, "labels.csv"), ["txn", "is_fraud"],
                       [{"txn": r["txn"], "is_fraud": str(y)}
                        for r, y in zip(rows[0], label_of)])
proc = tandem("eval", "--pred", os.path.join(out, "out_a.jsonl"), "--labels",
              labels_csv, "--label-col", "is_fraud", "--threshold", 0.3,
              "--threshold", 0.6, "--record", runs[0])
expect(proc.returncode == 0, f"eval --record: {proc.stderr}")

page = os.path.join(out, "review.html")
proc = tandem("report", runs[0], runs[1], "--labels", labels_csv,
              "--label-col", "is_fraud", "--out", page)
expect(proc.returncode == 0, f"report: {proc.stderr}")
logpage = os.path.join(out, "review-log.html")
proc = tandem("report", runs[0], "--log-scale", "--out", logpage)
expect(proc.returncode == 0, f"report --log-scale: {proc.stderr}")
linpage = os.path.join(out, "review-linear.html")
proc = tandem("report", runs[0], "--out", linpage)
expect(proc.returncode == 0, f"report: {proc.stderr}")


# ---- reading the page: sections, their tables, their text ----
class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.order, self.text, self.tables = [], {}, {}
        self.section, self.table, self.row, self.cell = None, None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.section = a.get("id")
            self.order.append(self.section)
            self.text[self.section] = []
            self.tables[self.section] = []
        elif tag == "table" and self.section:
            self.table = []
            self.tables[self.section].append((a.get("class"), self.table))
        elif tag == "tr" and self.table is not None:
            self.row = []
            self.table.append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
            self.row.append(self.cell)
        elif tag == "br" and self.cell is not None:
            self.cell.append("\n")

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None
        elif tag == "table":
            self.table = None
        elif tag in ("td", "th") and self.cell is not None and self.row:
            self.row[-1] = "".join(self.cell).replace("\u202f", "").strip()
            self.cell = None

    def handle_data(self, data):
        if self.section:
            self.text[self.section].append(data)
        if self.cell is not None:
            self.cell.append(data)


def read_page(path):
    p = Page()
    p.feed(open(path, encoding="utf-8").read() if os.path.exists(path) else "")
    p.text = {k: " ".join(v).replace("\u202f", "") for k, v in p.text.items()}
    return p


def table(p, section, cls=None, index=0):
    found = [t for c, t in p.tables.get(section, []) if cls is None or c == cls]
    return found[index] if len(found) > index else []


def as_dict(t):
    """A two-dimensional table keyed by its first column."""
    return {r[0]: r[1:] for r in t[1:] if r}


p = read_page(page)
expect(p.order[:1] == ["summary"], f"the first section is {p.order[:1]}")
expect({"summary", "runs", "scores", "decisions", "metrics", "gain",
        "comparison", "features"} <= set(p.order), f"sections: {p.order}")

# ---- 1. the summary ----
auc = [roc_auc_score(labels, s) for s in scores]
ap = [average_precision_score(labels, s) for s in scores]
decisions = [collections.Counter(r["decision"] for r in rs if r["decision"])
             for rs in rows]


def psi_of(ref, live, missing_bin):
    present = ref[~np.isnan(ref)]
    cuts = np.quantile(present, [i / 10 for i in range(1, 10)])

    def fractions(v):
        counts = np.zeros(11)
        np.add.at(counts, np.searchsorted(cuts, v[~np.isnan(v)], side="left"), 1)
        counts[10] = np.isnan(v).sum()
        return counts / (len(v) if missing_bin else (~np.isnan(v)).sum())

    a, b = fractions(ref), fractions(live)
    if not missing_bin:
        a, b = a[:10], b[:10]
    a = np.where(a > 0, a, EPSILON)
    b = np.where(b > 0, b, EPSILON)
    return float(np.sum((b - a) * np.log(b / a)))


score_psi = psi_of(scores[0], scores[1], missing_bin=False)
summary = as_dict(table(p, "summary", "summary"))
expect(summary.get("run") == runs, f"summary runs: {summary.get('run')}")
expect(summary.get("rows") == [str(n), str(n)], f"summary rows: {summary.get('rows')}")
expect(summary.get("ROC AUC") == ["%.4f" % x for x in auc],
       f"summary AUC {summary.get('ROC AUC')}, scikit-learn {auc}")
expect(summary.get("PR AUC (average precision)") == ["%.4f" % x for x in ap],
       f"summary PR AUC {summary.get('PR AUC (average precision)')}, scikit-learn {ap}")
expect(summary.get("PSI of the scores", ["", ""])[1] == "%.4f" % score_psi,
       f"summary PSI {summary.get('PSI of the scores')}, numpy {score_psi}")
for k in range(2):
    got = dict(re.findall(r"(\w+) (\d+) \(", summary.get("decisions", ["", ""])[k]))
    expect({d: int(c) for d, c in got.items()} == dict(decisions[k]),
           f"summary decisions of run {'AB'[k]}: {got}, counted {dict(decisions[k])}")
d_auc = auc[1] - auc[0]
ranking = ("ranks better" if d_auc >= 0.005 else "ranks worse" if d_auc <= -0.005
           else "rank alike")
shift = ("stable" if score_psi < 0.1 else "shifted moderately" if score_psi < 0.25
         else "shifted a lot")
changed = sum(a["decision"] != b["decision"] for a, b in zip(*rows))
verdict = p.text.get("summary", "")
expect(ranking in verdict and "ROC AUC %+.4f" % d_auc in verdict and shift in verdict
       and "PSI %.4f" % score_psi in verdict and f"{changed} of {n} decisions changed"
       in verdict, f"the verdict {verdict[:400]!r}; expected {ranking}, "
       f"{d_auc:+.4f}, {shift}, {changed} changed")

# ---- 2. decisions ----
dec = as_dict(table(p, "decisions", "decisions"))
for d in set(decisions[0]) | set(decisions[1]):
    a, b = decisions[0][d], decisions[1][d]
    want = [f"{a} ({100 * a / n:.2f}%)", f"{b} ({100 * b / n:.2f}%)", "%+d" % (b - a)]
    expect(dec.get(d) == want, f"decision {d}: {dec.get(d)}, counted {want}")

# ---- 3. confusion at the recorded thresholds ----
confusion = [t for c, t in p.tables.get("metrics", []) if t and t[0][:1] == ["threshold"]]
expect(len(confusion) == 2, f"{len(confusion)} confusion tables (one per run)")
for k, t in enumerate(confusion):
    got = {r[0]: r[1:5] for r in t[1:]}
    for thr in (0.3, 0.6):
        pred = scores[k] >= thr
        want = [str(int(np.sum(~pred & (labels == 0)))), str(int(np.sum(pred & (labels == 0)))),
                str(int(np.sum(~pred & (labels == 1)))), str(int(np.sum(pred & (labels == 1))))]
        expect(got.get("%.4g" % thr) == want,
               f"run {'AB'[k]} confusion at {thr}: {got.get('%.4g' % thr)}, counted {want}")
    expect(set(got) == {"0.3", "0.6"}, f"run {'AB'[k]} thresholds {sorted(got)}")

# ---- 4. gain and lift by tenth ----
for k in range(2):
    order = np.argsort(-scores[k], kind="stable")
    s_sorted, y_sorted = scores[k][order], labels[order]
    # Group ends: after the last row of each distinct score.
    ends = [i + 1 for i in range(n) if i == n - 1 or s_sorted[i] != s_sorted[i + 1]]
    positives = labels.sum()
    want = []
    for part in range(1, 11):
        end = next(e for e in ends if e * 10 >= part * n)
        found = y_sorted[:end].sum()
        want.append([str(part), str(end), "%.4f" % (end / n), "%.4g" % s_sorted[end - 1],
                     str(int(found)), "%.4f" % (found / positives),
                     "%.4f" % ((found / positives) / (end / n))])
    got = table(p, "gain", "gain", k)[1:]
    expect(got == want, f"run {'AB'[k]} gain table:\n{got}\ncomputed:\n{want}")

# ---- 5. feature drift ----
feats = as_dict(table(p, "features", "features"))
fa = {f: np.array([np.nan if r["features"].get(f) is None else r["features"][f]
                   for r in rows[0]]) for f in FRAUD_FEATURES}
fb = {f: np.array([np.nan if r["features"].get(f) is None else r["features"][f]
                   for r in rows[1]]) for f in FRAUD_FEATURES}
expect(sorted(feats) == sorted(FRAUD_FEATURES), f"features listed: {sorted(feats)}")
psis = {}
for f in FRAUD_FEATURES:
    psis[f] = v = psi_of(fa[f], fb[f], missing_bin=True)
    expect(feats.get(f, [""])[0] == "%.4f" % v,
           f"feature {f}: PSI {feats.get(f)}, numpy {v:.4f}")
expect(psis["log_amount"] > 0.25 and psis["hour"] < 0.1,
       f"the shift shows where it was made: {psis}")


# ---- 6. the log-scale histogram ----
def histogram_bars(path):
    """(height, share %) of run A's bars; [] when there is no page."""
    if not os.path.exists(path):
        return []
    source = open(path, encoding="utf-8").read()
    m = re.search(r"<svg[^>]*>.*?Score distribution.*?</svg>", source, re.S)
    svg = m.group(0) if m else ""
    return [(float(h), float(share)) for h, share in re.findall(
        r'<rect x="[^"]*" y="[^"]*" width="[^"]*" height="([^"]*)" fill="[^"]*" '
        r'fill-opacity="0.85"><title>run A, scores [^:]*: ([0-9.]+)% of rows', svg)]


bins = np.zeros(40)
for s in scores[0]:
    bins[min(max(int(s / (1 / 40)), 0), 39)] += 1
want_shares = sorted("%.2f" % (100 * c / n) for c in bins if c > 0)
for path, log in ((logpage, True), (linpage, False)):
    bars = histogram_bars(path)
    expect(sorted("%.2f" % s for _, s in bars) == want_shares,
           f"{'log' if log else 'linear'} histogram shares differ from the "
           f"bin counts: {sorted(s for _, s in bars)} vs {want_shares}")
    x = np.array([np.log10(s / 100) if log else s / 100 for _, s in bars])
    h = np.array([hh for hh, _ in bars])
    if len(bars) >= 3:
        fit = np.polyfit(x, h, 1)
        # Titles round shares to 0.01%: the fit is as good as that allows.
        resid = np.abs(np.polyval(fit, x) - h).max()
        expect(fit[0] > 0 and resid < (2.0 if log else 1.0),
               f"{'log' if log else 'linear'} histogram: heights are not "
               f"linear in {'log10 ' if log else ''}share (residual {resid:.2f} px)")
    if log:
        expect(len(h) > 0 and min(h) > 1,
               f"the log scale shows a bar of {min(h, default=0):.2f} px")
logp = read_page(logpage)
expect("share of rows (log scale)" in logp.text.get("scores", ""),
       "the log histogram's axis title")

# ---- 7. a regression's recorded RMSE in the summary ----
credit = os.path.join(out, "credit.csv")
proc = tandem("score", "--model", os.path.join(ROOT, "examples", "credit-risk", "model.json"),
              "--in", os.path.join(ROOT, "examples", "credit-risk", "applicants.csv"),
              "--keep", "applicant_id", "--out", credit)
m = re.search(r"tandem score: run ([0-9a-f]{12})\n", proc.stderr)
expect(proc.returncode == 0 and m, f"score: {proc.stderr}")
predicted = np.loadtxt(credit, delimiter=",", skiprows=1, usecols=1)
truth = predicted + np.random.default_rng(8).normal(0, 0.2, len(predicted))
targets = write_csv(os.path.join(out, "targets.csv"), ["y"],
                    [{"y": repr(float(y))} for y in truth])
proc = tandem("eval", "--pred", credit, "--labels", targets, "--label-col", "y",
              "--task", "regression", "--record", m.group(1) if m else "")
expect(proc.returncode == 0, f"eval --task regression --record: {proc.stderr}")
regression = os.path.join(out, "regression.html")
proc = tandem("report", m.group(1) if m else "", "--out", regression)
expect(proc.returncode == 0, f"report of the score run: {proc.stderr}")
rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
rp = read_page(regression)
got = as_dict(table(rp, "summary", "summary")).get("RMSE (recorded)")
expect(got == ["%.4g" % rmse] and "recorded RMSE of %.4g" % rmse in
       rp.text.get("summary", ""), f"summary RMSE {got}, numpy {rmse:.4g}")

# ---- 8. Chromium, one screenshot per section ----
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
HEADINGS = {"summary": "Summary", "runs": "Runs", "scores": "Scores",
            "decisions": "Decisions", "metrics": "Metrics",
            "gain": "Lift and cumulative gain",
            "comparison": "Comparison: run B against run A",
            "features": "Feature drift: run B against run A"}
if chromium is None:
    print("SKIP Chromium screenshots: chromium is not installed "
          "(scripts/setup.sh installs it)")
elif "asan" in os.path.basename(os.path.dirname(os.path.abspath(TANDEM))):
    # The page is the same bytes whichever build wrote it; the sanitizer
    # run checks tandem, and the plain run renders the sections.
    print("SKIP Chromium screenshots under the sanitizer build (the plain "
          "build's run renders them)")
else:
    source = open(page, encoding="utf-8").read()
    kept = os.path.join(ROOT, "build", "report-sections")
    os.makedirs(kept, exist_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1200,1500"]
    for section in p.order:
        alone = os.path.join(out, f"section-{section}.html")
        with open(alone, "w", encoding="utf-8") as f:
            f.write(source.replace(
                "</head>", "<style>main > section:not(#%s), main > h1, "
                "main > p.meta {display:none}</style></head>" % section, 1))
        url = "file://" + alone
        proc = subprocess.run([chromium, *flags, "--dump-dom", url],
                              capture_output=True, text=True, timeout=180)
        expect(proc.returncode == 0 and HEADINGS[section] in proc.stdout,
               f"chromium --dump-dom {section}: {proc.returncode} "
               f"{proc.stderr[-300:]}")
        shot = os.path.join(out, f"report-{section}.png")
        proc = subprocess.run([chromium, *flags, f"--screenshot={shot}", url],
                              capture_output=True, text=True, timeout=180)
        if not expect(proc.returncode == 0 and os.path.exists(shot),
                      f"chromium --screenshot {section}: {proc.returncode} "
                      f"{proc.stderr[-300:]}"):
            continue
        width, height, colors = png_pixels(shot)
        expect((width, height) == (1200, 1500) and colors > 20,
               f"the {section} screenshot is {width}x{height} with {colors} colours")
        shutil.copy(shot, os.path.join(kept, f"{section}.png"))
        print(f"ok section {section}: {width}x{height}, {colors} colours, "
              f"{os.path.getsize(shot)} bytes, {shot}")

finish("test_report_review")
