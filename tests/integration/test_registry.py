"""The run registry through the real binary and real SQLite (python's
sqlite3 module reads what tandem wrote): `tandem score` and `tandem batch`
record their runs with the SHA-256 of every file they read and wrote;
`tandem runs` filters and JSON; `tandem compare` of two batch runs of the
fraud pipeline with different models shows changed decisions and a PSI
equal to numpy's computation of it, and of one run with itself PSI 0 and
no changes; 20 parallel runs on one new registry are all recorded and the
database passes PRAGMA integrity_check; a registry that cannot be written
warns without failing the run; a deleted or changed output makes compare
fail naming the file."""
import hashlib
import csv
import json
import os
import re
import sqlite3
import subprocess
import time

import numpy as np

from common import FIXTURES, TANDEM, expect, finish, tmpdir
from pipeline_util import (FRAUD_COLUMNS, fraud_events, fraud_pipeline,
                           write_csv)

out = tmpdir()
REG = os.path.join(out, "reg", "sub", "registry.db")  # directories created
ENV = {k: v for k, v in os.environ.items() if k != "TANDEM_REGISTRY"}


def tandem(*args, env=None):
    return subprocess.run([TANDEM, *map(str, args)], capture_output=True,
                          text=True, env=env or ENV)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run_id(proc, command):
    m = re.search(r"tandem %s: run ([0-9a-f]{12})\n" % command, proc.stderr)
    return m.group(1) if m else None


def row(run):
    db = sqlite3.connect(REG)
    db.row_factory = sqlite3.Row
    r = db.execute("SELECT * FROM runs WHERE id = ?", (run,)).fetchone()
    db.close()
    return r


# ---- score and batch runs are recorded ----
model = os.path.join(FIXTURES, "xgboost", "credit_data_binary.model.json")
data = os.path.join(FIXTURES, "xgboost", "credit_data_binary.input.csv")
scored = os.path.join(out, "scored.csv")
proc = tandem("score", "--model", model, "--in", data, "--out", scored,
              "--threads", 2, "--registry", REG)
score_run = run_id(proc, "score")
expect(proc.returncode == 0 and score_run, f"score: {proc.stderr}")
r = row(score_run)
manifest = json.load(open(scored + ".manifest.json"))
if expect(r is not None, "the score run is not in the registry"):
    expect(r["command"] == "score" and
           r["model_sha256"] == sha256(model) and
           r["model_version"] == sha256(model)[:12] and
           r["model_path"] == os.path.realpath(model) and
           r["input_sha256"] == sha256(data) and
           r["input_path"] == os.path.realpath(data) and
           r["output_sha256"] == sha256(scored) and
           r["output_path"] == os.path.realpath(scored) and
           r["rows"] == manifest["output"]["rows"] and r["threads"] == 2 and
           json.loads(r["flags"])["threads"] == 2 and
           r["metrics"] is None and
           r["started_at"] == manifest["started_at"] and
           r["tandem_version"] == manifest["tandem_version"],
           f"score run recorded as {dict(r)}")
    print("ok a score run is recorded with the SHA-256 of model, input, output")
db = sqlite3.connect(REG)
expect(db.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "not WAL")
expect(db.execute("SELECT version FROM schema_version").fetchall() == [(1,)],
       "schema_version is not 1")
db.close()
print("ok the registry is in WAL mode with schema version 1")


fraud = os.path.join(out, "fraud")
os.makedirs(fraud)
pipe_a = fraud_pipeline(fraud, model_seed=0)
pipe_b = fraud_pipeline(fraud, model_seed=5, model_name="model_b.json",
                        yaml_name="pipeline_b.yaml")
events = write_csv(os.path.join(fraud, "events.csv"), FRAUD_COLUMNS,
                   fraud_events(7, 2000, invalid=0.02))
