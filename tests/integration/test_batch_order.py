"""`tandem batch` keeps input order across chunks and threads: the batch
runner reads a chunk, processes it on the workers and formats and writes
the chunk before, all at once (batch.c), so a result written from the
wrong chunk, a row formatted from another event's numbers or a reject out
of place would show here.

A seeded stream of 120,000 events (almost four chunks of 32,768) over
many cards, with invalid rows (a bad number, a bad time, no entity) and
repeated ids spread through it, goes through a pipeline whose features a
reference in this file counts exactly (per card: how many events applied
so far and the sum of their integer amounts), with those features in the
output beside the model's score and decision. For 1, 2 and 3 threads,
CSV and JSON Lines:

- every written row is the next valid event of the input, in input
  order, with the reference's count and sum (a duplicate repeats its
  first answer and is flagged), and its decision is the rule its score
  meets;
- every reject names its input line, in input order, and only the
  invalid rows are rejected;
- the outputs of every thread count are the same bytes;
- with reasons (explain:), every row's reasons carry that row's own
  feature values.

The reference shares nothing with tandem's code: it walks the generated
rows in Python.
"""
import json
import os
import random

from common import expect, finish, tmpdir
from pipeline_util import (fmt_time, make_model, read_jsonl, tandem, write,
                           write_csv)

out = tmpdir()
N = 120_000
CARDS = 3_000
COLUMNS = ["txn", "card", "ts", "amount"]

write(os.path.join(out, "pipeline.yaml"), """\
name: order
entity: card
time: ts
id: txn
fields: {txn: string, card: string, ts: time, amount: number}
features:
  - {name: n_all, agg: count, window: all}
  - {name: sum_all, agg: sum(amount), window: all}
model: {path: model.json}
decision:
  - {when: "score >= 0.5", then: review}
  - {then: approve}
output: [txn, card, ts, amount, n_all, sum_all, score, decision]
""")
make_model(os.path.join(out, "model.json"), ["n_all", "sum_all"], seed=3)


def events(seed):
    """The stream, and the line numbers of its invalid rows."""
    rng = random.Random(seed)
    now = 1_760_000_000_000
    rows, invalid = [], set()
    for i in range(N):
        now += rng.choice([0, 1, 250, 1000])
        row = {"txn": "t%06d" % i, "card": "c%04d" % rng.randrange(CARDS),
               "ts": fmt_time(now), "amount": str(rng.randrange(-50, 1000))}
        if rows and rng.random() < 0.02:
            # A retry of a recent event of the same card: same id, other
            # values (tandem answers with the first event's results).
            prev = rows[-rng.randint(1, min(len(rows), 50))]
            if prev["card"] is not None:
                row["txn"], row["card"] = prev["txn"], prev["card"]
        if rng.random() < 0.005:
            kind = rng.randrange(3)
            if kind == 0:
                row["amount"] = "1,5x"
            elif kind == 1:
                row["ts"] = "soon"
            else:
                row["card"] = None
            invalid.add(i + 2)  # the header is line 1
        rows.append(row)
    return rows, invalid


def reference(rows, invalid):
    """Per written event, in order: (txn, card, ts, amount, n_all, sum_all,
    duplicate)."""
    count, total, seen = {}, {}, {}
    expected = []
    for i, row in enumerate(rows):
        if i + 2 in invalid:
            continue
        card, key = row["card"], (row["card"], row["txn"])
        if key in seen:
            n, s = seen[key]
            expected.append((row["txn"], card, row["ts"], row["amount"], n, s, 1))
            continue
        count[card] = count.get(card, 0) + 1
        total[card] = total.get(card, 0) + int(row["amount"])
        seen[key] = (count[card], total[card])
        expected.append((row["txn"], card, row["ts"], row["amount"],
                         count[card], total[card], 0))
    return expected


def number(text):
    return float(text) if text != "" else None


