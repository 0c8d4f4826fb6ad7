"""tandem on a Dask DataFrame, for inputs larger than one machine.

    import dask.dataframe as dd, tandem, tandem.dask
    scores = tandem.dask.score(dd.read_parquet(...), tandem.Model("m.json"))
    out = tandem.dask.batch(events, tandem.Pipeline("pipeline.yaml"))

score maps partitions: each row's score depends only on that row.
batch moves each entity's events to one partition (a shuffle on the
pipeline's entity field), keeps their arrival order (the input's row
order, numbered before the shuffle), runs `tandem batch` on each
partition, and orders the results by input row, so the result equals
`tandem batch` on the whole input: every result depends only on its own
entity's events (docs/windows.md, isolation). Models and pipelines travel
to the workers as their file paths, which every worker must be able to
read (a shared file system, or the same path on each machine).
"""
import numpy as np
import pandas as pd

from . import Model, Pipeline

_ROW = "_tandem_row"


def score(ddf, model, margin=False, threads=1):
    """The model's scores of each row of ddf (columns matched by name): a
    Dask Series "score" for one output, else a DataFrame score_0..k-1."""
    if not isinstance(model, Model):
        model = Model(model)
    width = model._m._output_width(bool(margin))
    dtype = np.float32 if model.info()["float32"] else np.float64
    names = ["score"] if width == 1 else [f"score_{i}" for i in range(width)]

    def part(pdf, m):
        values = m.predict(pdf, margin=margin, threads=threads)
        values = values.reshape(len(pdf), width)
        return pd.DataFrame(values, index=pdf.index, columns=names)

    meta = pd.DataFrame({n: np.array([], dtype=dtype) for n in names})
    out = ddf.map_partitions(part, model, meta=meta)
    return out["score"] if width == 1 else out


def _key(value):
    """The partitioning key of an entity value: its text as tandem reads
    it; every missing value is one key (such events are rejected)."""
    from . import _cell
    return _cell(value)


def _number_rows(ddf, entity):
    """ddf with the input row position of each row, and the partitioning
    key of its entity, as columns. Both are made here, from a copy: a
    Dask expression on the entity column (astype(str)) was seen to change
    the column itself on a distributed cluster (None became "None")."""
    lengths = ddf.map_partitions(len).compute()
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def number(pdf, partition_info=None):
        start = offsets[partition_info["number"]] if partition_info else 0
        keys = [_key(v) for v in pdf[entity].tolist()]
        return pdf.assign(**{_ROW: np.arange(start, start + len(pdf),
                                              dtype=np.int64),
                             "_tandem_key": pd.Series(keys, index=pdf.index,
                                                      dtype=object)})

    meta = ddf._meta.assign(**{_ROW: np.array([], dtype=np.int64),
                               "_tandem_key": pd.Series([], dtype=object)})
    return ddf.map_partitions(number, meta=meta)


def batch(ddf, pipeline, threads=1, explain=False, features_only=False,
          npartitions=None):
    """`tandem batch` over a Dask DataFrame of events. Returns a Dask
    DataFrame of the results indexed by input row (rejected events left
    out), equal to `tandem batch` on the whole input once computed."""
    if not isinstance(pipeline, Pipeline):
        pipeline = Pipeline(pipeline)
    entity = pipeline.entity
    if entity not in ddf.columns:
        raise ValueError(f"the events have no column {entity!r} (the "
                         "pipeline's entity)")
    # The entity as text decides the partition: a missing entity goes
    # with the others of its kind and is rejected there, as in one run.
    numbered = _number_rows(ddf, entity)
    # The task-based shuffle moves the pandas objects as they are; the
    # disk-based one (partd) writes object columns as text, which turned
    # a missing entity (None) into the string "None", an entity.
    shuffled = numbered.shuffle("_tandem_key",
                                npartitions=npartitions or ddf.npartitions,
                                shuffle="tasks")

    def run(pdf, p):
        pdf = pdf.sort_values(_ROW, kind="stable")
        events = pdf.drop(columns=[_ROW, "_tandem_key"])
        out = p.batch(events, threads=threads, explain=explain,
                      features_only=features_only)
        rows = pdf[_ROW].to_numpy()[out.attrs["input_rows"]]
        out.attrs = {}
        return out.set_index(pd.Index(rows, name="row", dtype=np.int64))

    meta = run(numbered.head(1, npartitions=-1), pipeline).iloc[:0]
    results = shuffled.map_partitions(run, pipeline, meta=meta)
    return results.reset_index().set_index("row", sorted=False)
