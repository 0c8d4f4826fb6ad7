"""The KServe v2 binary tensor data extension (as Triton implements it)
against the real `tandem serve`, with requests built here from the
extension's description alone (struct and numpy; no tandem code, no
Triton client): an Inference-Header-Content-Length header, a JSON header
whose inputs give parameters.binary_data_size, then each input's raw
little-endian values in order; binary outputs come back the same way.

  1. Seeded matrices with hostile values (NaN, -0, subnormals, huge and
     tiny magnitudes, integers) for two XGBoost models: the binary scores
     and margins equal xgboost's own inplace_predict bit for bit, and the
     JSON path's answer for the same rows.
  2. The LightGBM fixture (FP64): binary outputs equal LightGBM's own
     predictions (the fixture's pred.csv) and the JSON path.
  3. One tensor per feature, each in its own integer or float datatype
     (sign extension, UINT64's top values), binary and JSON inputs mixed
     in one request: the same scores as an all-JSON request.
  4. Which outputs are binary: binary_data per output, binary_data_output
     for all, an output's false overriding it; JSON-only answers have no
     Inference-Header-Content-Length.
  5. Malformed and hostile forms, sent on raw sockets: each is a 400 whose
     message names the header or the JSON pointer at fault, and the server
     still answers correctly afterwards.
"""
import json
import os
import struct

import numpy as np
import xgboost as xgb

from common import FIXTURES, expect, fail, finish
from raw_http import exchange, request
from serve_util import Server, curl

XGB = os.path.join(FIXTURES, "xgboost")
LGB = os.path.join(FIXTURES, "lightgbm")
HEADER = "Inference-Header-Content-Length"
rng = np.random.default_rng(20261207)


def hostile_matrix(rows, cols):
    """Seeded float32 values: ordinary, huge, tiny, subnormal, signed
    zeros, integers and NaN (missing), never infinite."""
    x = rng.normal(0, 50, size=(rows, cols)).astype(np.float32)
    kinds = rng.integers(0, 9, size=(rows, cols))
    x[kinds == 1] = np.float32(3.0e38) * rng.choice([-1, 1], size=int((kinds == 1).sum()))
    x[kinds == 2] = np.float32(1e-45) * rng.integers(1, 1000, size=int((kinds == 2).sum()))
    x[kinds == 3] = np.float32(-0.0)
    x[kinds == 4] = np.nan
    x[kinds == 5] = rng.integers(-5, 2000, size=int((kinds == 5).sum()))
    return x


