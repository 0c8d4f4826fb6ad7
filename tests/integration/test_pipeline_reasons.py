"""Reason codes of a pipeline (explain: in its YAML), on the fraud example.

The fraud example's pipeline (examples/fraud, its 200-tree model) with
`explain: {reasons: 4, min_contribution: 0.5}` added, over a seeded month
slice from examples/fraud/generate.py:

(a) Batch: every CSV row's `reasons` column holds the same bytes as the
    JSON Lines output's "reasons" array for that event; three events sent
    twice in a row answer as duplicates whose reasons repeat the first.
(b) Live: a fresh `tandem serve` answers each event, sent one per request,
    with the same "reasons" bytes as batch; with ?explain=contribs the
    answer also carries every contribution.
(c) `tandem replay` finds 0 differences (it compares whole answers,
    reasons included).
(d) The reference: xgboost's own Booster.predict(pred_contribs=True) on
    the features batch computed (`--explain`) gives, per event, the
    contributions ?explain=contribs wrote (as float32 bits), and the
    reasons are its top 4 by absolute value at least 0.5 (ties in the
    model's feature order), with the feature's value and direction.
(e) Spec errors (bad reasons or min_contribution, an unknown key, a model
    without node covers) name file:line:col and exit 2 with no output.
"""
import csv
import http.client
import json
import os
import re
import subprocess
import sys

import numpy as np

from common import expect, finish, tmpdir
from pipeline_util import read_lines, tandem, write
from serve_util import Server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAUD = os.path.join(ROOT, "examples", "fraud")
REASONS, MIN_CONTRIBUTION = 4, 0.5

out = tmpdir()
# The example's pipeline, explained, with its model by absolute path. The
# deadline fallback is left out: an answer from the fallback (a busy
# machine) is not the batch answer, and this test is about reasons.
text = open(os.path.join(FRAUD, "pipeline.yaml")).read()
text = text.replace("{path: model.json}",
                    "{path: " + os.path.join(FRAUD, "model.json") + "}")
text = re.sub(r"(?m)^realtime:.*\n", "", text)
pipeline = write(os.path.join(out, "pipeline.yaml"),
                 text + f"\nexplain: {{reasons: {REASONS}, "
                        f"min_contribution: {MIN_CONTRIBUTION}}}\n")
store = os.path.join(out, "tables")

events_csv = os.path.join(out, "events.csv")
subprocess.run([sys.executable, os.path.join(FRAUD, "generate.py"), "--cards",
                "40", "--days", "3", "--seed", "21", "--out", events_csv],
               check=True, capture_output=True)
# Three events are sent twice in a row: a repeated id answers as a
# duplicate, whose reasons must repeat the first answer's.
lines = open(events_csv).readlines()
REPEATED = (10, 50, 90)
for i in sorted(REPEATED, reverse=True):
    lines.insert(i + 2, lines[i + 1])
write(events_csv, "".join(lines))
header = lines[0].strip().split(",")
events = [dict(zip(header, line.strip().split(","))) for line in lines[1:]]
expect(len(events) > 100, f"generate.py gave {len(events)} events")


def reasons_bytes(answer):
    """The raw "reasons" array of one JSON answer (no nested arrays)."""
    m = re.search(r'"reasons":(\[[^\]]*\]|null)', answer)
    expect(m is not None, f"no reasons in {answer[:200]}")
    return m.group(1) if m else None


# ---- (a) batch: CSV and JSON Lines ----
batch_csv = os.path.join(out, "scores.csv")
batch_jsonl = os.path.join(out, "scores.jsonl")
explained = os.path.join(out, "features.jsonl")
for path, flags in ((batch_csv, ()), (batch_jsonl, ()), (explained, ("--explain",))):
    r = tandem("batch", pipeline, "--in", events_csv, "--out", path,
               "--store", store, *flags)
    expect(r.returncode == 0, f"batch {path}: {r.stderr}")
    if r.returncode != 0:
        finish("test_pipeline_reasons")  # nothing further can be compared
jsonl_lines = [line.decode() for line in read_lines(batch_jsonl)]
expect(len(jsonl_lines) == len(events), "one JSON line per event")
batch_reasons = [reasons_bytes(line) for line in jsonl_lines]
with open(batch_csv, newline="") as f:
    rows = list(csv.DictReader(f))
expect([row["reasons"] for row in rows] == batch_reasons,
       "CSV reasons column == JSON Lines reasons, byte for byte")
dup_at = [i for i, line in enumerate(jsonl_lines) if '"duplicate":true' in line]
expect(dup_at == [i + 1 + k for k, i in enumerate(REPEATED)],
       f"duplicates at {dup_at}")
expect(all(batch_reasons[i] == batch_reasons[i - 1] for i in dup_at),
       "a duplicate's reasons repeat the first answer's")
# Both limits cut: some events have 4 reasons, some fewer (the rest are
# below min_contribution).
lengths = {len(json.loads(b)) for b in batch_reasons}
expect(REASONS in lengths and min(lengths) < REASONS,
       f"reasons per event: {sorted(lengths)}; the data should hit both limits")

# ---- (b) live: one event per request, fresh state ----
NUMBERS = ("amount",)


def event_json(event):
    e = {k: v for k, v in event.items() if k != "is_fraud"}
    for k in NUMBERS:
        e[k] = float(e[k])
    return json.dumps(e)


