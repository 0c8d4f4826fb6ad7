"""`tandem batch PIPELINE`: the output is the same bytes for 1, 2, 3 and 8
threads (CSV and JSON Lines, with and without --explain), keeps the
input's order, and is the same for the same events given as CSV or JSON
Lines; invalid events go to the rejects file with their line and reason
while the others are written; --strict fails with no output; a failed
run leaves no file; the manifest counts the events and hashes the files;
a repeated id answers the original's values marked duplicate;
--features-only writes the keys and every feature, equal to --explain's."""
import hashlib
import json
import os
import shutil

from common import expect, finish, tmpdir
from pipeline_util import (FRAUD_COLUMNS, FRAUD_FEATURES, fraud_events,
                           fraud_pipeline, read_csv, read_jsonl, tandem, write,
                           write_csv, write_jsonl)

out = tmpdir()
pipeline = fraud_pipeline(out)
events = fraud_events(seed=11, n=6000, entities=40, invalid=0.02)
csv_in = write_csv(os.path.join(out, "events.csv"), FRAUD_COLUMNS, events)
jsonl_in = write_jsonl(os.path.join(out, "events.jsonl"), FRAUD_COLUMNS, events,
                       numbers=("amount",))


def batch(src, dst, *flags, expect_rc=0):
    r = tandem("batch", pipeline, "--in", src, "--out", dst, *flags)
    expect(r.returncode == expect_rc, f"batch {os.path.basename(src)} -> "
           f"{os.path.basename(dst)} {' '.join(map(str, flags))}: exit "
           f"{r.returncode}, expected {expect_rc}: {r.stderr.strip()}")
    return r


def data(path):
    with open(path, "rb") as f:
        return f.read()


def sha256(path):
    return hashlib.sha256(data(path)).hexdigest()


# ---- determinism: every thread count, both input and output formats ----
for ext, flags in ((".csv", ()), (".jsonl", ()), (".jsonl", ("--explain",)),
                   (".csv", ("--features-only",))):
    outputs = {}
    for src in (csv_in, jsonl_in):
        for threads in (1, 2, 3, 8):
            dst = os.path.join(out, f"d{threads}{os.path.basename(src)}"
                               f"{''.join(flags)}{ext}")
            batch(src, dst, "--threads", threads, *flags)
            outputs[(os.path.basename(src), threads)] = data(dst)
            rejects = data(dst + ".rejects.jsonl")
            if threads == 1:
                first_rejects = rejects
            expect(rejects == first_rejects, f"{ext} {flags} {src}: rejects "
                   f"differ between 1 and {threads} threads")
    base = outputs[("events.csv", 1)]
    expect(len(base) > 100000, f"{ext} {flags}: output of {len(base)} bytes")
    for key, got in outputs.items():
        expect(got == base, f"{ext} {' '.join(flags)}: output for {key} differs "
               f"from events.csv with 1 thread")

# ---- order, rejects, duplicates, on the big file ----
explain = os.path.join(out, "explain.jsonl")
batch(csv_in, explain, "--explain", "--threads", 3)
results = read_jsonl(explain)
rejects = read_jsonl(explain + ".rejects.jsonl")
by_line = {r["line"]: r for r in rejects}
expect(len(results) + len(rejects) == len(events),
       f"{len(results)} results + {len(rejects)} rejects != {len(events)} events")
first = {}  # (card, txn) -> the original result
k = 0
for i, ev in enumerate(events):
    line = i + 2  # the header is line 1
    if line in by_line:
        rej = by_line[line]
        expect(rej["error"] and rej["event"].get("txn") == ev["txn"],
               f"reject of line {line}: {rej}")
        continue
    if k >= len(results):
        break
    res = results[k]
    k += 1
    expect(res["txn"] == ev["txn"] and res["card"] == ev["card"] and res["ts"] == ev["ts"],
           f"line {line}: result {res['txn']} {res['card']} {res['ts']} is not "
           f"the event's ({ev['txn']} {ev['card']} {ev['ts']}): order not kept")
    key = (ev["card"], ev["txn"])
    if key in first:
        orig = first[key]
        expect(res.get("duplicate") is True, f"line {line}: repeated id {key} "
               f"not marked duplicate: {res}")
        for field in ("score", "decision", "features", "model_version"):
            expect(res[field] == orig[field], f"line {line}: duplicate {key} "
                   f"{field} {res[field]} != the original's {orig[field]}")
    else:
        expect("duplicate" not in res, f"line {line}: a new id marked duplicate")
        first[key] = res
