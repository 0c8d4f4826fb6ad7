"""The fast way a [rows, features] FP32 binary tensor reaches an XGBoost
model (src/serve/infer.c, take_float32: the bytes are copied as float32
values and checked for infinities two at a time), against the real
`tandem serve` on raw sockets, with requests built here from the binary
tensor data extension's description (struct and numpy only):

  1. An infinity (+inf and -inf) at every position of a 3 x 13 matrix (an
     odd count: both halves of a 64-bit word and the lone last value),
     and two infinities at once: each is a 400 naming the first one's
     element index and its feature, computed here, with the message the
     general way gives for the same values sent as FP64.
  2. Every NaN bit pattern class (quiet, signalling, negative, all ones),
     the largest finite values, subnormals and signed zeros are accepted:
     scores and margins equal xgboost's own inplace_predict bit for bit.
  3. The binary data starting at every offset modulo 8 after the JSON
     header (the copy may not assume alignment): the same exact scores.
  4. Framing of the body: chunked transfer coding, a body larger than the
     server's up-front body reservation, a body cut short by the client
     closing, a Content-Length shorter than the bytes sent (the rest is
     not taken as tensor data): exact answers or a clear 400, and the
     server still exact afterwards.
  5. Contributions from binary rows equal those from the same rows sent
     as JSON, and add up to xgboost's margins; an LightGBM model (FP64
     scores) given FP32 binary rows takes the general way and equals its
     JSON answer.
"""
import json
import os
import socket
import struct

import numpy as np
import xgboost as xgb

from common import FIXTURES, expect, fail, finish
from raw_http import exchange, parse_responses, request
from serve_util import Server, curl

XGB = os.path.join(FIXTURES, "xgboost")
LGB = os.path.join(FIXTURES, "lightgbm")
HEADER = "Inference-Header-Content-Length"
PATH = "/v2/models/credit/infer"
FEATURES = ["Seniority", "Home", "Time", "Age", "Marital", "Records", "Job",
            "Expenses", "Income", "Assets", "Debt", "Amount", "Price"]
rng = np.random.default_rng(20261207_11)
credit = os.path.join(XGB, "credit_data_binary.model.json")
lgb_credit = os.path.join(LGB, "credit_data_binary.model.txt")
booster = xgb.Booster(model_file=credit)


def head_for(shape, nbytes, pad=0, **extra):
    """The JSON header of one [rows, 13] FP32 binary tensor, with pad
    spaces at its end (moving where the binary data starts)."""
    tensor = {"name": "input", "datatype": "FP32", "shape": list(shape),
              "parameters": {"binary_data_size": nbytes}}
    body = dict({"inputs": [tensor], "parameters": {"binary_data_output": True}},
                **extra)
    return json.dumps(body).encode() + b" " * pad


def post(port, head, blob, extra=None, wait=30):
    headers = ["%s: %d" % (HEADER, len(head)),
               "Content-Type: application/octet-stream"] + (extra or [])
    responses, _, raw = exchange("127.0.0.1", port,
                                 request("POST", PATH, head + blob, headers),
                                 wait=wait, expect=1)
    if len(responses) != 1:
        fail("%d responses: %r" % (len(responses), raw[:300]))
        return 0, {}, b""
    return responses[0]


def binary_outputs(headers, body):
    """{name: float32 array} from a response in the extension's form."""
    n = int(headers[HEADER.lower()])
    pos, got = n, {}
    for out in json.loads(body[:n])["outputs"]:
        size = out["parameters"]["binary_data_size"]
        got[out["name"]] = np.frombuffer(body[pos:pos + size], dtype="<f4")
        pos += size
    expect(pos == len(body), "%d bytes after the outputs" % (len(body) - pos))
    return got


def same_bits(what, got, want):
    got = np.asarray(got, dtype=np.float32).ravel()
    want = np.asarray(want, dtype=np.float32).ravel()
    if got.shape != want.shape:
        fail("%s: %d values, expected %d" % (what, got.size, want.size))
        return
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    if not same.all():
        i = int(np.argwhere(~same)[0][0])
        fail("%s: %d of %d differ; first at %d: expected %r, got %r"
             % (what, int((~same).sum()), same.size, i, want[i], got[i]))


