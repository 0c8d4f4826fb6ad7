"""Served scores are exact: for every XGBoost and LightGBM fixture, the
scores and margins that `tandem serve` returns over HTTP (curl, the v2
infer endpoint) equal the original library's own predictions bit for bit,
and equal `tandem score` on the same rows. Rows go as one [rows, features]
tensor, as single-row requests, and as one tensor per feature."""
import glob
import json
import os

import numpy as np

from common import FIXTURES, expect, fail, finish, run, tmpdir
from serve_util import Server, curl, infer_body, read_csv_text

out = tmpdir()
fixtures = []
for library, suffix, truth, margin in (("xgboost", ".model.json", "pred", "margin"),
                                       ("lightgbm", ".model.txt", "pred", "raw")):
    for model in sorted(glob.glob(os.path.join(FIXTURES, library, "*" + suffix))):
        name = os.path.basename(model)[: -len(suffix)]
        fixtures.append((f"{library}-{name}", model,
                         os.path.join(FIXTURES, library, name), truth, margin,
                         library == "xgboost"))
expect(len(fixtures) == 18, f"expected 18 fixtures, found {len(fixtures)}")


def values(text, float32):
    """Output data as an array of the model's precision."""
    return np.array(text, dtype=np.float32 if float32 else np.float64)


def same_bits(name, got, expected, float32):
    dtype, view = (np.float32, np.uint32) if float32 else (np.float64, np.uint64)
    got = np.asarray(got, dtype=dtype).ravel()
    expected = np.asarray(expected, dtype=dtype).ravel()
    if got.shape != expected.shape:
        fail(f"{name}: {got.size} values, expected {expected.size}")
        return False
    same = (got.view(view) == expected.view(view)) | (np.isnan(got) & np.isnan(expected))
    if not same.all():
        i = int(np.argwhere(~same)[0][0])
        fail(f"{name}: {int((~same).sum())} of {same.size} differ; first at {i}: "
             f"expected {expected[i]!r}, got {got[i]!r}")
        return False
    return True


def read(path, float32):
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return data.astype(np.float32) if float32 else data


args = []
for key, model, *_ in fixtures:
    args += ["--model", f"{key}={model}"]

with Server(*args) as server:
    for key, model, base, truth, margin_kind, float32 in fixtures:
        names, rows = read_csv_text(base + ".input.csv")
        datatype = "FP32" if float32 else "FP64"
        # `tandem score` on the same rows, for the same-engine comparison.
        batch = os.path.join(out, key + ".csv")
        run("score", "--model", model, "--in", base + ".input.csv", "--out", batch)
        expected_scores = read(base + f".{truth}.csv", float32)
        expected_margins = read(base + f".{margin_kind}.csv", float32)
        batch_scores = read(batch, float32)

        r = curl(server, "POST", f"/v2/models/{key}/infer",
                 infer_body(rows, datatype, id=key))
        if not expect(r.status == 200, f"{key}: infer answered {r}"):
            continue
        body = r.json()
        expect(body["model_name"] == key and body["id"] == key
               and body["model_version"] == "1", f"{key}: response header {body}")
        outs = {o["name"]: o for o in body["outputs"]}
        score, margin = outs["score"], outs["margin"]
        expect(score["datatype"] == datatype and score["shape"][0] == len(rows),
               f"{key}: score tensor {score['datatype']} {score['shape']}")
        ok = same_bits(f"{key} score vs library", values(score["data"], float32),
                       expected_scores, float32)
        ok &= same_bits(f"{key} score vs tandem score",
                        values(score["data"], float32), batch_scores, float32)
        ok &= same_bits(f"{key} margin vs library", values(margin["data"], float32),
                        expected_margins, float32)
        if ok:
            print(f"ok {key}: {len(rows)} rows, {np.asarray(score['data']).size} "
                  "scores and margins identical to the library's")

        # Single-row requests, and only the score output.
        for i in (0, len(rows) // 2, len(rows) - 1):
            r = curl(server, "POST", f"/v2/models/{key}/infer",
                     infer_body([rows[i]], datatype, outputs=[{"name": "score"}]))
            o = r.json()["outputs"]
            expect(len(o) == 1 and o[0]["name"] == "score",
                   f"{key}: outputs selection ignored: {[x['name'] for x in o]}")
            same_bits(f"{key} row {i} alone", values(o[0]["data"], float32),
                      expected_scores[i], float32)

        # One tensor per feature, for the first 20 rows.
        n = min(20, len(rows))
        inputs = [{"name": f, "shape": [n], "datatype": datatype,
                   "data": [None if rows[r_][j] is None else float(rows[r_][j])
                            for r_ in range(n)]}
                  for j, f in enumerate(names)]
        r = curl(server, "POST", f"/v2/models/{key}/infer",
                 {"inputs": inputs, "outputs": [{"name": "score"}]})
        if expect(r.status == 200, f"{key}: per-feature infer answered {r}"):
            same_bits(f"{key} per-feature tensors",
                      values(r.json()["outputs"][0]["data"], float32),
                      expected_scores[:n], float32)

finish("test_serve_exact")
