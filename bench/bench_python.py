#!/usr/bin/env python3
"""tandem.Model.predict from Python against xgboost.Booster.inplace_predict,
same model (bench/make_models.py's *large*: 500 trees, depth 8), same
float32 matrix, same threads, measured in one run:

  batch       rows/s over ROWS rows, best of REPEATS
  one row     µs per call for a 1-row matrix (the Python call included)
  GIL         two Python threads each scoring the matrix with threads=1,
              against one thread: the rows/s ratio (2.0 is perfect);
              beside it the same work as one Python call with threads=2
              (two C threads, the GIL not involved), measured in the same
              rounds: when the two ratios agree, the GIL costs nothing and
              the gap to 2.0 is the machine's (a busy or shared core)

  bench_python.py MODEL_DIR [ROWS] [REPEATS] [OUT.json]

Prints a table and saves JSON. No assertion: numbers are for the README.
"""
import json
import os
import sys
import threading
import time

import numpy as np
import xgboost as xgb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "python"))
import tandem  # noqa: E402


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    model_dir = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    out_path = sys.argv[4] if len(sys.argv) > 4 else None
    path = os.path.join(model_dir, "large.model.json")
    model = tandem.Model(path)
    booster = xgb.Booster(model_file=path)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(rows, len(model.feature_names))).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    # The same bits first: a benchmark of different answers means nothing.
    booster.set_param({"nthread": 1})
    want = booster.inplace_predict(X[:2000]).astype(np.float32)
    got = model.predict(X[:2000], threads=1)
    assert (want.view(np.uint32) == got.view(np.uint32)).all()
    result = {"model": "large (500 trees, depth 8)", "rows": rows,
              "cores": os.cpu_count(), "batch": []}
    for threads in sorted({1, os.cpu_count() or 1}):
        booster.set_param({"nthread": threads})
        t_x = best(lambda: booster.inplace_predict(X), repeats)
        t_t = best(lambda: model.predict(X, threads=threads), repeats)
        result["batch"].append({"threads": threads,
                                "tandem_rows_s": rows / t_t,
                                "xgboost_rows_s": rows / t_x,
                                "ratio": t_x / t_t})
    booster.set_param({"nthread": 1})
    one = X[:1].copy()
    calls = 2000
    t_x = best(lambda: [booster.inplace_predict(one) for _ in range(calls)],
               repeats)
    t_t = best(lambda: [model.predict(one, threads=1) for _ in range(calls)],
               repeats)
    result["one_row"] = {"tandem_us": t_t / calls * 1e6,
                         "xgboost_us": t_x / calls * 1e6,
                         "ratio": t_x / t_t}
    part = X[: rows // 2]

    def two():
        ts = [threading.Thread(target=model.predict, args=(part,),
                               kwargs={"threads": 1}) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    # The three are measured in alternating rounds, so a change in the
    # machine's load falls on all of them alike.
    both = X[: 2 * len(part)]
    t1 = t2 = tc = float("inf")
    load = [os.getloadavg()[0]]
    for _ in range(repeats):
        t1 = min(t1, best(lambda: model.predict(part, threads=1), 1))
        t2 = min(t2, best(two, 1))
        tc = min(tc, best(lambda: model.predict(both, threads=2), 1))
    load.append(os.getloadavg()[0])
    result["gil"] = {"one_thread_rows_s": len(part) / t1,
                     "two_threads_rows_s": 2 * len(part) / t2,
                     "ratio": (2 * len(part) / t2) / (len(part) / t1),
                     "c_two_threads_rows_s": len(both) / tc,
                     "c_ratio": (len(both) / tc) / (len(part) / t1),
                     "load_average": load}
    print(f"tandem.Model.predict vs xgboost inplace_predict, {rows} rows, "
          f"{result['model']}")
    print("| threads | tandem rows/s | xgboost rows/s | ratio |")
    print("|---|---|---|---|")
    for b in result["batch"]:
        print(f"| {b['threads']} | {b['tandem_rows_s']:.0f} | "
              f"{b['xgboost_rows_s']:.0f} | {b['ratio']:.2f}x |")
    o = result["one_row"]
    print(f"one row: tandem {o['tandem_us']:.1f} µs, xgboost "
          f"{o['xgboost_us']:.1f} µs: {o['ratio']:.1f}x")
    g = result["gil"]
    print(f"two Python threads: {g['two_threads_rows_s']:.0f} rows/s vs one "
          f"{g['one_thread_rows_s']:.0f}: {g['ratio']:.2f}x; one call with "
          f"two C threads: {g['c_two_threads_rows_s']:.0f} rows/s, "
          f"{g['c_ratio']:.2f}x (load average {g['load_average'][0]:.1f} "
          f"-> {g['load_average'][1]:.1f})")
    if out_path:
        with open(out_path, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