batch_runs = []
for pipe, name in ((pipe_a, "a"), (pipe_b, "b")):
    result = os.path.join(fraud, f"out_{name}.csv")
    proc = tandem("batch", pipe, "--in", events, "--out", result,
                  "--registry", REG)
    rid = run_id(proc, "batch")
    expect(proc.returncode == 0 and rid, f"batch {name}: {proc.stderr}")
    batch_runs.append(rid)
    r = row(rid)
    m = json.load(open(result + ".manifest.json"))
    model_file = os.path.join(fraud, "model.json" if name == "a" else
                              "model_b.json")
    expect(r["command"] == "batch" and
           r["pipeline_sha256"] == sha256(pipe) and
           r["pipeline_path"] == os.path.realpath(pipe) and
           r["pipeline_name"] == "fraud" and
           r["model_sha256"] == sha256(model_file) and
           r["input_sha256"] == sha256(events) and
           r["output_sha256"] == sha256(result) and
           r["output_path"] == os.path.realpath(result) and
           r["rows"] == m["output"]["events"] and
           r["rejected"] == m["rejects"]["events"] > 0 and
           r["duplicates"] == m["output"]["duplicates"] > 0 and
           json.loads(r["tables"]) == [] and r["started_at"] <= r["finished_at"],
           f"batch run {name} recorded as {dict(r)}")
print("ok batch runs are recorded with pipeline, model, input, output hashes")

# ---- tandem runs ----
def runs(*args):
    proc = tandem("runs", "--registry", REG, "--json", *args)
    expect(proc.returncode == 0, f"runs {args}: {proc.stderr}")
    return [json.loads(line) for line in proc.stdout.splitlines()]


listed = runs()
expect([x["id"] for x in listed] == batch_runs[::-1] + [score_run],
       f"runs, newest first: {[x['id'] for x in listed]}")
expect([x["id"] for x in runs("--command", "score")] == [score_run],
       "--command score")
expect([x["id"] for x in runs("--command", "batch")] == batch_runs[::-1],
       "--command batch")
expect([x["id"] for x in runs("--model", sha256(model)[:8].upper())] ==
       [score_run], "--model prefix")
expect([x["id"] for x in runs("--pipeline", pipe_b)] == [batch_runs[1]],
       "--pipeline PATH")
expect([x["id"] for x in runs("--pipeline", sha256(pipe_a)[:10])] ==
       [batch_runs[0]], "--pipeline SHA prefix")
expect(runs("--since", "2999-01-01T00:00:00Z") == [], "--since the future")
expect(len(runs("--since", "1h")) == 3, "--since 1h")
expect([x["id"] for x in runs("--limit", 1)] == [batch_runs[1]], "--limit 1")
first = listed[-1]
expect(first["model"]["sha256"] == sha256(model) and
       first["input"]["sha256"] == sha256(data) and
       first["output"]["path"] == os.path.realpath(scored) and
       first["metrics"] is None and first["flags"]["threads"] == 2,
       f"runs --json: {first}")
proc = tandem("runs", "--registry", REG)
expect(proc.returncode == 0 and all(x in proc.stdout for x in batch_runs) and
       sha256(model)[:12] in proc.stdout and "events.csv" in proc.stdout,
       f"runs table: {proc.stdout}")
proc = tandem("runs", "--registry", REG, "--command", "serve")
expect(proc.returncode == 2, "runs --command serve is a usage error")
print("ok tandem runs: newest first, filters, JSON and table")

# Runs started within the same second list in the order they started:
# start times have milliseconds (a batch run's used to be derived from
# its whole-second finish, which could put it before the run before it).
REG_FAST = os.path.join(out, "fast", "registry.db")
small_events = write_csv(os.path.join(fraud, "small.csv"), FRAUD_COLUMNS,
                         fraud_events(11, 50))
started = []
for i in range(8):
    if i % 2 == 0:
        proc = tandem("score", "--model", model, "--in", data, "--out",
                      os.path.join(out, f"fast{i}.csv"), "--registry", REG_FAST)
        started.append(run_id(proc, "score"))
    else:
        proc = tandem("batch", pipe_a, "--in", small_events, "--out",
                      os.path.join(out, f"fast{i}.csv"), "--registry", REG_FAST)
        started.append(run_id(proc, "batch"))
    expect(proc.returncode == 0 and started[-1], f"fast run {i}: {proc.stderr}")
