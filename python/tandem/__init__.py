"""tandem from Python: models and pipelines over numpy arrays and pandas
DataFrames, through tandem's public C API (include/tandem.h).

    import tandem
    model = tandem.Model("model.json")
    scores = model.predict(X)                      # numpy or DataFrame
    pipe = tandem.Pipeline("pipeline.yaml")
    out = pipe.batch(events_df)                    # == tandem batch
    training = pipe.features(events_df)            # == --features-only
    live = pipe.state()                            # == the live endpoint
    live.process({"card_id": "c1", "ts": "2026-03-01T10:00:00Z", ...})

The values are tandem's: a DataFrame batch is the CLI's batch run on the
same events (the DataFrame is written to a CSV that `tandem batch` reads,
and its output read back), and State.process answers what `POST
/v1/pipelines/NAME/events` answers, because both are the same C code.
See docs/python.md.
"""
import csv
import datetime as _dt
import json
import math
import os
import shutil
import tempfile

import numpy as np

from . import _tandem
from ._tandem import Error

__all__ = ["Error", "Model", "Pipeline", "State", "version"]
__version__ = _tandem.version()


def version():
    """The C library's version (tdm_version())."""
    return _tandem.version()


def _is_dataframe(x):
    return type(x).__module__.startswith("pandas") and hasattr(x, "columns")