def exact(port, what, x, pad=0):
    """Sends x (float32 [rows, 13]) as binary; checks score and margin
    against xgboost."""
    blob = x.astype("<f4").tobytes()
    status, headers, body = post(port, head_for(x.shape, len(blob), pad), blob)
    if not expect(status == 200, "%s: %d %r" % (what, status, body[:300])):
        return
    got = binary_outputs(headers, body)
    same_bits(what + ": score", got["score"], booster.inplace_predict(x, missing=np.nan))
    same_bits(what + ": margin", got["margin"],
              booster.inplace_predict(x, missing=np.nan, predict_type="margin"))


def ordinary(rows):
    return rng.normal(0, 200, size=(rows, len(FEATURES))).astype(np.float32)


def error_of(status, body):
    try:
        return json.loads(body.decode("utf-8", "replace"))["error"]
    except (ValueError, KeyError):
        return "not a JSON error: %r" % body[:200]


with Server("--model", "credit=" + credit, "--model", "lgb=" + lgb_credit,
            "--threads", "1") as s:
    # 1. Infinities at every position, and the first of two is named.
    base = ordinary(3)
    for sign in (1, -1):
        for i in range(base.size):
            x = base.copy().ravel()
            x[i] = sign * np.inf
            x = x.reshape(base.shape)
            blob = x.astype("<f4").tobytes()
            status, _, body = post(s.port, head_for(x.shape, len(blob)), blob)
            message = error_of(status, body)
            want = 'feature "%s": binary element %d is infinite' % (
                FEATURES[i % len(FEATURES)], i)
            expect(status == 400 and want in message,
                   "inf x %d at %d: %d %r, expected a 400 with %r"
                   % (sign, i, status, message, want))
            # The same values as FP64 take the general way (a double per
            # value): its message must be the same word for word.
            wide = x.astype("<f8").tobytes()
            head = head_for(x.shape, len(wide)).replace(b'"FP32"', b'"FP64"')
            status64, _, body64 = post(s.port, head, wide)
            expect((status64, error_of(status64, body64)) == (status, message),
                   "inf x %d at %d: FP64 answers %d %r, FP32 %d %r"
                   % (sign, i, status64, error_of(status64, body64), status, message))
    for first, second in ((5, 30), (0, 38), (37, 38), (20, 21)):
        x = base.copy().ravel()
        x[second] = np.inf
        x[first] = -np.inf
        blob = x.astype("<f4").tobytes()
        status, _, body = post(s.port, head_for(base.shape, len(blob)), blob)
        want = "binary element %d is infinite" % first
        expect(status == 400 and want in error_of(status, body),
               "infinities at %d and %d: %d %r" % (first, second, status,
                                                   error_of(status, body)))

    # 2. NaN patterns and extreme finite values: missing, or taken as they are.
    specials = np.array([0x7fc00000, 0x7f800001, 0x7fbfffff, 0xffc00000,
                         0xffffffff, 0x7fffffff, 0xff800001, 0x7f7fffff,
                         0xff7fffff, 0x00000001, 0x80000001, 0x007fffff,
                         0x80000000, 0x00000000, 0x3f800000],
                        dtype=np.uint32).view(np.float32)
    for rows in (1, 2, 7, 64, 256):
        x = ordinary(rows)
        mask = rng.random(x.shape) < 0.4
        x[mask] = rng.choice(specials, size=int(mask.sum()))
        exact(s.port, "specials, %d rows" % rows, x)

    # 3. Every alignment of the binary data.
    x = ordinary(33)
    x[rng.random(x.shape) < 0.2] = np.nan
    for pad in range(8):
        exact(s.port, "binary data after %d bytes of padding" % pad, x, pad)

    # 4. Framing.
    # 4a. Chunked transfer coding, in uneven chunks.
    x = ordinary(100)
    blob = x.astype("<f4").tobytes()
    head = head_for(x.shape, len(blob))
    payload = head + blob
    chunks, pos = b"", 0
    for size in (1, 7, 4096, 3, 60000):
        piece = payload[pos:pos + size]
        if piece:
            chunks += b"%x\r\n%s\r\n" % (len(piece), piece)
        pos += size
    chunks += b"0\r\n\r\n"
    raw = request("POST", PATH, b"", ["%s: %d" % (HEADER, len(head)),
                                      "Transfer-Encoding: chunked"],
                  length=False) + chunks
    responses, _, text = exchange("127.0.0.1", s.port, raw, wait=30, expect=1)
    if expect(len(responses) == 1 and responses[0][0] == 200,
              "chunked: %r" % text[:300]):
        _, headers, body = responses[0]
        same_bits("chunked", binary_outputs(headers, body)["score"],
                  booster.inplace_predict(x, missing=np.nan))
    # 4b. A body well over the up-front reservation (64 KiB).
    exact(s.port, "3000 rows (156 KB)", ordinary(3000))
    # 4c. The client sends half the declared body and closes: nothing to
    # answer, and the server goes on.
    x = ordinary(50)
    blob = x.astype("<f4").tobytes()
    head = head_for(x.shape, len(blob))
    raw = request("POST", PATH, head + blob, ["%s: %d" % (HEADER, len(head))])
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(raw[:len(raw) - len(blob) // 2])
    sock.close()
    # 4d. Content-Length shorter than what is sent: the body is what the
    # length says (binary data short of binary_data_size: a 400 naming
    # it), and the bytes after it are read as the next request, which is
    # not one (a 400), never as tensor data.
    raw = request("POST", PATH, head + blob[:-8],
                  ["%s: %d" % (HEADER, len(head))]) + blob[-8:] + b"\r\n\r\n"
    responses, _, text = exchange("127.0.0.1", s.port, raw, wait=30, expect=2)
    expect(len(responses) >= 1 and responses[0][0] == 400 and
           "binary_data_size" in error_of(responses[0][0], responses[0][2]),
           "short Content-Length: %r" % text[:400])
    expect(all(r[0] >= 400 for r in responses),
           "short Content-Length: a later answer succeeded: %r" % text[:400])
    # Still exact after all of the above.
    exact(s.port, "after the framing cases", ordinary(9))

    # 5. Contributions, and a model with FP64 scores.
    x = ordinary(40)
    x[rng.random(x.shape) < 0.2] = np.nan
    blob = x.astype("<f4").tobytes()
    head = head_for(x.shape, len(blob), parameters={"binary_data_output": True,
                                                    "contribs": True})
    status, headers, body = post(s.port, head, blob)
    data = [None if np.isnan(v) else float(v) for v in x.ravel()]
    r = curl(s, "POST", PATH, {"inputs": [{"name": "input", "datatype": "FP32",
                                           "shape": list(x.shape), "data": data}],
                               "parameters": {"contribs": True}})
    if expect(status == 200 and r.status == 200,
              "contribs: %d %r / %r" % (status, body[:300], r)):
        got = binary_outputs(headers, body)["contribs"]
        want = {o["name"]: o["data"] for o in r.json()["outputs"]}["contribs"]
        same_bits("binary contribs vs JSON contribs", got, np.array(want).ravel())
        sums = got.reshape(40, -1).astype(np.float64).sum(axis=1)
        margin = booster.inplace_predict(x, missing=np.nan, predict_type="margin")
        expect(np.allclose(sums, margin, atol=1e-4),
               "contribs do not add up to xgboost's margin: %r vs %r"
               % (sums[:3], margin[:3]))
    x = ordinary(20)
    blob = x.astype("<f4").tobytes()
    status, headers, body = exchange(
        "127.0.0.1", s.port,
        request("POST", "/v2/models/lgb/infer", head_for(x.shape, len(blob)) + blob,
                ["%s: %d" % (HEADER, len(head_for(x.shape, len(blob))))]),
        wait=30, expect=1)[0][0]
    r = curl(s, "POST", "/v2/models/lgb/infer",
             {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                          "data": [float(v) for v in x.ravel()]}]})
    if expect(status == 200 and r.status == 200, "lgb FP32 binary: %d %r" % (status, body[:300])):
        n = int(headers[HEADER.lower()])
        out = json.loads(body[:n])["outputs"][0]
        got = np.frombuffer(body[n:n + out["parameters"]["binary_data_size"]], dtype="<f8")
        want = np.array({o["name"]: o["data"] for o in r.json()["outputs"]}["score"])
        expect(np.array_equal(got, want), "lgb FP32 binary vs JSON: %r vs %r"
               % (got[:3], want[:3]))

finish("test_serve_binary_matrix")