proc = tandem("runs", "--registry", REG_FAST, "--json")
fast = [json.loads(line) for line in proc.stdout.splitlines()]
expect([x["id"] for x in fast] == started[::-1],
       f"8 quick runs newest first: {[x['id'] for x in fast]}, started {started}")
stamps = [x["started_at"] for x in fast[::-1]]
expect(all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", t)
           for t in stamps), f"started_at with milliseconds: {stamps}")
expect(stamps == sorted(stamps), f"start times in run order: {stamps}")
proc = tandem("runs", "--registry", REG_FAST, "--json", "--limit", "1")
expect([json.loads(line)["id"] for line in proc.stdout.splitlines()] ==
       started[-1:], f"--limit 1 of quick runs: {proc.stdout}")
same_second = len(stamps) - len({t[:19] for t in stamps})
print(f"ok 8 quick runs list newest first ({same_second} started in a second "
      "already used by another)")


# ---- tandem compare ----
def psi(a, b, eps=1e-4):
    edges = np.percentile(a, np.arange(10, 100, 10))
    fa = np.bincount(np.searchsorted(edges, a, side="left"), minlength=10) / len(a)
    fb = np.bincount(np.searchsorted(edges, b, side="left"), minlength=10) / len(b)
    fa = np.where(fa > 0, fa, eps)
    fb = np.where(fb > 0, fb, eps)
    return float(np.sum((fb - fa) * np.log(fb / fa)))


def scores(path):
    return np.array([float(line.split(",")[3]) for line in
                     open(path).read().splitlines()[1:]])


proc = tandem("compare", batch_runs[0], batch_runs[1], "--registry", REG,
              "--json", "--examples", 3)
if expect(proc.returncode == 0, f"compare: {proc.stderr}"):
    c = json.loads(proc.stdout)
    sa = scores(os.path.join(fraud, "out_a.csv"))
    sb = scores(os.path.join(fraud, "out_b.csv"))
    outa = [line.split(",") for line in
            open(os.path.join(fraud, "out_a.csv")).read().splitlines()[1:]]
    outb = [line.split(",") for line in
            open(os.path.join(fraud, "out_b.csv")).read().splitlines()[1:]]
    changed = sum(x[4] != y[4] for x, y in zip(outa, outb))
    expect(c["pairing"] == {"by": "txn", "paired": len(sa), "only_a": 0,
                            "only_b": 0}, f"pairing: {c['pairing']}")
    expect(c["same_input"] is True and c["a"]["id"] == batch_runs[0],
           "compare names the runs and the same input")
    expect(abs(c["scores"]["a"]["mean"] - sa.mean()) < 1e-12 and
           abs(c["scores"]["b"]["p25"] - np.percentile(sb, 25)) < 1e-12 and
           abs(c["scores"]["a"]["std"] - sa.std()) < 1e-12 and
           c["scores"]["b"]["count"] == len(sb),
           f"distribution: {c['scores']}")
    expect(c["shift"]["psi"] > 0 and
           abs(c["shift"]["psi"] - psi(sa, sb)) < 1e-9 and
           abs(c["shift"]["mean_delta"] - (sb.mean() - sa.mean())) < 1e-12,
           f"shift {c['shift']}, numpy PSI {psi(sa, sb)}")
    d = c["decisions"]
    expect(changed > 0 and d["changed"] == changed and
           d["compared"] == len(sa) and len(d["examples"]) == 3 and
           all(e["a_decision"] != e["b_decision"] for e in d["examples"]),
           f"decisions: {d}, expected {changed} changed")
    print(f"ok compare: {changed} decisions changed, PSI {c['shift']['psi']:.4f}"
          " (numpy agrees)")
proc = tandem("compare", batch_runs[0], batch_runs[1], "--registry", REG)
expect(proc.returncode == 0 and "decisions changed:" in proc.stdout and
       "PSI" in proc.stdout and "p99" in proc.stdout,
       f"compare text: {proc.stdout}")

proc = tandem("compare", batch_runs[0], batch_runs[0][:6], "--registry", REG,
              "--json")