class Model:
    """A model file (XGBoost JSON, LightGBM text, tandem linear JSON),
    loaded once, immutable, shareable between threads."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._m = _tandem.Model(self.path)
        self._info = self._m._info()
        self.feature_names = self._m._feature_names()
        self.feature_types = self._m._feature_types()
        self.num_outputs = self._info["num_outputs"]

    def __reduce__(self):
        # Sent to another process (Dask workers) as its file, loaded there.
        return (Model, (self.path,))

    def info(self):
        """What `tandem inspect --json` says: format, objective, trees..."""
        return dict(self._info)

    def _matrix(self, X):
        """X as a C-contiguous float32 or float64 matrix in the model's
        feature order: a copy only when the layout or type needs one."""
        if _is_dataframe(X):
            return self._frame_matrix(X)
        a = np.asarray(X)
        if a.ndim == 1 and a.shape[0] == len(self.feature_names):
            a = a.reshape(1, -1)
        if a.ndim != 2:
            raise ValueError(f"X must be 2-D (rows x {len(self.feature_names)}"
                             f" features), not {a.ndim}-D")
        if a.shape[1] != len(self.feature_names):
            raise ValueError(f"X has {a.shape[1]} columns; the model has "
                             f"{len(self.feature_names)} features")
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float32 if self._info["float32"] else np.float64)
        return np.ascontiguousarray(a)

    def _frame_matrix(self, df):
        missing = [n for n in self.feature_names if n not in df.columns]
        if missing:
            raise ValueError("the DataFrame has no column for the model's "
                             f"feature(s) {', '.join(map(repr, missing))}")
        dtype = np.float32 if self._info["float32"] else np.float64
        out = np.empty((len(df), len(self.feature_names)), dtype=dtype)
        for j, name in enumerate(self.feature_names):
            col = df[name]
            if str(col.dtype) == "category":
                # XGBoost's mapping: a category's code is its position in
                # the column's categories; -1 (missing) is missing.
                codes = col.cat.codes.to_numpy().astype(dtype)
                codes[col.cat.codes.to_numpy() < 0] = np.nan
                out[:, j] = codes
            else:
                try:
                    out[:, j] = col.to_numpy(dtype=np.float64,
                                             na_value=np.nan)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"column {name!r}: {e}") from None
        return out

    def predict(self, X, margin=False, threads=0):
        """Scores the rows of X (numpy float32/float64, any order, or a
        DataFrame whose columns are matched to the features by name).
        Returns float32 values for float32 models (XGBoost), float64 for
        the others; one column per output, squeezed to 1-D for one."""
        rows = self._matrix(X)
        width = self._m._output_width(bool(margin))
        out = np.empty((rows.shape[0], width), dtype=np.float64)
        self._m._predict(rows, out, bool(margin), int(threads))
        if self._info["float32"]:
            out = out.astype(np.float32)  # exact: the values are float32
        return out[:, 0] if width == 1 else out


def _cell(value):
    """A DataFrame value as the text tandem reads ("" is missing)."""
    if value is None:
        return ""
    if isinstance(value, float) or isinstance(value, np.floating):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, _dt.datetime) or type(value).__name__ == "Timestamp":
        if getattr(value, "tzinfo", None) is not None:
            value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        if type(value).__name__ == "Timestamp" and value is not None:
            if value != value:  # NaT
                return ""
        return value.isoformat(timespec="milliseconds") + "Z"
    if type(value).__name__ == "NaTType":
        return ""
    return str(value)


def _event_cells(df, fields):
    """The DataFrame's columns that are pipeline fields (the others are
    ignored, as tandem ignores them) as the rows tandem reads in memory:
    their names, and one flat list of cells, len(names) per row, each the
    text a CSV cell would hold (floats as their shortest repr, so they
    read back exactly). tandem checks the names as it checks a CSV header
    (a missing entity or time column is an error naming it). Returns
    (names, cells, number of rows)."""
    names = [f for f in fields if f in df.columns]
    columns = [df[n].tolist() for n in names]
    cells = [_cell(v) for row in zip(*columns) for v in row]
    return names, cells, len(df)


class Pipeline:
    """A pipeline file, compiled once. store: the tables' store (default:
    the file's store:); now: the clock that state.max_future is measured
    from (a datetime, or epoch milliseconds; default: the wall clock)."""

    def __init__(self, path, store=None, now=None):
        self.path = os.fspath(path)
        self.store = os.fspath(store) if store is not None else None
        if isinstance(now, _dt.datetime):
            if now.tzinfo is None:
                now = now.replace(tzinfo=_dt.timezone.utc)
            now = int(now.timestamp() * 1000)
        self.now_ms = int(now) if now is not None else 0
        self._features_only = None
        self._no_model = None
        try:
            self._p = self._open(False)
        except Error as e:
            # A pipeline with no model: yet still gives its model's
            # training data (features()); scoring says what is missing.
            if "has no model" not in str(e):
                raise
            self._p, self._no_model = None, str(e)
            self._features_only = self._open(True)
        d = (self._p or self._features_only)._describe()
        self.name = d["name"]
        self.entity = d["entity"]
        self.fields = [name for name, _ in d["fields"]]
        self.field_types = dict(d["fields"])
        self.feature_names = d["features"]

    def __reduce__(self):
        # Sent to another process (Dask workers) as its file and options.
        return (Pipeline, (self.path, self.store, self.now_ms or None))

    def _open(self, features_only):
        kwargs = {"now_ms": self.now_ms, "features_only": features_only}
        if self.store is not None:
            kwargs["store"] = self.store
        return _tandem.Pipeline(self.path, **kwargs)

    def _run(self, events, threads, explain, features_only):
        import pandas as pd
        p = self._p
        if p is None and not features_only:
            raise Error(self._no_model)
        if features_only:
            if self._features_only is None:
                self._features_only = self._open(True)
            p = self._features_only
        tmp = tempfile.mkdtemp(prefix="tandem-")
        num_rows = None
        try:
            out = os.path.join(tmp, "out.jsonl" if explain else "out.csv")
            if isinstance(events, (str, os.PathLike)):
                stats = p._batch(os.fspath(events), out, int(threads),
                                 bool(explain))
            else:
                # The rows go to tandem in memory (tdm_pipeline_batch_rows),
                # each value as the text a CSV cell would hold.
                columns, cells, num_rows = _event_cells(events, self.fields)
                stats = p._batch_rows(columns, cells, out, int(threads),
                                      bool(explain))
            frame = (_read_jsonl(out) if explain else
                     _read_csv(out, self, features_only))
            rejects = out.rsplit(".", 1)[0] + ".rejects.jsonl"
            rej = out + ".rejects.jsonl"
            path = rej if os.path.exists(rej) else rejects
            frame.attrs["stats"] = stats
            frame.attrs["rejects"] = _read_rejects(path)
            if num_rows is not None:
                # Which input row each output row is: all of them, in
                # order, less the rejected ones (named by their row,
                # counted from 1).
                rejected = {r.get("line") for r in frame.attrs["rejects"]}
                frame.attrs["input_rows"] = np.array(
                    [i for i in range(num_rows) if i + 1 not in rejected],
                    dtype=np.int64)
            return frame
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def batch(self, events, threads=0, explain=False, features_only=False):
        """`tandem batch` over a DataFrame (or a CSV / JSON Lines path):
        a DataFrame equal, value for value, to the CLI's output for the
        same events. explain adds every feature's value as a column;
        rejected events are left out, listed in .attrs["rejects"]."""
        return self._run(events, threads, explain, features_only)

    def features(self, events, threads=0):
        """Training data: the keys and every feature of each event
        (`tandem batch --features-only`), from the same code as live."""
        return self._run(events, threads, False, True)

    def state(self, path=None):
        """Entity state for live processing: in memory, or durable in the
        directory `path` (the layout `tandem serve --state` uses)."""
        return State(self, path)


def _read_csv(path, pipeline, features_only=False):
    """tandem's CSV output as a DataFrame: score, duplicate and number
    columns as numbers (the shortest texts read back exactly), the rest as
    text, empty cells missing. Features-only output writes a category
    field as its index (what the model sees), so it is a number there."""
    import pandas as pd
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    data = {}
    kinds = ("number", "category") if features_only else ("number",)
    numeric = set(pipeline.feature_names) | {"score"} | {
        n for n, t in pipeline.field_types.items() if t in kinds}
    for j, name in enumerate(header):
        col = [r[j] for r in body]
        if name == "duplicate":
            data[name] = np.array([c == "1" for c in col], dtype=bool)
        elif name in numeric:
            data[name] = np.array([float(c) if c != "" else np.nan
                                   for c in col], dtype=np.float64)
        else:
            data[name] = pd.array([c if c != "" else None for c in col],
                                  dtype=object)
    return pd.DataFrame(data, columns=header)


def _read_jsonl(path):
    """tandem's JSON Lines output (explain): one row per line, the
    features as columns after the output's own."""
    import pandas as pd
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            feats = r.pop("features", {})
            r.setdefault("duplicate", False)
            for k, v in feats.items():
                r[k] = np.nan if v is None else float(v)
            records.append(r)
    frame = pd.DataFrame.from_records(records)
    if "score" in frame.columns:
        frame["score"] = frame["score"].astype(np.float64)
    return frame


def _read_rejects(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _jsonable(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, _dt.datetime) or type(value).__name__ == "Timestamp":
        return _cell(value)
    return value


class State:
    """The entity state of a pipeline's live path. process() answers what
    the live endpoint answers for the same body."""

    def __init__(self, pipeline, path=None):
        self.pipeline = pipeline
        if pipeline._p is None:
            raise Error(pipeline._no_model)
        args = (pipeline._p,) if path is None else (pipeline._p,
                                                     os.fspath(path))
        self._s = _tandem.State(*args)

    def process(self, events, explain=False):
        """One event (a dict) or several (a list of dicts). Returns the
        endpoint's answer: a result dict, or a list of them in which a
        rejected event's entry is {"error": ..., "reason": ...}. A single
        rejected event also answers its {"error": ...} dict (the endpoint's
        4xx body); a body tandem cannot read raises tandem.Error."""
        if isinstance(events, dict):
            body = {k: _jsonable(v) for k, v in events.items()}
        else:
            body = [{k: _jsonable(v) for k, v in e.items()} for e in events]
        text = json.dumps(body, allow_nan=False).encode("utf-8")
        status, answer, message = self._s._process(text, bool(explain))
        return json.loads(answer)
