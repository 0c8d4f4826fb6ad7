"""A newcomer's pipeline mistakes get an error that names the cause and the
fix, exit 2 and no output, never a run that quietly does something else.

1. A pipeline with no `model:` yet: `tandem batch` refuses it and says to
   add one or run --features-only; --features-only runs and writes the
   keys, the number and category fields (the number, or the category's
   index in `values`, computed here from the input) and the features.
2. A model trained on another version of the pipeline lacks several of
   its features: every missing name is in the one message (a seeded
   random subset of the model's features is left out of the pipeline;
   the expected list is that subset, in the model's order).
3. `batch --explain` with a CSV output: a usage error naming .jsonl and
   --features-only, nothing written (it used to run and drop --explain).
"""
import os
import random

from common import expect, finish, tmpdir
from pipeline_util import make_model, read_csv, tandem, write, write_csv

out = tmpdir()
rng = random.Random(2020)

HEAD = """\
name: newcomer
entity: card
time: ts
fields:
  card: string
  ts: time
  amount: number
  channel: {type: category, values: [pos, online, atm]}
  note: string
"""
CHANNELS = ["pos", "online", "atm"]

events = []
for i in range(300):
    amount = rng.choice([None, "%.2f" % rng.uniform(0, 500), "7", "1e2"])
    events.append({"card": "c%d" % rng.randrange(20),
                   "ts": "2026-03-01T%02d:%02d:%02dZ" % (i // 3600 % 24,
                                                         i // 60 % 60, i % 60),
                   "amount": amount,
                   "channel": rng.choice(CHANNELS + [None]),
                   "note": rng.choice(["a", "b", None])})
src = write_csv(os.path.join(out, "events.csv"),
                ["card", "ts", "amount", "channel", "note"], events)

# ---- 1. no model: features-only runs, anything else says what to do ----
features = "features:\n  - {name: n_1h, agg: count, window: 1h}\n"
no_model = write(os.path.join(out, "no_model.yaml"), HEAD + features)
dst = os.path.join(out, "scores.csv")
r = tandem("batch", no_model, "--in", src, "--out", dst)
expect(r.returncode == 2 and "has no model" in r.stderr and
       "model: FILE" in r.stderr and "--features-only" in r.stderr and
       not os.path.exists(dst),
       f"a pipeline without a model, scored: exit {r.returncode}: {r.stderr}")
fo = os.path.join(out, "features.csv")
r = tandem("batch", no_model, "--in", src, "--out", fo, "--features-only")
if expect(r.returncode == 0, f"--features-only without a model: {r.stderr}"):
    rows = read_csv(fo)
    expect(list(rows[0]) == ["card", "ts", "amount", "channel", "n_1h"],
           f"--features-only columns {list(rows[0])}")
    expect(len(rows) == len(events), f"{len(rows)} rows for {len(events)} events")
    for row, ev in zip(rows, events):
        want_amount = None if ev["amount"] is None else float(ev["amount"])
        want_channel = (None if ev["channel"] is None
                        else float(CHANNELS.index(ev["channel"])))
        got_amount = None if row["amount"] == "" else float(row["amount"])
        got_channel = None if row["channel"] == "" else float(row["channel"])
        if not expect(got_amount == want_amount and got_channel == want_channel,
                      f"{row['card']} {row['ts']}: amount {row['amount']!r}, "
                      f"channel {row['channel']!r}; input {ev['amount']!r}, "
                      f"{ev['channel']!r}"):
            break

# ---- 2. a model/pipeline mismatch names every missing feature ----
names = ["f%02d" % i for i in range(14)]
model = make_model(os.path.join(out, "model.json"), names, seed=5)
for trial in range(4):
    missing = sorted(rng.sample(names, rng.randint(2, 13)))
    lines = "".join('  - {name: %s, expr: "amount * %d"}\n' % (n, i + 1)
                    for i, n in enumerate(names) if n not in missing)
    yaml = write(os.path.join(out, "mismatch%d.yaml" % trial),
                 HEAD + "features:\n" + lines + "model: model.json\n")
    r = tandem("batch", yaml, "--in", src, "--out", dst)
    shown = missing[:10]
    listed = ", ".join('"%s"' % n for n in shown) + (", ..." if len(missing) > 10 else "")
    expect(r.returncode == 2 and not os.path.exists(dst) and
           "%d of the model's %d features" % (len(missing), len(names)) in r.stderr
           and listed in r.stderr and "mismatch%d.yaml:" % trial in r.stderr,
           f"{len(missing)} missing features {missing}: exit {r.returncode}: "
           f"{r.stderr}")

# ---- 3. --explain needs JSON Lines output ----
good = write(os.path.join(out, "good.yaml"), HEAD + "features:\n" + "".join(
    '  - {name: %s, expr: "amount * %d"}\n' % (n, i + 1)
    for i, n in enumerate(names)) + "model: model.json\n")
for name in ("explained.csv", "explained.txt"):
    dst = os.path.join(out, name)
    r = tandem("batch", good, "--in", src, "--out", dst, "--explain")
    expect(r.returncode == 2 and ".jsonl" in r.stderr and
           "--features-only" in r.stderr and name in r.stderr and
           not os.path.exists(dst) and not os.path.exists(dst + ".manifest.json"),
           f"--explain with {name}: exit {r.returncode}: {r.stderr}")
dst = os.path.join(out, "explained.jsonl")
r = tandem("batch", good, "--in", src, "--out", dst, "--explain")
expect(r.returncode == 0 and '"features"' in open(dst).readline(),
       f"--explain with JSON Lines: {r.returncode} {r.stderr}")

finish("test_pipeline_usage_errors")
