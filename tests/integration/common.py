"""Shared helpers for tandem's integration tests.

Tests run with Debian's python (/usr/bin/python3), which has
python3-xgboost and numpy. They drive the real `build/tandem` binary
(or $TANDEM) and compare with the original library's own output.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TANDEM = os.environ.get("TANDEM", os.path.join(ROOT, "build", "tandem"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

failures = []


def run(*args, check=True):
    """Runs tandem with args; returns the CompletedProcess."""
    proc = subprocess.run([TANDEM, *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"tandem {' '.join(map(str, args))} exited "
                             f"{proc.returncode}: {proc.stderr.strip()}")
    return proc


def fail(message):
    failures.append(message)
    print("FAIL", message, flush=True)


def expect(condition, message):
    if not condition:
        fail(message)
    return condition


def xgboost_regression_model(trees, feature_names):
    """An XGBoost 1.7 JSON model (reg:squarederror, base_score 0) of the
    given tree dicts over float features: its score is the float32 sum of
    the leaves reached, which a test can compute by hand."""
    n = len(feature_names)
    return {
        "learner": {
            "attributes": {}, "feature_names": list(feature_names),
            "feature_types": ["float"] * n,
            "gradient_booster": {"model": {
                "gbtree_model_param": {"num_parallel_tree": "1",
                                       "num_trees": str(len(trees)),
                                       "size_leaf_vector": "0"},
                "tree_info": [0] * len(trees), "trees": trees},
                "name": "gbtree"},
            "learner_model_param": {"base_score": "0",
                                    "boost_from_average": "0",
                                    "num_class": "0", "num_feature": str(n),
                                    "num_target": "1"},
            "objective": {"name": "reg:squarederror",
                          "reg_loss_param": {"scale_pos_weight": "1"}},
        },
        "version": [1, 7, 4],
    }


def read_scores(path):
    """Reads a tandem output CSV into a float32 matrix (rows x columns)."""
    with open(path) as f:
        header = f.readline().strip().split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return header, data.astype(np.float32)


def bits_equal(expected, got, name):
    """Compares two float32 arrays bit for bit and reports mismatches."""
    expected = np.asarray(expected, dtype=np.float32).reshape(got.shape)
    same = expected.view(np.uint32) == got.view(np.uint32)
    # Two NaNs with different payloads are still the same answer.
    same |= np.isnan(expected) & np.isnan(got)
    if not same.all():
        bad = np.argwhere(~same)
        i = tuple(bad[0])
        fail(f"{name}: {len(bad)} of {same.size} values differ; first at {i}: "
             f"expected {expected[i]!r}, got {got[i]!r}")
        return False
    return True


def write_matrix_csv(path, names, X):
    """Writes float32 features with %.9g (exact round trip), NaN as empty."""
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for row in X:
            f.write(",".join("" if np.isnan(v) else "%.9g" % v for v in row) + "\n")


def score_fixtures(library, suffix, count, kinds, out, threads):
    """Scores every fixture model of tests/fixtures/LIBRARY (files ending in
    SUFFIX; COUNT of them expected) on its input, once per (kind, flags) in
    KINDS, with 1 thread, and checks that THREADS threads write the same
    bytes. Yields (name, base, kind, path) for the caller's exactness check
    against BASE.KIND.csv."""
    import filecmp
    import glob
    models = sorted(glob.glob(os.path.join(FIXTURES, library, "*" + suffix)))
    expect(len(models) == count,
           f"expected {count} {library} fixtures, found {len(models)}")
    for model in models:
        name = os.path.basename(model)[: -len(suffix)]
        base = os.path.join(FIXTURES, library, name)
        for kind, flags in kinds:
            path = os.path.join(out, f"{name}.{kind}.csv")
            run("score", "--model", model, "--in", base + ".input.csv",
                "--out", path, "--threads", 1, *flags)
            yield name, base, kind, path
            again = os.path.join(out, f"{name}.{kind}.t{threads}.csv")
            run("score", "--model", model, "--in", base + ".input.csv",
                "--out", again, "--threads", threads, *flags)
            expect(filecmp.cmp(path, again, shallow=False),
                   f"{name} {kind}: output differs between 1 and {threads} "
                   "threads")


def free_port():
    """A loopback TCP port nothing listens on now (for a server a test
    starts: nginx, redis-server)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# The directories tmpdir() made, removed by finish() when the test passes.
made_dirs = []


def tmpdir():
    """A fresh directory for a test's files. finish() removes it when the
    test passes and keeps (and names) it when the test fails, for a look at
    what was left; TANDEM_KEEP_TMP=1 keeps every one. Without the removal
    each run of the suite left its files in $TMPDIR (the crash and replay
    tests leave hundreds of MB each), which filled a developer's disk."""
    d = tempfile.mkdtemp(prefix="tandem-it-")
    made_dirs.append(d)
    return d


def wait_until(condition, what, timeout=60, interval=0.01):
    """Polls CONDITION (a function) until it returns a true value, which it
    returns; fails the test with WHAT after TIMEOUT s. The timeout only
    stops a test that would hang: nothing is asserted about durations."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"gave up waiting ({timeout} s) until {what}")
            return value
        time.sleep(interval)


def finish(name):
    if failures:
        print(f"{name}: {len(failures)} failure(s)")
        if made_dirs:
            print(f"{name}: its files are kept in {' '.join(made_dirs)}")
        sys.exit(1)
    if not os.environ.get("TANDEM_KEEP_TMP"):
        for d in made_dirs:
            shutil.rmtree(d, ignore_errors=True)
    print(f"{name}: all passed")
