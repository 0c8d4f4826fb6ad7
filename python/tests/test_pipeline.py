"""tandem.Pipeline against the CLI and the real server: a DataFrame batch
equals `tandem batch` on the same events (the fraud example, and a seeded
adversarial stream with late, duplicate and invalid events), value for
value, with and without features; features() equals --features-only;
State.process answers exactly what `tandem serve`'s endpoint answers for
the same events in the same order (checked with curl); a durable state
reopened continues as if never closed; errors carry file:line:column."""
import csv
import datetime as dt
import gc
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import tandem
from pipeline_util import (FRAUD_COLUMNS, fraud_events, fraud_pipeline,
                           read_jsonl, write_csv)
from serve_util import Server, curl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TANDEM = os.environ.get("TANDEM", os.path.join(ROOT, "build", "tandem"))
EXAMPLE = os.path.join(ROOT, "examples", "fraud", "pipeline.yaml")
NOW = "2026-12-01T00:00:00Z"
NOW_MS = int(dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)


def cli(*args):
    proc = subprocess.run([TANDEM, *map(str, args)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def read_cli_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def same_value(cli_text, value, column):
    """The CLI's cell text against the DataFrame's value: numbers by value
    (the CLI writes the shortest text that reads back), the rest as text,
    an empty cell as missing."""
    if cli_text == "":
        return value is None or (isinstance(value, float) and math.isnan(value))
    if isinstance(value, (float, np.floating)):
        return float(cli_text) == value
    if isinstance(value, (bool, np.bool_)):
        return cli_text == ("1" if value else "0")
    return cli_text == str(value)


def assert_frame_equals_cli(frame, cli_rows):
    assert len(frame) == len(cli_rows)
    assert list(frame.columns) == list(cli_rows[0].keys())
    for i, row in enumerate(cli_rows):
        for column, text in row.items():
            value = frame[column].iloc[i]
            assert same_value(text, value, column), (i, column, text, value)


@pytest.fixture(scope="module")
def example_events(tmp_path_factory):
    d = tmp_path_factory.mktemp("example")
    path = d / "events.csv"
    subprocess.run([sys.executable,
                    os.path.join(ROOT, "examples", "fraud", "generate.py"),
                    "--cards", "120", "--days", "4", "--seed", "19",
                    "--out", str(path)], check=True, capture_output=True)
    store = d / "store"
    store.mkdir()
    return d, path, store


def test_dataframe_batch_equals_cli_on_the_fraud_example(example_events):
    d, events, store = example_events
    cli("batch", EXAMPLE, "--in", events, "--out", d / "cli.csv", "--store",
        store, "--now", NOW, "--no-registry", "--threads", "2")
    want = read_cli_csv(d / "cli.csv")
    pipe = tandem.Pipeline(EXAMPLE, store=store, now=NOW_MS)
    df = pd.read_csv(events)          # typed: floats, ints, strings
    got = pipe.batch(df, threads=3)
    assert_frame_equals_cli(got, want)
    # The time as pandas datetimes, and extra columns, change nothing.
    df2 = df.assign(ts=pd.to_datetime(df["ts"]), extra="x")
    assert_frame_equals_cli(pipe.batch(df2, threads=1), want)
    # A path is read by tandem itself.
    assert_frame_equals_cli(pipe.batch(str(events)), want)
    # explain: every feature as a column, equal to the CLI's JSON Lines.
    cli("batch", EXAMPLE, "--in", events, "--out", d / "cli.jsonl",
        "--explain", "--store", store, "--now", NOW, "--no-registry")
    lines = read_jsonl(d / "cli.jsonl")
    got = pipe.batch(df, explain=True)
    assert len(got) == len(lines)
    for i, line in enumerate(lines):
        features = line.pop("features")
        for k, v in list(line.items()) + list(features.items()):
            g = got[k].iloc[i]
            if v is None:
                assert g is None or (isinstance(g, float) and math.isnan(g))
            elif isinstance(v, dict):
                assert g == v, (i, k)
            else:
                assert g == v, (i, k, v, g)


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """The shared adversarial pipeline and a seeded stream for it."""
    d = tmp_path_factory.mktemp("stream")
    yaml = fraud_pipeline(str(d))
    rows = fraud_events(seed=1919, n=600, entities=9, invalid=0.05)
    events = write_csv(str(d / "events.csv"), FRAUD_COLUMNS, rows)
    return d, yaml, rows, events


def test_batch_and_features_equal_cli_on_an_adversarial_stream(stream):
    d, yaml, rows, events = stream
    cli("batch", yaml, "--in", events, "--out", d / "cli.csv", "--now", NOW,
        "--no-registry")
    cli("batch", yaml, "--in", events, "--out", d / "feat.csv", "--now", NOW,
        "--no-registry", "--features-only")
    pipe = tandem.Pipeline(yaml, now=NOW_MS)
    df = pd.DataFrame(rows, columns=FRAUD_COLUMNS)   # every value text
    got = pipe.batch(df, threads=2)
    assert_frame_equals_cli(got, read_cli_csv(d / "cli.csv"))
    rejects = read_jsonl(str(d / "cli.csv") + ".rejects.jsonl") \
        if os.path.exists(str(d / "cli.csv") + ".rejects.jsonl") else \
        read_jsonl(str(d / "cli.rejects.jsonl"))
    assert len(rejects) > 0 and len(got.attrs["rejects"]) == len(rejects)
    assert got.attrs["stats"]["rejected"] == len(rejects)
    assert_frame_equals_cli(pipe.features(df), read_cli_csv(d / "feat.csv"))


def test_dataframe_rows_go_in_memory_and_keep_their_positions(stream):
    """A DataFrame's rows reach tandem in memory (tdm_pipeline_batch_rows),
    columns in any order and extra columns ignored: the rejected rows are
    the ones the CLI rejects from the same events in a file (whose line is
    the row plus 2: the header is line 1), the rejects name rows counted
    from 1, and attrs["input_rows"] points each output row at the input
    row whose txn it carries. A DataFrame without the entity's column is
    an error naming it, as a CSV header without it is."""
    d, yaml, rows, events = stream
    cli("batch", yaml, "--in", events, "--out", d / "pos.csv", "--now", NOW,
        "--no-registry")
    rej = str(d / "pos.csv") + ".rejects.jsonl"
    if not os.path.exists(rej):
        rej = str(d / "pos.rejects.jsonl")
    cli_rejected = {r["line"] - 2 for r in read_jsonl(rej)}
    pipe = tandem.Pipeline(yaml, now=NOW_MS)
    df = pd.DataFrame(rows, columns=FRAUD_COLUMNS)
    df = df[list(reversed(FRAUD_COLUMNS))].assign(extra="ignored")
    got = pipe.batch(df)
    positions = list(got.attrs["input_rows"])
    assert len(positions) == len(got) == len(df) - len(cli_rejected)
    assert set(range(len(df))) - set(positions) == cli_rejected
    assert {r["line"] - 1 for r in got.attrs["rejects"]} == cli_rejected
    assert "txn" in got.columns
    for j, i in enumerate(positions):
        assert got["txn"].iloc[j] == df["txn"].iloc[i], (j, i)
    with pytest.raises(tandem.Error) as e:
        pipe.batch(df.drop(columns=["card"]))
    assert 'no column "card"' in str(e.value)


def test_process_equals_the_live_endpoint(stream):
    d, yaml, rows, events = stream
    state = tandem.Pipeline(yaml).state()
    bodies = []
    for r in rows[:150]:
        bodies.append({k: v for k, v in r.items() if v is not None})
    # Numbers as JSON numbers where they read as numbers (the endpoint
    # takes either), the rest as strings.
    for b in bodies[::3]:
        try:
            b["amount"] = float(b["amount"])
        except (KeyError, ValueError):
            pass
    with Server(yaml) as server:
        for i, body in enumerate(bodies):
            want = curl(server, "POST", "/v1/pipelines/fraud/events"
                        + ("?explain=features" if i % 2 else ""), body)
            got = state.process(body, explain=bool(i % 2))
            assert got == want.json(), (i, body, want)
        # An array with its rejected entries, in one call.
        tail = bodies[100:150]
        tail = [dict(b, txn="again-" + str(j)) for j, b in enumerate(tail)]
        want = curl(server, "POST", "/v1/pipelines/fraud/events", tail)
        assert state.process(tail) == want.json()
        # A body the endpoint refuses: the same error answer.
        bad = {"txn": "x", "card": "c01", "ts": "yesterday"}
        want = curl(server, "POST", "/v1/pipelines/fraud/events", bad)
        assert want.status == 400
        assert state.process(bad) == want.json()


def test_durable_state_reopened_continues(stream, tmp_path):
    d, yaml, rows, events = stream
    pipe = tandem.Pipeline(yaml)
    bodies = [{k: v for k, v in r.items() if v is not None} for r in rows[:200]]
    whole = pipe.state()
    want = [whole.process(b, explain=True) for b in bodies]
    got = []
    for part in (bodies[:70], bodies[70:140], bodies[140:]):
        s = pipe.state(tmp_path / "state")
        got += [s.process(b, explain=True) for b in part]
        del s
        gc.collect()
    assert got == want


def test_errors_carry_tandems_messages(tmp_path, stream):
    d, yaml, rows, events = stream
    bad = tmp_path / "p.yaml"
    bad.write_text("name: x\nentity: k\ntime: ts\nfields: {k: string, ts: time}\n"
                   "features:\n  - {name: a, agg: nonsense, window: 1h}\n"
                   "model: {path: m.json}\n")
    with pytest.raises(tandem.Error) as e:
        tandem.Pipeline(bad)
    assert f"{bad}:6:" in str(e.value)
    pipe = tandem.Pipeline(yaml)
    with pytest.raises(tandem.Error) as e:
        pipe.batch(str(tmp_path / "none.csv"))
    assert "none.csv" in str(e.value)
    answer = pipe.state().process({"txn": "t", "ts": NOW})
    assert list(answer) == ["error"] and '"card"' in answer["error"]


def test_repeated_process_leaks_nothing(stream):
    d, yaml, rows, events = stream
    pipe = tandem.Pipeline(yaml)
    state = pipe.state()
    body = {"txn": "a", "card": "c1", "ts": "2026-01-01T00:00:00Z",
            "amount": "1"}
    state.process(body)
    gc.collect()
    refs = sys.getrefcount(state._s), sys.getrefcount(pipe._p)
    for _ in range(3000):
        state.process(body)
    gc.collect()
    assert (sys.getrefcount(state._s), sys.getrefcount(pipe._p)) == refs


def test_features_of_the_fraud_example_equal_cli(example_events, tmp_path):
    """The fraud example materializes its score; its features-only run
    (the model's training data) used to be refused at compile time, by
    the CLI and the package alike. Now it runs, and only a features-only
    run that asks to materialize the score is refused, with no output."""
    d, events, store = example_events
    cli("batch", EXAMPLE, "--in", events, "--out", tmp_path / "feat.csv",
        "--store", store, "--features-only", "--no-registry")
    want = read_cli_csv(tmp_path / "feat.csv")
    assert "amount_zscore_30d" in want[0] and "score" not in want[0]
    pipe = tandem.Pipeline(EXAMPLE, store=store)
    assert_frame_equals_cli(pipe.features(pd.read_csv(events)), want)
    proc = subprocess.run([TANDEM, "batch", EXAMPLE, "--in", events, "--out",
                           tmp_path / "m.csv", "--store", store,
                           "--features-only", "--materialize", "card_profile",
                           "--no-registry"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "card_profile" in proc.stderr and '"score"' in proc.stderr
    assert not os.path.exists(tmp_path / "m.csv")


def test_a_pipeline_without_a_model_gives_its_training_data(example_events,
                                                            tmp_path):
    """Before any model exists: Pipeline() opens a file with no model:,
    features() equals the CLI's --features-only (the number and category
    fields included), and scoring or live state says to add a model."""
    d, events, store = example_events
    text = open(EXAMPLE).read()
    assert "model: {path: model.json}\n" in text
    path = tmp_path / "nomodel.yaml"
    path.write_text(text.replace("model: {path: model.json}\n", ""))
    cli("batch", path, "--in", events, "--out", tmp_path / "feat.csv",
        "--store", store, "--features-only", "--no-registry")
    want = read_cli_csv(tmp_path / "feat.csv")
    assert "amount" in want[0] and "mcc" in want[0]
    pipe = tandem.Pipeline(path, store=store)
    got = pipe.features(pd.read_csv(events))
    assert_frame_equals_cli(got, want)
    assert got["mcc"].dtype == np.float64
    with pytest.raises(tandem.Error, match="has no model"):
        pipe.batch(pd.read_csv(events))
    with pytest.raises(tandem.Error, match="has no model"):
        pipe.state()