def check_rows(got, expected, what):
    expect(len(got) == len(expected),
           f"{what}: {len(got)} rows written, the reference has {len(expected)}")
    for k, (g, e) in enumerate(zip(got, expected)):
        txn, card, ts, amount, n, s, dup = e
        have = (g["txn"], g["card"], g["ts"], g["amount"], number(g["n_all"]),
                number(g["sum_all"]), int(g["duplicate"]))
        want = (txn, card, ts, amount, float(n), float(s), dup)
        expect(have == want, f"{what}: row {k}: {have}, expected {want}")
        rule = "review" if float(g["score"]) >= 0.5 else "approve"
        expect(g["decision"] == rule,
               f"{what}: row {k}: decision {g['decision']} for score "
               f"{g['score']}, expected {rule}")


def check_rejects(path, invalid, what):
    lines = [json.loads(x) for x in open(path)]
    got = [x["line"] for x in lines]
    expect(got == sorted(invalid),
           f"{what}: rejected lines {got[:10]}..., expected "
           f"{sorted(invalid)[:10]}... ({len(got)} against {len(invalid)})")
    expect(all(x["reason"] == "invalid" for x in lines),
           f"{what}: a reject's reason is not 'invalid'")


def read_csv_rows(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


rows, invalid = events(22)
src = write_csv(os.path.join(out, "events.csv"), COLUMNS, rows)
expected = reference(rows, invalid)
outputs = {}
for threads in (1, 2, 3):
    for ext in ("csv", "jsonl"):
        what = f"{threads} threads, {ext}"
        dst = os.path.join(out, f"out{threads}.{ext}")
        p = tandem("batch", os.path.join(out, "pipeline.yaml"), "--in", src,
                   "--out", dst, "--threads", threads, "--no-registry")
        expect(p.returncode == 0, f"{what}: exit {p.returncode}: {p.stderr}")
        if ext == "csv":
            got = read_csv_rows(dst)
        else:
            # JSON numbers as the CSV's text (amounts are integers), the
            # duplicate flag as the CSV's column.
            got = [{"txn": x["txn"], "card": x["card"], "ts": x["ts"],
                    "amount": str(x["amount"]), "n_all": str(x["n_all"]),
                    "sum_all": str(x["sum_all"]), "score": str(x["score"]),
                    "decision": x["decision"],
                    "duplicate": "1" if x.get("duplicate") else "0"}
                   for x in read_jsonl(dst)]
        check_rows(got, expected, what)
        check_rejects(dst + ".rejects.jsonl", invalid, what)
        with open(dst, "rb") as f:
            outputs.setdefault(ext, {})[threads] = f.read()
for ext, by_threads in outputs.items():
    expect(by_threads[1] == by_threads[2] == by_threads[3],
           f"{ext}: the outputs of 1, 2 and 3 threads differ")

# With reasons, a worker makes each row's reasons text and the calling
# thread places it in the row: every reason's value must be that row's own
# feature value (a reason from another event would carry another count).
with open(os.path.join(out, "pipeline.yaml")) as f:
    explained = f.read() + "explain: {reasons: 2, min_contribution: 0}\n"
write(os.path.join(out, "explained.yaml"), explained)
reasons_out = {}
for threads in (1, 2, 3):
    what = f"{threads} threads, reasons"
    dst = os.path.join(out, f"reasons{threads}.csv")
    p = tandem("batch", os.path.join(out, "explained.yaml"), "--in", src,
               "--out", dst, "--threads", threads, "--no-registry")
    expect(p.returncode == 0, f"{what}: exit {p.returncode}: {p.stderr}")
    got = read_csv_rows(dst)
    check_rows(got, expected, what)
    explained_rows = 0
    for k, g in enumerate(got):
        for reason in json.loads(g["reasons"]) or []:
            explained_rows += 1
            own = float(g[reason["feature"]])
            expect(reason["value"] == own,
                   f"{what}: row {k}: reason {reason} beside "
                   f"{reason['feature']} = {own}")
    expect(explained_rows > len(got) // 2,
           f"{what}: only {explained_rows} reasons in {len(got)} rows")
    with open(dst, "rb") as f:
        reasons_out[threads] = f.read()
expect(reasons_out[1] == reasons_out[2] == reasons_out[3],
       "reasons: the outputs of 1, 2 and 3 threads differ")

finish("test_batch_order")
