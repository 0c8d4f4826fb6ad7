"""Two pipelines used from two Python threads at once, for ThreadSanitizer
(scripts/tsan_python.sh runs it with the extension built over
build-tsan/libtandem.a and libtsan preloaded; it is not a pytest file).

  tsan_two_pipelines.py prepare DIR   writes two pipelines (each trains its
                                      model with xgboost, outside TSan) and
                                      their seeded events into DIR
  tsan_two_pipelines.py run DIR       in two threads, each with its own
                                      pipeline: two batch runs over a
                                      DataFrame (2 C threads each) and 100
                                      events through a durable state

Exits 1 when a thread raised; ThreadSanitizer exits 66 on a data race.
Each thread's batch output is also checked against its state's answers
(the same pipeline, the same events), so a run that raced into wrong
results fails even where TSan would not see it.
"""
import json
import math
import os
import sys
import threading

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tests", "integration"))

NOW_MS = 1_700_000_000_000 + 10 * 86400_000


def prepare(base):
    from pipeline_util import fraud_events, fraud_pipeline
    for i in range(2):
        d = os.path.join(base, f"p{i}")
        os.makedirs(d, exist_ok=True)
        yaml = fraud_pipeline(d, model_seed=i)
        rows = fraud_events(seed=100 + i, n=300, entities=5, invalid=0.05)
        with open(os.path.join(d, "job.json"), "w") as f:
            json.dump({"yaml": yaml, "rows": rows}, f)


def side(i, base, errors):
    import pandas as pd
    import tandem
    try:
        d = os.path.join(base, f"p{i}")
        with open(os.path.join(d, "job.json")) as f:
            job = json.load(f)
        df = pd.DataFrame(job["rows"])
        pipe = tandem.Pipeline(job["yaml"], now=NOW_MS)
        for _ in range(2):
            out = pipe.batch(df, threads=2)
        state = pipe.state(os.path.join(d, "state"))
        answers = [state.process({k: v for k, v in r.items() if v is not None})
                   for r in job["rows"]]
        scored = [a for a in answers if "error" not in a]
        if len(scored) != len(out):
            errors.append(f"thread {i}: {len(out)} batch rows, "
                          f"{len(scored)} live answers")
        for j, a in enumerate(scored):
            s = out["score"].iloc[j]
            if not (a["score"] == s or (a["score"] is None and math.isnan(s))):
                errors.append(f"thread {i}: row {j}: batch {s}, live "
                              f"{a['score']}")
                break
    except Exception as e:  # reported by the main thread
        errors.append(f"thread {i}: {e!r}")


def main():
    mode, base = sys.argv[1], sys.argv[2]
    if mode == "prepare":
        prepare(base)
        return 0
    errors = []
    threads = [threading.Thread(target=side, args=(i, base, errors))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
