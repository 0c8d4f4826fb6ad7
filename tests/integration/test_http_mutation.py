"""Raw-request mutation against a running `tandem serve` (docs/reliability.md,
"Raw-request mutation"). A seeded generator takes a corpus of requests (well-formed
infer, event, admin, metadata and chunked requests, and the framing and path
cases of test_hostile.py) and mutates each at the level of bytes and of HTTP:
the request line and path (percent-escapes, NUL, "..", long segments,
non-ASCII), the headers (duplicated, dropped, case, framing headers added or
changed, obs-fold, bare LF, control bytes), the framing (Content-Length off
by some, chunk sizes, truncation) and the body (bit flips, inserted and
deleted bytes, spliced JSON tokens). Each mutant goes on a fresh connection,
whose sending side is then shut, and the answer must be one or more
well-formed responses, or a close, within IDLE seconds; never a 500, a hang
or a crash. After each one the server must answer /v2/health/ready with 200
(and so still have its model and pipeline). The run lasts MUTATION_SECONDS
(60 in CI; 30 under the sanitizers), seed MUTATION_SEED (printed, to replay
a failure). At the end no request is left in flight and no byte held.
"""
import json
import os
import random
import re
import selectors
import socket
import time

from common import ROOT, TANDEM, expect, finish, tmpdir
from pipeline_util import fraud_pipeline
from raw_http import Malformed, exchange, parse_responses, request
from serve_util import Server

ASAN = "asan" in TANDEM
SECONDS = float(os.environ.get("MUTATION_SECONDS", "30" if ASAN else "60"))
SEED = int(os.environ.get("MUTATION_SEED", str(random.SystemRandom().randrange(1 << 30))))
IDLE = 10  # seconds to wait for an answer or a close after our side shut
MAX_PENDING = 64  # mutants waiting for their answer or close at once
print("test_http_mutation: seed %d, %.0f s" % (SEED, SECONDS), flush=True)

MODEL = os.path.join(ROOT, "examples", "credit-risk", "model.json")
out = tmpdir()
pipeline = fraud_pipeline(out, model_name="fraud-model.json")
token_file = os.path.join(out, "token")
with open(token_file, "w") as f:
    f.write("mutation-token\n")

INFER = "/v2/models/credit/infer"
EVENTS = "/v1/pipelines/fraud/events"
INFER_BODY = json.dumps({"id": "r1", "inputs": [{
    "name": "input", "shape": [2, 13], "datatype": "FP32",
    "data": [[9, 5, 60, 30, 1, 0, 1, 73, 129, 0, 0, 800, 846],
             [17, 5, 60, 58, 4, 0, 0, 48, 131, 0, 0, 1000, 1658]]}],
    "parameters": {"timeout": 5000000}}).encode()


def event(i):
    return {"txn": "t%d" % i, "card": "c%d" % (i % 7), "ts": 1_700_000_000 + i,
            "amount": 12.5 + i, "merchant": "m1", "mcc": "fuel"}