dups = sum(1 for r in results if r.get("duplicate"))
expect(dups > 50, f"only {dups} duplicates in the stream")
expect(len(rejects) > 50, f"only {len(rejects)} rejects in the stream")
# Every invalid kind was rejected with a reason naming the field.
reasons = " ".join(r["error"] for r in rejects)
for fragment in ('field "amount": "12,5x" is not a number', 'field "ts": "yesterday" is not a time',
                 'field "card" (the entity) is missing', 'field "ts" is missing'):
    expect(fragment in reasons, f"no reject says {fragment!r}")

# ---- a small file: each reject with its line and reason ----
small = [
    {"txn": "a1", "card": "c1", "ts": "2024-01-01T00:00:00Z", "amount": "10", "merchant": "m", "mcc": "fuel"},
    {"txn": "a2", "card": "c1", "ts": "2024-01-01T00:01:00Z", "amount": "12,5x", "merchant": "m", "mcc": "fuel"},
    {"txn": "a3", "card": "c1", "ts": "yesterday", "amount": "1", "merchant": "m", "mcc": "fuel"},
    {"txn": "a4", "card": None, "ts": "2024-01-01T00:02:00Z", "amount": "1", "merchant": "m", "mcc": "fuel"},
    {"txn": "a1", "card": "c1", "ts": "2024-01-01T00:03:00Z", "amount": "99", "merchant": "z", "mcc": "online"},
    {"txn": "a5", "card": "c1", "ts": "2024-01-01T00:04:00Z", "amount": "3", "merchant": "m", "mcc": "fuel"},
]
small_csv = write_csv(os.path.join(out, "small.csv"), FRAUD_COLUMNS, small)
small_out = os.path.join(out, "small.out.csv")
batch(small_csv, small_out)
rows = read_csv(small_out)
expect([(r["txn"], r["duplicate"]) for r in rows] == [("a1", "0"), ("a1", "1"), ("a5", "0")],
       f"small: rows {[(r['txn'], r['duplicate']) for r in rows]}")
expect(rows[0]["score"] == rows[1]["score"] and rows[0]["decision"] == rows[1]["decision"]
       and rows[1]["ts"] == "2024-01-01T00:03:00Z",
       f"small: the duplicate does not answer the original's values: {rows[:2]}")
expect(list(rows[0]) == ["txn", "card", "ts", "score", "decision", "duplicate"],
       f"small: columns {list(rows[0])}")
rej = read_jsonl(small_out + ".rejects.jsonl")
expect([r["line"] for r in rej] == [3, 4, 5], f"small: reject lines {[r['line'] for r in rej]}")
if len(rej) == 3:
    expect('"amount"' in rej[0]["error"] and "12,5x" in rej[0]["error"], f"reject 1: {rej[0]}")
    expect('"ts"' in rej[1]["error"] and "yesterday" in rej[1]["error"], f"reject 2: {rej[1]}")
    expect('"card"' in rej[2]["error"] and "missing" in rej[2]["error"], f"reject 3: {rej[2]}")
    expect(rej[0]["event"]["txn"] == "a2" and rej[0]["event"]["amount"] == "12,5x",
           f"reject 1 event: {rej[0]}")
# The manifest: counts and hashes.
m = json.load(open(small_out + ".manifest.json"))
expect(m["output"]["events"] == 3 and m["output"]["duplicates"] == 1
       and m["input"]["events"] == 6 and m["rejects"]["events"] == 3,
       f"small manifest counts: {m}")
