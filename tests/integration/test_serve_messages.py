"""Live errors that say what is wrong, checked against the real server.

1. KServe v2 infer with a misspelled tensor name: a single tensor named
   `amout` (or `AMOUNT`), or any name on a `[rows, 1]` column, is a 400
   that names the input, says it is not a feature and suggests `Amount`
   when one is within two edits; among tensors named per feature, a
   misspelled one does the same. It used to be a shape error about
   [rows, 13]. A 1-D tensor far from every name keeps the shape error.
2. `tandem replay` against a server whose pipeline differs from the
   replayed one in one feature's window: every difference is printed as
   lines naming the member that differs (`features.n_w: batch 3, live 2`),
   never the whole answers; the members named are exactly those the test
   computes as different (the feature, and score/decision where the model
   reads it), and no line is long.
"""
import os
import random
import re
import subprocess

from common import ROOT, TANDEM, expect, finish, tmpdir
from pipeline_util import make_model, write, write_csv
from serve_util import Server, curl

out = tmpdir()
MODEL = os.path.join(ROOT, "examples", "credit-risk", "model.json")

# ---- 1. tensor names ----
with Server("--model", "credit=" + MODEL) as server:
    cases = [
        ('{"inputs":[{"name":"amout","shape":[1],"datatype":"FP32","data":[800]}]}',
         "amout", "Amount"),
        ('{"inputs":[{"name":"AMOUNT","shape":[2,1],"datatype":"FP32","data":[1,2]}]}',
         "AMOUNT", "Amount"),
        ('{"inputs":[{"name":"Income","shape":[1],"datatype":"FP32","data":[1]},'
         '{"name":"Senority","shape":[1],"datatype":"FP32","data":[9]}]}',
         "Senority", "Seniority"),
        ('{"inputs":[{"name":"zzzzzzzz","shape":[2,1],"datatype":"FP32","data":[1,2]}]}',
         "zzzzzzzz", None),
    ]
    for body, name, near in cases:
        r = curl(server, "POST", "/v2/models/credit/infer", body)
        text = r.json().get("error", "") if r.status == 400 else r.body
        ok = (r.status == 400 and f'"{name}" is not one of the model\'s 13 features' in text
              and "shape must be" not in text)
        ok = ok and (f'did you mean "{near}"' in text if near
                     else "did you mean" not in text)
        expect(ok, f"tensor {name}: {r.status} {text}")
    # A real matrix keeps working, named anything.
    r = curl(server, "POST", "/v2/models/credit/infer",
             '{"inputs":[{"name":"x","shape":[1,13],"datatype":"FP32",'
             '"data":[9,5,60,30,1,0,1,73,129,0,0,800,846]}]}')
    expect(r.status == 200, f"a [1, 13] matrix: {r}")

# ---- 2. replay names the members that differ ----
rng = random.Random(9)
model = make_model(os.path.join(out, "m.json"), ["n_w", "amount"], seed=4)


def pipeline(name, window):
    return write(os.path.join(out, name + ".yaml"), f"""\
name: p
entity: card
time: ts
id: txn
fields: {{txn: string, card: string, ts: time, amount: number}}
features:
  - {{name: n_w, agg: count, window: {window}}}
  - {{name: unused, expr: "amount * 2"}}
model: m.json
""")


live_pipeline = pipeline("live", "10m")
replayed = pipeline("replayed", "1h")
events = []
t = 1767225600
for i in range(120):
    t += rng.randint(1, 400)
    events.append({"txn": "t%d" % i, "card": "c%d" % rng.randrange(3),
                   "ts": str(t), "amount": "%.2f" % rng.uniform(1, 200)})
src = write_csv(os.path.join(out, "events.csv"), ["txn", "card", "ts", "amount"], events)


def counts(window_s):
    """n_w per event, computed here: events of the card in (t - w, t]."""
    seen, result = {}, []
    for e in events:
        times = seen.setdefault(e["card"], [])
        times.append(int(e["ts"]))
        result.append(sum(1 for x in times if int(e["ts"]) - window_s < x))
    return result


differ = [i for i, (a, b) in enumerate(zip(counts(3600), counts(600))) if a != b]
expect(len(differ) > 10, f"only {len(differ)} events differ: the test is too weak")
with Server(live_pipeline) as server:
    proc = subprocess.run([TANDEM, "replay", replayed, "--in", src, "--url",
                           server.url, "--show", "1000"], capture_output=True, text=True)
    expect(proc.returncode == 1, f"replay with differences exited {proc.returncode}")
    blocks = re.findall(r"difference at line (\d+):\n((?:  .*\n)+)", proc.stderr)
    lines_seen = [int(line) - 2 for line, _ in blocks]
    expect(lines_seen == differ, f"differences at events {lines_seen[:10]}..., "
           f"computed {differ[:10]}...")
    for line, body in blocks:
        members = {m.split(":")[0].strip() for m in body.splitlines()}
        expect("features.n_w" in members and members <= {"features.n_w", "score"},
               f"line {line}: members {members}")
        i = int(line) - 2
        want = f"features.n_w: batch {counts(3600)[i]}, live {counts(600)[i]}"
        expect(want in body, f"line {line}: {body!r} lacks {want!r}")
    expect(all(len(line) < 200 for line in proc.stderr.splitlines()),
           "a line of replay's output is long: " +
           max(proc.stderr.splitlines(), key=len)[:300])
    expect(f"{len(differ)} differences" in proc.stderr or str(len(differ)) in proc.stderr,
           f"replay's summary: {proc.stderr.splitlines()[-1:]}")

finish("test_serve_messages")