def chunked_body(body, pieces=3):
    step = max(1, len(body) // pieces)
    parts = [body[i:i + step] for i in range(0, len(body), step)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


CORPUS = [
    request("POST", INFER, INFER_BODY, ["Content-Type: application/json"]),
    request("POST", EVENTS, json.dumps(event(1)).encode()),
    request("POST", EVENTS + "?explain=features",
            json.dumps([event(i) for i in range(3)]).encode()),
    request("POST", INFER, chunked_body(INFER_BODY), ["Transfer-Encoding: chunked"],
            length=False),
    request("POST", EVENTS, chunked_body(json.dumps(event(2)).encode()),
            ["Transfer-Encoding: chunked"], length=False),
    request("GET", "/v2/models/credit"),
    request("GET", "/v2/models/credit/versions/1/ready"),
    request("GET", "/v2/health/live"),
    request("GET", "/v2"),
    request("GET", "/metrics"),
    request("GET", "/v1/pipelines/fraud"),
    request("POST", "/v2/repository/index"),
    request("POST", "/v2/repository/models/credit/load"),
    request("POST", "/v2/repository/models/credit/unload"),
    request("POST", "/v2/repository/models/credit/unload%00/infer"),
    request("POST", "/v2/repository/models/../load"),
    request("POST", INFER, b"hello", ["Content-Length: 5", "Content-Length: 50"],
            length=False),
    request("POST", INFER, b"0\r\n\r\n", ["Content-Length: 5",
                                          "Transfer-Encoding: chunked"], length=False),
    request("POST", INFER, b"0\r\n\r\n", ["Transfer-Encoding: gzip, chunked"],
            length=False),
    # Two requests on one connection.
    request("GET", "/v2/health/live") + request("POST", INFER, INFER_BODY),
]

PATH_PIECES = [b"%00", b"%2e", b"%2e%2e", b"..", b".", b"%2f", b"//", b"%", b"%zz",
               b"\x00", b"\xff", b"\xc3\xa9", b"?", b"#", b"?explain=features",
               b"?explain=x", b"?reset=1", b";", b" ", b"\t", b"A" * 300,
               b"credit", b"fraud", b"versions/1", b"versions/0", b"-", b"_"]
HEADER_LINES = [b"Content-Length: 0", b"Content-Length: 7", b"Content-Length: -1",
                b"Content-Length: 18446744073709551616", b"Content-Length: 1 2",
                b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity",
                b"Transfer-Encoding: chunked, gzip", b"Transfer-Encoding:chunked",
                b"Transfer-Encoding : chunked", b"Connection: close",
                b"Connection: keep-alive", b"Expect: 100-continue",
                b"Authorization: Bearer wrong", b"Authorization: Bearer",
                b"Inference-Header-Content-Length: 3", b"Host: other",
                b"X-Fold: a\r\n b", b"X-Ctl: \x01\x7f", b"X-Long: " + b"x" * 5000,
                b":", b"No-Colon", b"Content-Type: text/plain"]
JSON_TOKENS = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u0000",
               b"\\ud800", b"null", b"true", b"1e999", b"-0", b"NaN", b"1" * 400,
               b'"amount":1', b'"ts":"x"', b'"card":""', b'"txn":null',
               b'"shape":[99999999999,13]', b'"datatype":"UINT64"',
               b"18446744073709551615", b'"id":"\\u0000"', b"\xff", b"\x00"]


def split(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    return lines[0], lines[1:], body


def join(line, headers, body):
    return b"\r\n".join([line] + headers) + b"\r\n\r\n" + body


def mutate_path(rng, line):
    parts = line.split(b" ")
    if len(parts) < 3:
        return line + rng.choice(PATH_PIECES)
    path = parts[1]
    at = rng.randrange(len(path) + 1)
    kind = rng.randrange(3)
    if kind == 0:
        path = path[:at] + rng.choice(PATH_PIECES) + path[at:]
    elif kind == 1:
        segments = path.split(b"/")
        i = rng.randrange(len(segments))
        segments[i] = rng.choice(PATH_PIECES)
        path = b"/".join(segments)
    else:
        path = path[:at] + path[at + rng.randrange(1, 6):]
    parts[1] = path
    if rng.random() < 0.1:
        parts[0] = rng.choice([b"GET", b"PUT", b"DELETE", b"HEAD", b"OPTIONS",
                               b"post", b"POST ", b"CONNECT", b""])
    if rng.random() < 0.1:
        parts[-1] = rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"http/1.1",
                                b"HTTP/1.", b""])
    return b" ".join(parts)


def mutate_headers(rng, headers):
    headers = list(headers)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(5)
        if kind == 0 or not headers:
            headers.insert(rng.randrange(len(headers) + 1), rng.choice(HEADER_LINES))
        elif kind == 1:
            del headers[rng.randrange(len(headers))]
        elif kind == 2:
            headers.insert(rng.randrange(len(headers) + 1), rng.choice(headers))
        elif kind == 3:
            i = rng.randrange(len(headers))
            headers[i] = headers[i].swapcase() if rng.random() < 0.5 else headers[i].upper()
        else:
            i = rng.randrange(len(headers))
            m = re.match(rb"(content-length:\s*)(\d+)", headers[i], re.I)
            if m:
                n = max(0, int(m.group(2)) + rng.choice([-100, -7, -1, 1, 2, 50, 10 ** 6]))
                headers[i] = m.group(1) + str(n).encode()
            else:
                headers[i] = headers[i].replace(b": ", rng.choice([b":", b" : ", b":\t", b": \x00"]))
    return headers


