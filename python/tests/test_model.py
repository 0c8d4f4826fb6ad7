"""tandem.Model against XGBoost itself: on every XGBoost fixture, the
predictions through numpy (float32 C order, float64 Fortran order) and
through pandas (columns shuffled, categories as pandas categoricals) are
the same bits as xgboost.Booster's, transformed and as margins; errors
name what is wrong; repeated calls leak neither references nor memory."""
import glob
import gc
import json
import os
import resource
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import xgboost

import tandem

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "xgboost")
MODELS = sorted(glob.glob(os.path.join(FIXTURES, "*.model.json")))


def load_fixture(model_path):
    stem = model_path[:-len(".model.json")]
    meta = json.load(open(stem + ".meta.json"))
    frame = pd.read_csv(stem + ".input.csv")
    return meta, frame


def booster_predict(model_path, meta, X, margin):
    """XGBoost's own prediction (the reference), as float32."""
    booster = xgboost.Booster(model_file=model_path)
    types = meta.get("feature_types")
    dm = xgboost.DMatrix(X, feature_names=meta["feature_names"],
                         feature_types=types,
                         enable_categorical=bool(meta.get("enable_categorical")),
                         nthread=1)
    return booster.predict(dm, output_margin=margin).astype(np.float32)


def same_bits(expected, got):
    expected = np.ascontiguousarray(expected, dtype=np.float32)
    got = np.ascontiguousarray(got, dtype=np.float32)
    assert expected.shape == got.shape, (expected.shape, got.shape)
    differ = np.nonzero(expected.view(np.uint32) != got.view(np.uint32))[0]
    assert differ.size == 0, (
        f"{differ.size} values differ; first at {differ[0]}: "
        f"{expected.flat[differ[0]]!r} != {got.flat[differ[0]]!r}")


def test_there_are_fixtures():
    assert len(MODELS) == 8


@pytest.mark.parametrize("path", MODELS, ids=os.path.basename)
@pytest.mark.parametrize("margin", [False, True])
def test_numpy_equals_xgboost(path, margin):
    meta, frame = load_fixture(path)
    model = tandem.Model(path)
    assert model.feature_names == meta["feature_names"]
    X = frame[meta["feature_names"]].to_numpy(dtype=np.float32)
    want = booster_predict(path, meta, X, margin)
    got = model.predict(X, margin=margin)
    assert got.dtype == np.float32
    same_bits(want, got)
    # float64 in Fortran order (a copy to row order is made), and threads.
    same_bits(want, model.predict(np.asfortranarray(X.astype(np.float64)),
                                  margin=margin, threads=3))


@pytest.mark.parametrize("path", MODELS, ids=os.path.basename)
def test_pandas_by_name_equals_xgboost(path):
    meta, frame = load_fixture(path)
    model = tandem.Model(path)
    names = meta["feature_names"]
    mappings = (meta.get("category_mappings") or {}) \
        if meta.get("enable_categorical") else {}
    df = frame[names].copy()
    if mappings:
        # Categories as pandas categoricals (XGBoost's enable_categorical
        # mapping: the code is the position in the categories). An unseen
        # code cannot be a pandas category: those rows are left out here
        # (the numpy test covers them).
        keep = np.ones(len(df), dtype=bool)
        for col, labels in mappings.items():
            codes = df[col].to_numpy()
            keep &= np.isnan(codes) | (codes < len(labels))
        df = df[keep].reset_index(drop=True)
        for col, labels in mappings.items():
            codes = df[col].fillna(-1).astype(int)
            df[col] = pd.Categorical.from_codes(codes, categories=labels)
    want = booster_predict(path, meta, df, False)
    shuffled = df[list(reversed(names))].assign(unused=1.0)
    same_bits(want, model.predict(shuffled))


def test_multiclass_shape_and_info():
    path = next(p for p in MODELS if "multi" in p or "softprob" in p
                or "class" in p)
    model = tandem.Model(path)
    info = model.info()
    assert info["format"] == "xgboost-json"
    assert model.num_outputs == info["num_outputs"] > 1
    X = np.zeros((5, len(model.feature_names)), dtype=np.float32)
    assert model.predict(X).shape[0] == 5


def test_errors_name_the_fault(tmp_path):
    with pytest.raises(tandem.Error) as e:
        tandem.Model(tmp_path / "none.json")
    assert "none.json" in str(e.value)
    bad = tmp_path / "bad.json"
    bad.write_text('{"learner": {"gradient_booster": {"name": "gblinear"}}}')
    with pytest.raises(tandem.Error) as e:
        tandem.Model(bad)
    assert "bad.json" in str(e.value) and "/learner" in str(e.value)
    model = tandem.Model(MODELS[0])
    with pytest.raises(ValueError, match="columns"):
        model.predict(np.zeros((3, len(model.feature_names) + 1)))
    with pytest.raises(ValueError, match=repr(model.feature_names[0])):
        model.predict(pd.DataFrame({"x": [1.0]}))


def test_threads_give_the_same_bits():
    model = tandem.Model(MODELS[0])
    rng = np.random.default_rng(19)
    X = rng.normal(size=(5000, len(model.feature_names))).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    one = model.predict(X, threads=1)
    same_bits(one, model.predict(X, threads=4))
    # Two Python threads at once (the GIL is released while scoring).
    results = [None, None]

    def run(i):
        results[i] = model.predict(X, threads=1)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    same_bits(one, results[0])
    same_bits(one, results[1])


def test_repeated_calls_leak_nothing():
    model = tandem.Model(MODELS[0])
    X = np.zeros((64, len(model.feature_names)), dtype=np.float32)
    model.predict(X)
    gc.collect()
    refs = sys.getrefcount(model._m), sys.getrefcount(X)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(20000):
        model.predict(X)
    for _ in range(200):
        tandem.Model(MODELS[0])
    gc.collect()
    assert (sys.getrefcount(model._m), sys.getrefcount(X)) == refs
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
    # A leak of one 64-row output per call would be 20000 * 512 B = 10 MB.
    assert grown_kb < 8 * 1024, f"max RSS grew by {grown_kb} KB"