def binary_request(inputs, outputs=None, parameters=None):
    """inputs: [(name, datatype, shape, numpy array or a list for JSON
    data)]. Arrays go as binary data, in order; lists as JSON data."""
    header = {"inputs": []}
    blobs = []
    for name, datatype, shape, values in inputs:
        tensor = {"name": name, "datatype": datatype, "shape": list(shape)}
        if isinstance(values, np.ndarray):
            raw = values.astype(values.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = values
        header["inputs"].append(tensor)
    if outputs is not None:
        header["outputs"] = outputs
    if parameters is not None:
        header["parameters"] = parameters
    text = json.dumps(header).encode()
    return text, b"".join(blobs)


def post(server, path, head, blob, headers=None):
    """POSTs a binary-extension body on a raw socket; returns (status,
    headers, body bytes)."""
    extra = ["%s: %d" % (HEADER, len(head))] if headers is None else headers
    extra.append("Content-Type: application/octet-stream")
    responses, _, raw = exchange("127.0.0.1", server.port,
                                 request("POST", path, head + blob, extra),
                                 wait=30, expect=1)
    if len(responses) != 1:
        fail("%s: %d responses: %r" % (path, len(responses), raw[:300]))
        return 0, {}, b""
    return responses[0]


def outputs_of(status, headers, body, float32):
    """The extension's response, read from its description: the JSON
    header's bytes from the response header, then each binary output's
    binary_data_size bytes in the header's order. {name: array}."""
    dtype = "<f4" if float32 else "<f8"
    if HEADER.lower() in headers:
        n = int(headers[HEADER.lower()])
        head, pos = json.loads(body[:n]), n
    else:
        head, pos = json.loads(body), len(body)
    got = {}
    for out in head["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        if size is None:
            got[out["name"]] = np.array(
                [np.nan if v is None else v for v in out["data"]],
                dtype=np.float32 if float32 else np.float64)
            continue
        expect("data" not in out, "a binary output also has data: %r" % out)
        got[out["name"]] = np.frombuffer(body[pos:pos + size], dtype=dtype)
        expect(len(body[pos:pos + size]) == size,
               "output %s: %d bytes, binary_data_size %d"
               % (out["name"], len(body[pos:pos + size]), size))
        pos += size
    expect(pos == len(body), "%d bytes after the last output" % (len(body) - pos))
    return head, got


def same_bits(what, got, expected, float32):
    dtype, view = (np.float32, np.uint32) if float32 else (np.float64, np.uint64)
    got = np.asarray(got, dtype=dtype).ravel()
    expected = np.asarray(expected, dtype=dtype).ravel()
    if got.shape != expected.shape:
        fail("%s: %d values, expected %d" % (what, got.size, expected.size))
        return
    same = (got.view(view) == expected.view(view)) | (np.isnan(got) & np.isnan(expected))
    if not same.all():
        i = int(np.argwhere(~same)[0][0])
        fail("%s: %d of %d differ; first at %d: expected %r, got %r"
             % (what, int((~same).sum()), same.size, i, expected[i], got[i]))


def json_data(x):
    """JSON tensor data for a float32 matrix: repr of each float32 read back
    as float32 is the same value; null for NaN."""
    return [None if np.isnan(v) else float(v) for v in x.ravel()]


def json_scores(server, path, x, float32):
    body = {"inputs": [{"name": "input", "datatype": "FP32" if float32 else "FP64",
                        "shape": list(x.shape), "data": json_data(x)}]}
    r = curl(server, "POST", path, body)
    expect(r.status == 200, "%s JSON: %r" % (path, r))
    out = {o["name"]: o for o in r.json()["outputs"]}
    dtype = np.float32 if float32 else np.float64
    return {k: np.array([np.nan if v is None else v for v in o["data"]], dtype=dtype)
            for k, o in out.items()}


def read_csv(path):
    with open(path) as f:
        f.readline()
        return np.array([[np.nan if c == "" else float(c) for c in line.rstrip("\n").split(",")]
                         for line in f if line.strip()])


credit = os.path.join(XGB, "credit_data_binary.model.json")
multi = os.path.join(XGB, "synth_multiclass4.model.json")
lgb_credit = os.path.join(LGB, "credit_data_binary.model.txt")

with Server("--model", "credit=" + credit, "--model", "multi=" + multi,
            "--model", "lgb=" + lgb_credit) as s:
    r = curl(s, "GET", "/v2")
    expect("binary_tensor_data" in r.json().get("extensions", []),
           "server metadata does not list binary_tensor_data: %r" % r)

    # 1. XGBoost: binary in, binary out, against xgboost itself.
    for name, model, cols, rows in (("credit", credit, 13, 301), ("multi", multi, 16, 97)):
        booster = xgb.Booster(model_file=model)
        x = hostile_matrix(rows, cols)
        want_score = booster.inplace_predict(x, missing=np.nan)
        want_margin = booster.inplace_predict(x, missing=np.nan, predict_type="margin")
        head, blob = binary_request([("input", "FP32", x.shape, x)],
                                    parameters={"binary_data_output": True})
        status, headers, body = post(s, "/v2/models/%s/infer" % name, head, blob)
        if not expect(status == 200, "%s binary: %d %r" % (name, status, body[:300])):
            continue
        expect(headers.get("content-type") == "application/octet-stream",
               "%s: content-type %r" % (name, headers.get("content-type")))
        meta, got = outputs_of(status, headers, body, True)
        expect(meta["outputs"][0]["shape"][0] == rows, "%s: shape %r" % (name, meta))
        same_bits(name + " binary score vs xgboost", got["score"], want_score, True)
        same_bits(name + " binary margin vs xgboost", got["margin"], want_margin, True)
        via_json = json_scores(s, "/v2/models/%s/infer" % name, x, True)
        same_bits(name + " binary vs JSON score", got["score"], via_json["score"], True)
        same_bits(name + " binary vs JSON margin", got["margin"], via_json["margin"], True)
        # FP64 binary input of the same float32 values: the same scores.
        head, blob = binary_request([("input", "FP64", x.shape, x.astype(np.float64))],
                                    outputs=[{"name": "score", "parameters": {"binary_data": True}}])
        status, headers, body = post(s, "/v2/models/%s/infer" % name, head, blob)
        meta, got = outputs_of(status, headers, body, True)
        expect(list(got) == ["score"], "%s: outputs %r" % (name, list(got)))
        same_bits(name + " FP64 binary input", got.get("score"), want_score, True)

    # 2. LightGBM (FP64 outputs) against LightGBM's own predictions.
    x = read_csv(os.path.join(LGB, "credit_data_binary.input.csv"))[:500]
    want = read_csv(os.path.join(LGB, "credit_data_binary.pred.csv"))[:500]
    head, blob = binary_request([("input", "FP64", x.shape, x)],
                                parameters={"binary_data_output": True})
    status, headers, body = post(s, "/v2/models/lgb/infer", head, blob)
    if expect(status == 200, "lgb binary: %d %r" % (status, body[:300])):
        meta, got = outputs_of(status, headers, body, False)
        expect(meta["outputs"][0]["datatype"] == "FP64", "lgb datatype %r" % meta)
        same_bits("lgb binary score vs LightGBM", got["score"], want.ravel(), False)
        via_json = json_scores(s, "/v2/models/lgb/infer", x, False)
        same_bits("lgb binary vs JSON", got["score"], via_json["score"], False)

    # 3. One tensor per feature, mixed datatypes, binary and JSON mixed.
    names = ["Seniority", "Home", "Time", "Age", "Marital", "Records", "Job",
             "Expenses", "Income", "Assets", "Debt", "Amount", "Price"]
    types = [("INT8", np.int8), ("UINT8", np.uint8), ("INT16", np.int16),
             ("UINT16", np.uint16), ("INT32", np.int32), ("UINT32", np.uint32),
             ("INT64", np.int64), ("UINT64", np.uint64), ("FP32", np.float32),
             ("FP64", np.float64), ("INT8", np.int8), ("INT64", np.int64),
             ("UINT64", np.uint64)]
    rows = 64
    inputs, json_inputs = [], []
    for i, (feature, (datatype, dtype)) in enumerate(zip(names, types)):
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            # The type's extremes and values across it (signed: negatives).
            v = rng.integers(info.min, info.max, size=rows, dtype=dtype, endpoint=True)
            v[:2] = [info.min, info.max]
        else:
            v = hostile_matrix(rows, 1).ravel().astype(dtype)
        # JSON text of the exact values (Python ints, or floats).
        as_json = [int(a) for a in v] if np.issubdtype(dtype, np.integer) else json_data(v)
        json_inputs.append({"name": feature, "datatype": datatype, "shape": [rows],
                            "data": as_json})
        inputs.append((feature, datatype, [rows, 1], v if i % 3 != 2 else as_json))
    head, blob = binary_request(inputs, parameters={"binary_data_output": True})
    status, headers, body = post(s, "/v2/models/credit/infer", head, blob)
    r = curl(s, "POST", "/v2/models/credit/infer", {"inputs": json_inputs})
    if expect(status == 200 and r.status == 200,
              "per-feature: binary %d %r, JSON %r" % (status, body[:300], r)):
        _, got = outputs_of(status, headers, body, True)
        want = {o["name"]: o["data"] for o in r.json()["outputs"]}
        same_bits("per-feature mixed binary vs JSON", got["score"], want["score"], True)
        same_bits("per-feature mixed binary vs JSON margin", got["margin"],
                  want["margin"], True)

    # 4. Which outputs are binary.
    x = hostile_matrix(5, 13)
    want = xgb.Booster(model_file=credit).inplace_predict(x, missing=np.nan)
    cases = [
        ("binary input, JSON outputs", None, None, set()),
        ("margin binary only", [{"name": "score"},
                                {"name": "margin", "parameters": {"binary_data": True}}],
         None, {"margin"}),
        ("binary_data_output, score's false wins",
         [{"name": "score", "parameters": {"binary_data": False}}, {"name": "margin"}],
         {"binary_data_output": True}, {"margin"}),
        ("binary_data_output false", None, {"binary_data_output": False}, set()),
    ]
    for what, outputs, params, binary in cases:
        head, blob = binary_request([("input", "FP32", x.shape, x)], outputs, params)
        status, headers, body = post(s, "/v2/models/credit/infer", head, blob)
        if not expect(status == 200, "%s: %d %r" % (what, status, body[:300])):
            continue
        expect((HEADER.lower() in headers) == bool(binary),
               "%s: %s header %r" % (what, HEADER, headers.get(HEADER.lower())))
        meta, got = outputs_of(status, headers, body, True)
        for out in meta["outputs"]:
            expect(("parameters" in out) == (out["name"] in binary),
                   "%s: output %r" % (what, out))
        same_bits(what, got["score"], want, True)
    # Zero rows: binary outputs of zero bytes, still with the header.
    empty = np.zeros((0, 13), dtype=np.float32)
    head, blob = binary_request([("input", "FP32", empty.shape, empty)],
                                parameters={"binary_data_output": True})
    status, headers, body = post(s, "/v2/models/credit/infer", head, blob)
    if expect(status == 200, "zero rows: %d %r" % (status, body[:300])):
        expect(HEADER.lower() in headers, "zero rows: no %s header" % HEADER)
        meta, got = outputs_of(status, headers, body, True)
        expect(got["score"].size == 0 and meta["outputs"][0]["shape"] == [0, 1],
               "zero rows: %r" % meta)
    # JSON data in, binary out (no binary input at all).
    r_head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                     "shape": [5, 13], "data": json_data(x)}],
                         "parameters": {"binary_data_output": True}}).encode()
    status, headers, body = post(s, "/v2/models/credit/infer", r_head, b"")
    if expect(status == 200, "JSON in, binary out: %d %r" % (status, body[:300])):
        same_bits("JSON in, binary out", outputs_of(status, headers, body, True)[1]["score"],
                  want, True)

    # 5. Malformed and hostile forms: a 400 naming what is wrong.
    x = hostile_matrix(2, 13)
    good_head, good_blob = binary_request([("input", "FP32", x.shape, x)])

    def tensor_head(params=None, datatype="FP32", shape=(2, 13), data=None, **extra):
        t = {"name": "input", "datatype": datatype, "shape": list(shape)}
        if params is not None:
            t["parameters"] = params
        if data is not None:
            t["data"] = data
        return json.dumps(dict({"inputs": [t]}, **extra)).encode()

    n = len(good_head)
    hostile = [
        ("header length beyond the body", good_head, good_blob,
         ["%s: %d" % (HEADER, n + len(good_blob) + 1)], HEADER),
        ("header length negative", good_head, good_blob, ["%s: -1" % HEADER], HEADER),
        ("header length not a number", good_head, good_blob, ["%s: 1e3" % HEADER], HEADER),
        ("header length with a sign", good_head, good_blob, ["%s: +%d" % (HEADER, n)], HEADER),
        ("header length of 2^64", good_head, good_blob,
         ["%s: 18446744073709551616" % HEADER], HEADER),
        ("header length empty", good_head, good_blob, ["%s:" % HEADER], HEADER),
        ("header cut short", good_head, good_blob, ["%s: %d" % (HEADER, n - 3)], "request"),
        ("header length 0", good_head, good_blob, ["%s: 0" % HEADER], "request"),
        ("header length into the binary data", good_head, good_blob,
         ["%s: %d" % (HEADER, n + 4)], "request"),
        ("binary data one byte short", good_head, good_blob[:-1], None, "binary_data_size"),
        ("one byte after the binary data", good_head, good_blob + b"\0", None,
         "binary_data_size add up to"),
        ("binary_data_size too small", tensor_head({"binary_data_size": 100}), good_blob,
         None, "/inputs/0/parameters/binary_data_size"),
        ("binary_data_size too large", tensor_head({"binary_data_size": 2 * 13 * 8}),
         good_blob + good_blob, None, "/inputs/0/parameters/binary_data_size"),
        ("binary_data_size negative", tensor_head({"binary_data_size": -104}), good_blob,
         None, "/inputs/0/parameters/binary_data_size"),
        ("binary_data_size 2^63-1", tensor_head({"binary_data_size": 2 ** 63 - 1}),
         good_blob, None, "/inputs/0/parameters/binary_data_size"),
        ("binary_data_size 2^64", tensor_head({"binary_data_size": 2 ** 64}), good_blob,
         None, "/inputs/0/parameters/binary_data_size"),
        ("binary_data_size a string", tensor_head({"binary_data_size": "104"}), good_blob,
         None, "/inputs/0/parameters/binary_data_size"),
        ("binary_data_size a fraction", tensor_head({"binary_data_size": 104.5}), good_blob,
         None, "/inputs/0/parameters/binary_data_size"),
        ("wrong datatype size (FP64 for 4-byte values)",
         tensor_head({"binary_data_size": 104}, "FP64"), good_blob, None,
         "/inputs/0/parameters/binary_data_size"),
        ("a shape whose size overflows",
         tensor_head({"binary_data_size": 104}, shape=(2 ** 62, 13)), good_blob, None,
         "/inputs/0/shape"),
        ("BYTES", tensor_head({"binary_data_size": 104}, "BYTES"), good_blob, None,
         "BYTES"),
        ("FP16", tensor_head({"binary_data_size": 52}, "FP16"), good_blob, None, "FP16"),
        ("both data and binary_data_size",
         tensor_head({"binary_data_size": 104}, data=json_data(x)), good_blob, None,
         "not both"),
        ("binary_data_size without the header", good_head, good_blob, [],
         "Inference-Header-Content-Length"),
        ("binary_data_output not a boolean", tensor_head(
            {"binary_data_size": 104}, parameters={"binary_data_output": 1}), good_blob,
         None, "/parameters/binary_data_output"),
        ("binary_data not a boolean", tensor_head(
            {"binary_data_size": 104}, outputs=[{"name": "score", "parameters":
                                                 {"binary_data": "yes"}}]),
         good_blob, None, "/outputs/0/parameters/binary_data"),
        ("an infinite value for XGBoost",
         tensor_head({"binary_data_size": 104}),
         struct.pack("<f", float("inf")) + good_blob[4:], None, "infinite"),
    ]
    for what, head, blob, headers, where in hostile:
        status, _, body = post(s, "/v2/models/credit/infer", head, blob,
                               None if headers is None else list(headers))
        text = body.decode("utf-8", "replace")
        expect(status == 400, "%s: status %d, expected 400: %s" % (what, status, text[:300]))
        try:
            message = json.loads(text)["error"]
        except (ValueError, KeyError):
            fail("%s: not a JSON error: %r" % (what, text[:300]))
            continue
        expect(where in message, "%s: %r does not name %r" % (what, message, where))

    # Nothing above changed the server: the good request is still exact.
    status, headers, body = post(s, "/v2/models/credit/infer", good_head, good_blob)
    expect(status == 200, "good request after the hostile ones: %d" % status)
    if status == 200:
        same_bits("after the hostile requests", outputs_of(status, headers, body, True)[1]["score"],
                  xgb.Booster(model_file=credit).inplace_predict(x, missing=np.nan), True)

finish("test_serve_binary")