def mutate_body(rng, body):
    body = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        at = rng.randrange(len(body) + 1)
        if kind == 0 and body:
            i = min(at, len(body) - 1)
            body[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            body[at:at] = rng.choice(JSON_TOKENS)
        elif kind == 2:
            del body[at:at + rng.randint(1, 20)]
        elif kind == 3:
            body = body[:at]
        else:
            m = list(re.finditer(rb"\r\n([0-9a-f]+)\r\n|^([0-9a-f]+)\r\n", bytes(body)))
            if m:
                g = rng.choice(m)
                which = 1 if g.group(1) else 2
                body[g.start(which):g.end(which)] = rng.choice(
                    [b"0", b"ffffffffffffffffff", b"zz", b"1", b"100", b"-1", b"1;x=y"])
    return bytes(body)


def mutant(rng):
    base = rng.choice(CORPUS)
    line, headers, body = split(base)
    for _ in range(rng.randint(1, 3)):
        what = rng.randrange(4)
        if what == 0:
            line = mutate_path(rng, line)
        elif what == 1:
            headers = mutate_headers(rng, headers)
        elif what == 2:
            body = mutate_body(rng, body)
        else:
            raw = join(line, headers, body)
            cut = rng.randrange(len(raw) + 1)
            kind = rng.randrange(3)
            if kind == 0:
                return raw[:cut]
            if kind == 1:
                return raw[:cut] + raw[cut:].replace(b"\r\n", b"\n", 1)
            return raw[:cut] + bytes([rng.randrange(256)]) + raw[cut:]
    return join(line, headers, body)


def expectations(raw):
    """What this harness knows about the first request in RAW, read here
    independently of the server (RFC 9112 sections 3 and 6.3), as the
    rules the answer must follow: "ambiguous" when a lenient reader could
    see two body lengths (two Content-Length, both headers, a
    Transfer-Encoding other than exactly chunked, a framing header name
    with whitespace before its colon); "bad path" for a '%', a NUL or a
    "."/".." segment in the target."""
    head, sep, _ = raw.partition(b"\r\n\r\n")
    if not sep:
        return set()
    # libmicrohttpd, like RFC 9112 allows, also ends a line at a bare LF.
    lines = [line[:-1] if line.endswith(b"\r") else line
             for line in head.split(b"\n")]
    if b"" in lines:  # an empty line ends the header section there
        lines = lines[:lines.index(b"")]
    if not lines:
        return set()
    rules = set()
    parts = lines[0].split(b" ")
    if len(parts) == 3 and parts[2] == b"HTTP/1.1":
        target = parts[1].split(b"?")[0]
        if (b"%" in target or b"\x00" in target or
                any(seg in (b".", b"..") for seg in target.split(b"/"))):
            rules.add("bad path")
    lengths, encodings = [], []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if (colon and not name) or line[:1] in (b" ", b"\t") or b"\x00" in name:
            # libmicrohttpd 0.9.75 reads the header lines after a line
            # with an empty name (or one a NUL cuts short), or a folded
            # line, but drops some of them
            # (docs/reliability.md, known limits): the framing it then
            # sees cannot be judged from the bytes here.
            return {"empty name or folded"}
        if not colon:
            continue
        key = name.strip().lower()
        if key in (b"content-length", b"transfer-encoding") and b"\x00" in value:
            # libmicrohttpd 0.9.75 ends a header value at a NUL and reports
            # only what came before it ("chunked\0" is read as "chunked"):
            # the server cannot see the byte (docs/reliability.md, known
            # limits), so the framing it reads is not judged from here.
            return {"empty name or folded"}
        if key == b"content-length":
            lengths.append(value.strip())
        elif key == b"transfer-encoding":
            encodings.append(value.strip().lower())
        if key in (b"content-length", b"transfer-encoding") and name != name.strip():
            rules.add("ambiguous")
    if (len(lengths) > 1 or len(encodings) > 1 or (lengths and encodings) or
            (encodings and encodings[0] != b"chunked")):
        rules.add("ambiguous")
    return rules


class Pending:
    """Mutants sent and not yet settled: each is settled when the server
    closes its connection, or at its deadline (IDLE seconds after it was
    sent), so that a connection the server keeps until its idle timeout
    does not hold up the next mutant."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.open = {}

    def send(self, port, number, raw):
        sock = socket.create_connection(("127.0.0.1", port), timeout=IDLE)
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before all was sent
        sock.setblocking(False)
        entry = {"number": number, "raw": raw, "data": b"",
                 "deadline": time.monotonic() + IDLE}
        self.open[sock] = entry
        self.selector.register(sock, selectors.EVENT_READ)

    def poll(self, timeout):
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            if chunk:
                self.open[sock]["data"] += chunk
            else:
                self.settle(sock, "closed")
        now = time.monotonic()
        for sock in [s for s, e in self.open.items() if e["deadline"] < now]:
            self.settle(sock, "open")

    def settle(self, sock, outcome):
        entry = self.open.pop(sock)
        self.selector.unregister(sock)
        sock.close()
        raw, number = entry["raw"], entry["number"]
        try:
            responses = parse_responses(entry["data"], head=raw.startswith(b"HEAD "))
        except Malformed as e:
            expect(False, "mutant %d: a malformed answer (%s) to %r"
                   % (number, e, raw[:300]))
            return
        if responses:
            counts["answered"] += 1
        elif outcome == "closed":
            counts["closed without an answer"] += 1
        for status, _, body in responses:
            statuses[status] = statuses.get(status, 0) + 1
            expect(status != 500, "mutant %d: 500 (%r) to %r"
                   % (number, body[:200], raw[:300]))
        rules = expectations(raw)
        if "empty name or folded" in rules:
            counts["with an empty header name or a folded line"] += 1
        if responses and "ambiguous" in rules:
            status, headers, _ = responses[0]
            expect((400 <= status < 500 or status in (501, 505)) and
                   len(responses) == 1 and
                   headers.get("connection", "").lower() == "close",
                   "mutant %d: ambiguous framing answered %r (one 4xx with "
                   "Connection: close expected): %r"
                   % (number, [(r[0], r[1].get("connection")) for r in responses],
                      raw[:300]))
        if responses and "bad path" in rules:
            expect(not 200 <= responses[0][0] < 300,
                   "mutant %d: a path with '%%', NUL or a dot segment answered "
                   "%d: %r" % (number, responses[0][0], raw[:300]))
        # A complete request may be answered and its connection kept open
        # (keep-alive); one that is not must be refused or closed.
        expect(responses or outcome == "closed",
               "mutant %d: no answer and no close in %d s: %r"
               % (number, IDLE, raw[:300]))


def ready(port):
    responses, _, _ = exchange("127.0.0.1", port, request("GET", "/v2/health/ready"),
                               expect=1)
    return responses[0][0] if responses else None


def metric(port, name):
    responses, _, _ = exchange("127.0.0.1", port, request("GET", "/metrics"), expect=1)
    m = re.search(rb"^" + name.encode() + rb" (\S+)$", responses[0][2], re.M)
    return float(m.group(1)) if m else None


rng = random.Random(SEED)
counts = {"mutants": 0, "answered": 0, "closed without an answer": 0,
          "with an empty header name or a folded line": 0}
statuses = {}  # both filled in by Pending.settle
with Server("--model", "credit=" + MODEL, pipeline, "--admin-token-file", token_file,
            "--max-body", "1M", "--idle-timeout", "3") as s:
    pending = Pending()
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        raw = mutant(rng)
        counts["mutants"] += 1
        pending.send(s.port, counts["mutants"], raw)
        pending.poll(0)
        while len(pending.open) >= MAX_PENDING:
            pending.poll(0.1)
        if s.proc.poll() is not None:
            expect(False, "the server exited (%s) after mutant %d: %r"
                   % (s.proc.returncode, counts["mutants"], raw[:300]))
            break
        r = ready(s.port)
        if not expect(r == 200, "ready answered %s after mutant %d: %r"
                      % (r, counts["mutants"], raw[:300])):
            break
    while pending.open:
        pending.poll(0.1)
    # Nothing left in flight or held once every mutant's connection is gone.
    settle = time.monotonic() + 30
    while time.monotonic() < settle:
        in_flight = metric(s.port, "tandem_requests_in_flight")
        held = metric(s.port, "tandem_request_bytes_buffered")
        if in_flight == 1 and held is not None and held < 4096:
            break  # the /metrics request itself
        time.sleep(0.05)
    expect(in_flight == 1 and held is not None and held < 4096,
           "after the run: %s requests in flight, %s bytes held" % (in_flight, held))

print("test_http_mutation: %d mutants (%s), statuses %s" % (
    counts["mutants"], ", ".join("%s %d" % kv for kv in counts.items()
                                 if kv[0] != "mutants"),
    dict(sorted(statuses.items()))))
finish("test_http_mutation")
