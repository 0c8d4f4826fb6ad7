"""A request body's room is reserved from its Content-Length (up to 64 KiB)
before the bytes arrive, and that room is memory held: it must count in
--max-buffered at once, the bytes it covers must not be counted again,
and it must be given back however the request ends. Against the real
`tandem serve` with a 100 kB budget, watching its
tandem_request_bytes_buffered gauge:

  1. A 60 kB binary request sent whole is answered 200 with xgboost's
     scores: its reservation and its bytes are one charge, not two (a
     double count would hold 120 kB and refuse it with 503).
  2. A client that sends only the headers of a 60 kB request holds 60 kB
     of the budget at once (the gauge shows it before any body byte).
  3. With that held, a second 60 kB upload does not fit: no room is
     reserved for it, its bytes are counted as they come, and it is
     answered 503 ("bytes held"); the first, finished, is answered 200.
  4. A client that closes after its headers gives its reservation back:
     the gauge returns to 0 once everything has ended.
"""
import json
import os
import socket

import numpy as np
import xgboost as xgb

from common import FIXTURES, expect, finish, wait_until
from serve_util import HeldRequest, Server, metric

MODEL = os.path.join(FIXTURES, "xgboost", "credit_data_binary.model.json")
HEADER = "Inference-Header-Content-Length"
PATH = "/v2/models/m/infer"
rng = np.random.default_rng(2026_12_07)


def binary_body(rows):
    x = rng.normal(0, 100, size=(rows, 13)).astype("<f4")
    blob = x.tobytes()
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                   "shape": list(x.shape),
                                   "parameters": {"binary_data_size": len(blob)}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return x, head, head + blob


def raw_request(head, body, length=None):
    return ("POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            "%s: %d\r\nContent-Length: %d\r\n\r\n"
            % (PATH, HEADER, len(head), len(body) if length is None else length)).encode() + body


def buffered(s):
    return metric(s, "tandem_request_bytes_buffered") or 0


def http_answer(sock):
    import http.client
    res = http.client.HTTPResponse(sock)
    res.begin()
    return res.status, dict(res.getheaders()), res.read()


with Server("--model", "m=" + MODEL, "--max-buffered", "100000") as s:
    # 1. One 60 kB request, sent whole: one charge.
    x, head, body = binary_body(1150)
    expect(55000 < len(body) < 64 * 1024, "body of %d bytes" % len(body))
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
    sock.sendall(raw_request(head, body))
    status, headers, answer = http_answer(sock)
    sock.close()
    if expect(status == 200, "60 kB request under a 100 kB budget: %d %r"
              % (status, answer[:200])):
        n = int(headers[HEADER])
        out = json.loads(answer[:n])["outputs"][0]
        got = np.frombuffer(answer[n:n + out["parameters"]["binary_data_size"]], dtype="<f4")
        want = xgb.Booster(model_file=MODEL).inplace_predict(x, missing=np.nan)
        expect(np.array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32)),
               "60 kB request: scores differ from xgboost")
    wait_until(lambda: buffered(s) == 0, "the gauge is back to 0 after request 1")

    # 2. Headers only: the reservation is held at once.
    _, head_c, body_c = binary_body(1150)
    closer = socket.create_connection(("127.0.0.1", s.port), timeout=60)
    closer.sendall(raw_request(head_c, b"", length=len(body_c)))
    wait_until(lambda: buffered(s) >= len(body_c),
               "the headers-only request's reservation shows in the gauge")
    expect(buffered(s) <= 100000, "gauge %d over the budget" % buffered(s))

    # 3. A second 60 kB upload does not fit beside it.
    _, head_b, body_b = binary_body(1150)
    second = HeldRequest(s, PATH, body_b)
    second_answer = second.finish()
    expect(second_answer[0] == 503 and "bytes held" in second_answer[2],
           "an upload past the budget: %r" % ((second_answer[0], second_answer[2]),))

    # 4. The headers-only client goes away: everything is given back.
    closer.close()
    wait_until(lambda: buffered(s) == 0,
               "the gauge is back to 0 after the client closed (it reads %d)"
               % buffered(s))

finish("test_serve_body_reserve")