if expect(proc.returncode == 0, f"compare with itself: {proc.stderr}"):
    c = json.loads(proc.stdout)
    expect(c["shift"]["psi"] == 0 and c["shift"]["mean_delta"] == 0 and
           c["decisions"]["changed"] == 0 and c["shift"]["scores_changed"] == 0,
           f"compare with itself: {c['shift']} {c['decisions']}")
    print("ok compare of a run with itself: PSI 0, no changes")

# Metrics (as `tandem eval` will write them) show up as deltas.
db = sqlite3.connect(REG)
db.execute("UPDATE runs SET metrics = ? WHERE id = ?",
           ('{"auc": 0.8, "pr": {"auc": 0.5}, "n": 10}', batch_runs[0]))
db.execute("UPDATE runs SET metrics = ? WHERE id = ?",
           ('{"auc": 0.75, "pr": {"auc": 0.6}}', batch_runs[1]))
db.commit()
db.close()
proc = tandem("compare", batch_runs[0], batch_runs[1], "--registry", REG,
              "--json")
metrics = json.loads(proc.stdout)["metrics"] if proc.returncode == 0 else None
expect(metrics is not None and [m["name"] for m in metrics] == ["auc", "pr.auc"]
       and abs(metrics[0]["delta"] + 0.05) < 1e-12 and
       abs(metrics[1]["delta"] - 0.1) < 1e-12, f"metric deltas: {metrics}")
print("ok compare shows metric deltas when both runs have metrics")

# Different inputs: a warning; no shared id column: paired by position.
scored2 = os.path.join(out, "scored2.csv")
proc = tandem("score", "--model", model, "--in", data, "--out", scored2,
              "--registry", REG, "--iterations", 2)
score_run2 = run_id(proc, "score")
proc = tandem("compare", score_run, score_run2, "--registry", REG, "--json")
if expect(proc.returncode == 0, f"compare of score runs: {proc.stderr}"):
    c = json.loads(proc.stdout)
    expect(c["pairing"]["by"] == "position" and c["decisions"] is None and
           c["shift"]["psi"] > 0, f"score compare: {c['pairing']}")
proc = tandem("compare", score_run, batch_runs[0], "--registry", REG)
expect(proc.returncode != 0 and "row counts" in proc.stderr and
       "different inputs" in proc.stderr, f"unpairable: {proc.stderr}")
print("ok score outputs pair by position; different inputs warn")

# ---- 20 parallel runs on one new registry ----
par = os.path.join(out, "parallel", "registry.db")
procs = [subprocess.Popen([TANDEM, "score", "--model", model, "--in", data,
                           "--out", os.path.join(out, f"p{i}.csv"),
                           "--threads", "1", "--registry", par],
                          stderr=subprocess.PIPE, text=True, env=ENV)
         for i in range(20)]
ids = []
for p in procs:
    err = p.communicate()[1]
    m = re.search(r"run ([0-9a-f]{12})", err)
    expect(p.returncode == 0 and m and "warning" not in err,
           f"parallel run: {p.returncode} {err}")
    ids.append(m.group(1) if m else None)
db = sqlite3.connect(par)
recorded = [x[0] for x in db.execute("SELECT id FROM runs")]
expect(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok",
       "integrity_check")
expect(sorted(recorded) == sorted(ids) and len(set(ids)) == 20,
       f"20 parallel runs: recorded {len(recorded)}, ids {len(set(ids))}")
expect(sorted(x[0] for x in db.execute("SELECT output_sha256 FROM runs")) ==
       sorted(sha256(os.path.join(out, f"p{i}.csv")) for i in range(20)),
       "parallel runs' output hashes")
db.close()
print("ok 20 parallel runs on a new registry: all recorded, integrity ok")

# ---- registry that cannot be written; --no-registry; the default path ----
blocker = os.path.join(out, "a_file")
open(blocker, "w").close()
bad_paths = [os.path.join(blocker, "registry.db")]  # not a directory
if os.geteuid() != 0:  # root writes into a read-only directory anyway
    locked = os.path.join(out, "locked")
    os.makedirs(locked)
    os.chmod(locked, 0o555)
    bad_paths.append(os.path.join(locked, "registry.db"))
