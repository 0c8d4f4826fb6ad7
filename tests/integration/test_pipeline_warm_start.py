"""Warm start: `tandem batch --save-state DIR` over the first 80% of a
stream, `tandem serve PIPELINE --state DIR` for the rest: every live answer
for the last 20% equals, byte for byte, a single batch run over 100% (checked
with `tandem replay --skip`, which applies the first 80% on its batch side
only). Without the saved state the same replay differs (the test can fail).
--save-state refuses an existing directory and leaves nothing on failure.
"""
import os

from common import expect, finish, tmpdir
from pipeline_util import (FRAUD_COLUMNS, fraud_events, fraud_pipeline, tandem,
                           write_csv)
from serve_util import Server

out = tmpdir()
pipeline = fraud_pipeline(out)
events = fraud_events(seed=7, n=3000, entities=30, invalid=0.02)
cut = int(len(events) * 0.8)
full = write_csv(os.path.join(out, "all.csv"), FRAUD_COLUMNS, events)
history = write_csv(os.path.join(out, "history.csv"), FRAUD_COLUMNS, events[:cut])
state = os.path.join(out, "state")

for threads in ("1", "3"):
    d = state + threads
    r = tandem("batch", pipeline, "--in", history, "--out",
               os.path.join(out, "h%s.csv" % threads), "--threads", threads,
               "--save-state", d)
    expect(r.returncode == 0, f"batch --save-state: {r.stderr}")
    expect(os.path.exists(os.path.join(d, "data.mdb")), "the state has data.mdb")
    expect(not os.path.exists(d + ".tmp"), "no temporary directory left")
    with Server(pipeline, "--state", d) as server:
        r = tandem("replay", pipeline, "--in", full, "--skip", str(cut),
                   "--url", server.url, "--batch", "16", timeout=600)
        expect(r.returncode == 0 and " 0 differences" in r.stderr,
               f"warm start ({threads} threads): {r.stderr[-3000:]}")
        expect(f"{len(events) - cut} events" in r.stderr, r.stderr)
        print(f"warm start from {threads}-thread batch:", r.stderr.strip(),
              flush=True)

# Without the state, the live answers differ: the check can fail.
with Server(pipeline) as server:
    r = tandem("replay", pipeline, "--in", full, "--skip", str(cut), "--url",
               server.url, timeout=600)
    expect(r.returncode == 1 and "difference at line" in r.stderr,
           f"replay without the state should differ: {r.stderr[-500:]}")
    print("cold start:", r.stderr.strip().splitlines()[-1], flush=True)

# An existing directory is refused (it may be a live server's state).
r = tandem("batch", pipeline, "--in", history, "--out",
           os.path.join(out, "again.csv"), "--save-state", state + "1")
expect(r.returncode == 2 and "exists" in r.stderr, f"existing dir: {r.stderr}")
expect(not os.path.exists(os.path.join(out, "again.csv")),
       "no output when --save-state fails")

finish("test_pipeline_warm_start")