live_answers = []
with Server(pipeline, "--store", store) as server:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    for event in events:
        conn.request("POST", "/v1/pipelines/fraud/events?explain=contribs",
                     body=event_json(event),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read().decode()
        expect(resp.status == 200, f"live answer {resp.status}: {body}")
        live_answers.append(body)
    conn.close()
live_reasons = [reasons_bytes(a) for a in live_answers]
same = sum(a == b for a, b in zip(live_reasons, batch_reasons))
expect(same == len(events),
       f"live reasons == batch reasons for {same} of {len(events)} events")
first_diff = next((i for i, (a, b) in enumerate(zip(live_reasons, batch_reasons))
                   if a != b), None)
if first_diff is not None:
    print("first difference:", live_reasons[first_diff], batch_reasons[first_diff])

# ---- (c) replay: 0 differences ----
with Server(pipeline, "--store", store) as server:
    r = tandem("replay", pipeline, "--in", events_csv, "--url", server.url,
               "--store", store, timeout=600)
    expect(r.returncode == 0 and " 0 differences" in r.stderr,
           f"replay: rc {r.returncode}: {r.stderr[-1500:]}")
    bad = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
         "--data-binary", event_json(events[0]),
         server.url + "/v1/pipelines/fraud/events?explain=why"],
        capture_output=True, text=True)
    expect(bad.stdout == "400", f"?explain=why answers {bad.stdout}, not 400")

# ---- (d) the reference: xgboost's pred_contribs ----
import xgboost as xgb  # noqa: E402

booster = xgb.Booster()
booster.load_model(os.path.join(FRAUD, "model.json"))
names = booster.feature_names
features = [json.loads(line)["features"] for line in read_lines(explained)]
expect(len(features) == len(events), "one explained line per event")
fields = [{k: v for k, v in e.items()} for e in events]


def model_input(i, name):
    """What the pipeline feeds the model: a feature's value, or a numeric
    field's; missing and infinite values are missing."""
    v = features[i].get(name)
    if v is None and name in fields[i]:
        v = float(fields[i][name]) if fields[i][name] != "" else None
    return np.nan if v is None or not np.isfinite(v) else v


X = np.array([[model_input(i, n) for n in names] for i in range(len(events))],
             dtype=np.float32)
contribs = booster.predict(xgb.DMatrix(X, feature_names=names, missing=np.nan),
                           pred_contribs=True).astype(np.float32)
wrong_contribs = wrong_reasons = 0
for i, answer in enumerate(live_answers):
    got = json.loads(answer)
    live_c = np.array(got["contribs"], dtype=np.float32)
    if live_c.shape != contribs[i].shape or \
            live_c.view(np.uint32).tolist() != contribs[i].view(np.uint32).tolist():
        wrong_contribs += 1
    c = contribs[i][:-1]
    order = sorted((f for f in range(len(names))
                    if c[f] != 0 and abs(float(c[f])) >= MIN_CONTRIBUTION),
                   key=lambda f: (-abs(float(c[f])), f))[:REASONS]
    want = [{"feature": names[f],
             "value": None if np.isnan(X[i][f]) else features[i].get(names[f]),
             "contribution": float(c[f]),
             "direction": "up" if c[f] > 0 else "down"} for f in order]
    have = json.loads(batch_reasons[i])
    for h in have:  # compare contributions as float32, as the model writes them
        h["contribution"] = float(np.float32(h["contribution"]))
    if have != want:
        wrong_reasons += 1
        if wrong_reasons <= 2:
            print("event", i, "want", want, "have", have)
expect(wrong_contribs == 0,
       f"?explain=contribs differs from xgboost's pred_contribs for "
       f"{wrong_contribs} of {len(events)} events")
expect(wrong_reasons == 0,
       f"reasons differ from the reference for {wrong_reasons} of {len(events)} "
       "events")

# ---- (e) spec errors ----
base = text.rstrip("\n") + "\n"
for bad_explain, where in (
        ("explain: {reasons: 0}\n", "reasons must be a whole number"),
        ("explain: {reasons: 3, min_contribution: -1}\n", "min_contribution"),
        ("explain: {reasons: 3, why: 1}\n", "unknown key \"why\""),
        ("explain: {min_contribution: 0.1}\n", "explain needs reasons")):
    path = write(os.path.join(out, "bad.yaml"), base + bad_explain)
    line = base.count("\n") + 1
    target = os.path.join(out, "bad.csv")
    r = tandem("batch", path, "--in", events_csv, "--out", target, "--store", store)
    expect(r.returncode == 2 and f"bad.yaml:{line}:" in r.stderr and where in r.stderr
           and not os.path.exists(target),
           f"{bad_explain.strip()}: rc {r.returncode}, {r.stderr.strip()}")

# A model without node covers (sum_hessian removed) still scores, but
# cannot explain: the error names explain:'s line.
doc = json.load(open(os.path.join(FRAUD, "model.json")))
for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
    tree.pop("sum_hessian", None)
bare_model = os.path.join(out, "bare.json")
json.dump(doc, open(bare_model, "w"))
bare = base.replace(os.path.join(FRAUD, "model.json"), bare_model)
path = write(os.path.join(out, "bare.yaml"), bare + "explain: {reasons: 2}\n")
target = os.path.join(out, "bare.csv")
r = tandem("batch", path, "--in", events_csv, "--out", target, "--store", store)
expect(r.returncode == 2 and f"bare.yaml:{bare.count(chr(10)) + 1}:" in r.stderr
       and "cannot give contributions" in r.stderr and not os.path.exists(target),
       f"a model without covers: rc {r.returncode}, {r.stderr.strip()}")
r = tandem("batch", write(os.path.join(out, "bare2.yaml"), bare), "--in",
           events_csv, "--out", target, "--store", store)
expect(r.returncode == 0, f"the same model without explain: scores: {r.stderr}")

finish("test_pipeline_reasons")