expect(m["output"]["sha256"] == sha256(small_out), "small manifest: output sha256")
expect(m["input"]["sha256"] == sha256(small_csv), "small manifest: input sha256")
expect(m["pipeline"]["sha256"] == sha256(pipeline) and m["pipeline"]["name"] == "fraud",
       f"small manifest pipeline: {m['pipeline']}")
expect(m["model"]["sha256"] == sha256(os.path.join(out, "model.json")),
       f"small manifest model: {m['model']}")
expect(m["rejects"]["path"] == small_out + ".rejects.jsonl", f"rejects path {m['rejects']}")
# --rejects elsewhere; JSON Lines input gives its own line numbers (no header).
other = os.path.join(out, "other-rejects.jsonl")
small_jsonl = write_jsonl(os.path.join(out, "small.jsonl"), FRAUD_COLUMNS, small,
                          numbers=("amount",))
small_out2 = os.path.join(out, "small2.out.csv")
batch(small_jsonl, small_out2, "--rejects", other)
expect(data(small_out2) == data(small_out), "small: JSON Lines input, other output")
expect(os.path.exists(other) and not os.path.exists(small_out2 + ".rejects.jsonl"),
       "--rejects FILE not used")
if os.path.exists(other):
    expect([r["line"] for r in read_jsonl(other)] == [2, 3, 4],
           f"JSON Lines reject lines: {data(other)}")
# A clean run removes a stale rejects file beside its output.
clean = write_csv(os.path.join(out, "clean.csv"), FRAUD_COLUMNS, [small[0], small[5]])
batch(clean, small_out)
expect(not os.path.exists(small_out + ".rejects.jsonl"), "a stale rejects file remains")
m = json.load(open(small_out + ".manifest.json"))
expect(m["rejects"]["path"] is None and m["rejects"]["events"] == 0
       and m["output"]["events"] == 2, f"clean manifest: {m['rejects']} {m['output']}")

# ---- manifest of the big run ----
m = json.load(open(explain + ".manifest.json"))
expect(m["output"]["events"] == len(results) and m["output"]["duplicates"] == dups
       and m["rejects"]["events"] == len(rejects) and m["input"]["events"] == len(events)
       and m["output"]["sha256"] == sha256(explain) and m["flags"]["threads"] == 3
       and m["flags"]["explain"] is True, f"big manifest: {m}")

# ---- --strict: exit 2, nothing written ----
strict_out = os.path.join(out, "strict.csv")
r = batch(small_csv, strict_out, "--strict", expect_rc=2)
expect(f"{small_csv}:3:" in r.stderr and "amount" in r.stderr,
       f"--strict message: {r.stderr}")
leftovers = [f for f in os.listdir(out) if f.startswith("strict.csv")]
expect(leftovers == [], f"--strict left {leftovers}")
r = batch(clean, strict_out, "--strict")
expect(os.path.exists(strict_out), "--strict on a clean file writes nothing")

# ---- failed runs leave no output ----
bad_dir = os.path.join(out, "bad")
os.mkdir(bad_dir)
shutil.copy(pipeline, bad_dir)
write(os.path.join(bad_dir, "model.json"), '{"learner": ')  # a truncated model
for args, rc, what in (
        ((os.path.join(bad_dir, "pipeline.yaml"), "--in", csv_in), 2, "unreadable model"),
        ((pipeline, "--in", os.path.join(out, "nope.csv")), 2, "missing input"),
):
    dst = os.path.join(out, "failed.csv")
    r = tandem("batch", *args, "--out", dst)
    expect(r.returncode == rc, f"{what}: exit {r.returncode}: {r.stderr}")
    left = [f for f in os.listdir(out) if f.startswith("failed.csv")]
    expect(left == [], f"{what}: left {left}")
# A failed run does not touch an earlier output of the same name.
keep = os.path.join(out, "keep.csv")
batch(small_csv, keep)
before = data(keep), data(keep + ".manifest.json"), data(keep + ".rejects.jsonl")
r = tandem("batch", os.path.join(bad_dir, "pipeline.yaml"), "--in", small_csv, "--out", keep)
expect(r.returncode == 2 and (data(keep), data(keep + ".manifest.json"),
                              data(keep + ".rejects.jsonl")) == before,
       f"a failed run changed an earlier output: {r.returncode} {r.stderr}")