for bad in bad_paths:
    target = os.path.join(out, "unrecorded.csv")
    proc = tandem("score", "--model", model, "--in", data, "--out", target,
                  "--registry", bad)
    expect(proc.returncode == 0 and os.path.exists(target) and
           "warning: run not recorded" in proc.stderr and bad in proc.stderr,
           f"unwritable registry {bad}: {proc.returncode} {proc.stderr}")
print("ok a registry that cannot be written warns; the run succeeds")

before = len(runs())
proc = tandem("score", "--model", model, "--in", data, "--out",
              os.path.join(out, "quiet.csv"), "--registry", REG,
              "--no-registry")
expect(proc.returncode == 0 and "run " not in proc.stderr and
       len(runs()) == before, "--no-registry records nothing")
home_env = dict(ENV, XDG_DATA_HOME=os.path.join(out, "xdg"))
proc = tandem("score", "--model", model, "--in", data, "--out",
              os.path.join(out, "xdg.csv"), env=home_env)
expect(proc.returncode == 0 and run_id(proc, "score") and
       os.path.exists(os.path.join(out, "xdg", "tandem", "registry.db")),
       f"default path under XDG_DATA_HOME: {proc.stderr}")
env_reg = os.path.join(out, "env.db")
proc = tandem("score", "--model", model, "--in", data, "--out",
              os.path.join(out, "env.csv"),
              env=dict(home_env, TANDEM_REGISTRY=env_reg))
listed = tandem("runs", "--json", env=dict(home_env, TANDEM_REGISTRY=env_reg))
expect(proc.returncode == 0 and listed.stdout.count("\n") == 1 and
       run_id(proc, "score") in listed.stdout, "TANDEM_REGISTRY")
print("ok --no-registry, XDG_DATA_HOME and TANDEM_REGISTRY")

# ---- compare refuses outputs that are gone or changed ----
gone = os.path.join(fraud, "out_b.csv")
with open(gone, "a") as f:
    f.write("t99999,c00,2024-01-01T00:00:00.000Z,0.5,review,0\n")
proc = tandem("compare", batch_runs[0], batch_runs[1], "--registry", REG)
expect(proc.returncode != 0 and os.path.realpath(gone) in proc.stderr and
       "changed" in proc.stderr, f"changed output: {proc.stderr}")
os.unlink(gone)
proc = tandem("compare", batch_runs[0], batch_runs[1], "--registry", REG)
expect(proc.returncode != 0 and os.path.realpath(gone) in proc.stderr and
       "gone" in proc.stderr, f"deleted output: {proc.stderr}")
proc = tandem("compare", batch_runs[0], "ffffffffffff", "--registry", REG)
expect(proc.returncode != 0 and "no run ffffffffffff" in proc.stderr,
       f"unknown run: {proc.stderr}")
print("ok compare fails naming an output that changed or is gone")

# ---- tandem eval --record stores the metrics with the run ----
with open(scored) as f:
    scored_rows = list(csv.DictReader(f))
labels_path = os.path.join(out, "labels.csv")
with open(labels_path, "w") as f:
    f.write("label\n")
    for i, sr in enumerate(scored_rows):
        f.write("%d\n" % (1 if float(sr["score"]) > (i * 7919 % 100) / 100 else 0))
proc = tandem("eval", "--pred", scored, "--labels", labels_path, "--json",
              "--record", score_run[:6], "--registry", REG)
expect(proc.returncode == 0, f"eval --record: {proc.stderr}")
evaluated = json.loads(proc.stdout)
stored = row(score_run)["metrics"]
expect(stored is not None and json.loads(stored) == evaluated,
       "the registry holds exactly the metrics eval printed")
proc = tandem("eval", "--pred", scored, "--labels", labels_path,
              "--record", "ffffffffffff", "--registry", REG)
expect(proc.returncode != 0 and "ffffffffffff" in proc.stderr,
       f"eval --record of an unknown run fails: {proc.stderr}")
print("ok tandem eval --record stores the metrics with the run")

finish("registry")
