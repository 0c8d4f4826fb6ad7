"""tandem.dask on a distributed.LocalCluster with two worker processes:
scores equal Model.predict (and so XGBoost's bits) row for row, and a
pipeline run over a Dask DataFrame, with each entity's events spread over
several input partitions, equals `tandem batch` on the whole input."""
import csv
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import tandem
import tandem.dask
from pipeline_util import (FRAUD_COLUMNS, fraud_events, fraud_pipeline,
                           read_jsonl, write_csv)
from test_model import MODELS, booster_predict, load_fixture, same_bits

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TANDEM = os.environ.get("TANDEM", os.path.join(ROOT, "build", "tandem"))


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_score_equals_xgboost(client):
    path = MODELS[0]
    meta, frame = load_fixture(path)
    model = tandem.Model(path)
    ddf = dd.from_pandas(frame, npartitions=5)
    got = tandem.dask.score(ddf, model).compute()
    want = booster_predict(path, meta, frame[meta["feature_names"]]
                           .to_numpy(dtype=np.float32), False)
    assert list(got.index) == list(frame.index)
    same_bits(want, got.to_numpy())


def test_batch_equals_cli(client, tmp_path):
    yaml = fraud_pipeline(str(tmp_path))
    rows = fraud_events(seed=4242, n=900, entities=11, invalid=0.03)
    events = write_csv(str(tmp_path / "events.csv"), FRAUD_COLUMNS, rows)
    out = tmp_path / "cli.csv"
    proc = subprocess.run([TANDEM, "batch", yaml, "--in", events, "--out",
                           out, "--no-registry", "--now",
                           "2026-12-01T00:00:00Z"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    with open(out, newline="") as f:
        want = list(csv.DictReader(f))
    pipe = tandem.Pipeline(yaml, now=1796083200000)
    df = pd.DataFrame(rows, columns=FRAUD_COLUMNS)
    # Seven input partitions: every entity's events are spread over them.
    ddf = dd.from_pandas(df, npartitions=7, sort=False)
    got = tandem.dask.batch(ddf, pipe, npartitions=3).compute()
    assert list(got.index) == sorted(got.index)
    got = got.reset_index(drop=True)
    assert len(got) == len(want)
    assert list(got.columns) == list(want[0].keys())
    for i, row in enumerate(want):
        for column, text in row.items():
            value = got[column].iloc[i]
            if column in ("score", "amount"):
                assert (text == "" and np.isnan(value)) or float(text) == value
            elif column == "duplicate":
                assert bool(value) == (text == "1")
            else:
                assert (text == "" and value is None) or text == value, \
                    (i, column, text, value)