r = tandem("batch", pipeline, "--in", small_csv, "--out", keep, "--strict")
expect(r.returncode == 2 and (data(keep), data(keep + ".manifest.json"),
                              data(keep + ".rejects.jsonl")) == before,
       f"a --strict failure changed an earlier output: {r.returncode} {r.stderr}")
# An output directory that does not exist: a runtime failure, nothing made.
r = tandem("batch", pipeline, "--in", small_csv, "--out", os.path.join(out, "no", "x.csv"))
expect(r.returncode in (1, 2) and not os.path.exists(os.path.join(out, "no")),
       f"output in a missing directory: {r.returncode} {r.stderr}")

# ---- --features-only: the keys and every feature, equal to --explain ----
fo = os.path.join(out, "features.csv")
batch(csv_in, fo, "--features-only", "--threads", 2)
rows = read_csv(fo)
expect(list(rows[0]) == ["txn", "card", "ts", "amount", "mcc"] + FRAUD_FEATURES
       + ["duplicate"], f"--features-only columns: {list(rows[0])}")
# The raw number and category fields a model may take come as the model
# sees them: the number, or the category's index in values (empty when
# missing). The reference is the input file itself, less its rejects.
MCC = ["grocery", "fuel", "online", "travel"]
rejected = set()
if os.path.exists(fo + ".rejects.jsonl"):
    rejected = {r["line"] for r in read_jsonl(fo + ".rejects.jsonl")}
kept = [e for i, e in enumerate(read_csv(csv_in)) if i + 2 not in rejected]
expect(len(kept) == len(rows), f"--features-only: {len(rows)} rows, "
       f"{len(kept)} accepted input events")
first_seen = {}
for row, event in zip(rows, kept):
    # A repeated id answers with its first result, raw fields too.
    key = (event["card"], event["txn"])
    if row["duplicate"] == "0":
        first_seen[key] = event
    event = first_seen.get(key, event)
    text = event["amount"].strip()
    want = None if text in ("", "NaN", "nan", "NA", "null") else float(text)
    got = None if row["amount"] == "" else float(row["amount"])
    want_mcc = MCC.index(event["mcc"]) if event["mcc"] in MCC else None
    got_mcc = None if row["mcc"] == "" else float(row["mcc"])
    if not expect(got == want and got_mcc == want_mcc,
                  f"--features-only {row['txn']}: amount {row['amount']!r} mcc "
                  f"{row['mcc']!r}, input {event['amount']!r} {event['mcc']!r}"):
        break
expect(len(rows) == len(results), f"--features-only: {len(rows)} rows, "
       f"--explain {len(results)}")
present = {f: 0 for f in FRAUD_FEATURES}
for row, res in zip(rows, results):
    for f in FRAUD_FEATURES:
        want = res["features"][f]
        got = None if row[f] == "" else float(row[f])
        if got is not None:
            present[f] += 1
        if not expect(got == want, f"--features-only {row['txn']}: {f} = {row[f]!r}, "
                      f"--explain {want!r}"):
            break
    expect(row["duplicate"] == ("1" if res.get("duplicate") else "0"),
           f"--features-only {row['txn']}: duplicate {row['duplicate']}")
expect(all(n > 0 for n in present.values()), f"features never present: {present}")
m = json.load(open(fo + ".manifest.json"))
expect(m["model"] is None and m["flags"]["features_only"] is True,
       f"--features-only manifest: {m['model']} {m['flags']}")
# --features-only needs no model at all.
nomodel = os.path.join(out, "nomodel")
os.mkdir(nomodel)
shutil.copy(pipeline, nomodel)
r = tandem("batch", os.path.join(nomodel, "pipeline.yaml"), "--in", csv_in,
           "--out", os.path.join(nomodel, "f.csv"), "--features-only")
expect(r.returncode == 0 and data(os.path.join(nomodel, "f.csv")) == data(fo),
       f"--features-only without the model file: {r.returncode} {r.stderr}")

finish("test_pipeline_batch")
