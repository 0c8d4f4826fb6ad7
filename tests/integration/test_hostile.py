"""`tandem serve` and the CLI against the hostile and careless inputs of
issue 17 (docs/reliability.md, "Hostile input: the cases of issue 17").
Each section is a regression test: it failed on the code before its fix.

1. Repository path escape: "..", "%2e%2e", "." and symbolic links never
   load anything from outside --model-repo, are answered 400 or 404, and
   leave the server ready.
2. Percent-decoding tricks in the path ("%00", "%2f"): 400, nothing done.
3. Request smuggling (RFC 9112 section 6.3): two Content-Length, a
   Content-Length beside chunked, a Transfer-Encoding other than exactly
   "chunked": 400 and the connection closed, so a request hidden in the
   body is never run.
4. Output onto input: `tandem score` and `tandem batch` refuse (exit 2)
   an --out, --rejects or manifest path that is the input, the model or
   the pipeline file, by any name (./, a hard link, a symbolic link), and
   leave every file as it was.
5. Key and id length: an entity key or event id of at most 256 bytes is
   served; one byte more (and 1 MB) is refused, 400 naming the field, in
   the server, and a reject in batch.
6. Answer amplification: an events array of more than 10,000 elements is
   413 with a short answer, one of 10,000 non-objects is answered in less
   than 100 bytes an element, and answers count in --max-buffered: while
   clients that never read hold answers past it, a new request is 503,
   and once they close, requests are served again.
7. The smaller ones: a JSON object with a repeated member is 400 naming
   it; "NaN" for a required number is missing (400) and a missing number
   is echoed as null; an infer id with \u0000 is echoed whole; UINT64's
   maximum is a UINT64; a 202-digit decimal is a number; a model path
   that never ends (a FIFO, /dev/zero) is refused at once; a model with
   two features of one name is refused.
8. Restarts of `tandem serve --state` without a snapshot round do not
   pile up 64 MiB log segments, and every acknowledged event survives.
"""
import glob
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time

from common import ROOT, TANDEM, expect, fail, finish, tmpdir
from pipeline_util import FRAUD_COLUMNS, fraud_events, fraud_pipeline, tandem, write_csv
from raw_http import exchange, request
from serve_util import Server

MODEL = os.path.join(ROOT, "examples", "credit-risk", "model.json")
out = tmpdir()
repo = os.path.join(out, "repo")
outside = os.path.join(out, "outside")
os.makedirs(os.path.join(repo, "credit", "1"))
shutil.copy(MODEL, os.path.join(repo, "credit", "1", "model.json"))
# Numbered version directories beside the repository: what ".." would
# reach. Its model is the same file, so only the names tell them apart.
os.makedirs(os.path.join(outside, "7"))
shutil.copy(MODEL, os.path.join(outside, "7", "model.json"))
os.symlink(outside, os.path.join(repo, "evil"))


def index(server):
    (status, _, body), = exchange("127.0.0.1", server.port,
                                  request("POST", "/v2/repository/index"),
                                  expect=1)[0]
    expect(status == 200, "index: %s" % status)
    return sorted((m["name"], m.get("version"), m["state"])
                  for m in json.loads(body))


def answer(server, raw):
    responses, closed, data = exchange("127.0.0.1", server.port, raw, expect=1)
    expect(len(responses) >= 1, "no answer to %r: %r" % (raw[:80], data[:200]))
    return responses[0][0] if responses else None, responses, closed


def ready(server, what):
    status, _, _ = answer(server, request("GET", "/v2/health/ready"))
    expect(status == 200, "%s: /v2/health/ready answered %s" % (what, status))
    status, _, _ = answer(server, request("GET", "/v2/models/credit/ready"))
    expect(status == 200, "%s: credit's ready answered %s" % (what, status))


with Server("--model-repo", repo) as s:
    before = index(s)
    expect(before == [("credit", "1", "READY")], "index at start: %r" % before)

    # ---- 1. repository path escape
    for path in ["/v2/repository/models/../load",
                 "/v2/repository/models/%2e%2e/load",
                 "/v2/repository/models/%2E%2E/load",
                 "/v2/repository/models/.%2e/load",
                 "/v2/repository/models/./load",
                 "/v2/repository/models/../unload",
                 "/v2/repository/models/%2e/load",
                 "/v2/repository/models/credit/../../load",
                 "/v2/models/../infer",
                 "/v2/models/./ready"]:
        method = "GET" if path.endswith("ready") else "POST"
        status, _, _ = answer(s, request(method, path))
        expect(status == 400, "%s %s answered %s, not 400" % (method, path, status))
        ready(s, path)
    status, _, _ = answer(s, request("GET", "/v2/models/../ready"))
    expect(status == 400, "GET /v2/models/../ready: %s" % status)
    # A hidden or over-long name is not a model name either.
    for name in [".hidden", "a" * 129]:
        status, _, _ = answer(s, request("POST", "/v2/repository/models/%s/load" % name))
        expect(status == 400, "load %r answered %s" % (name[:20], status))
    # Symbolic links out of the repository: a model directory, a version
    # directory and a model file, each made after the start.
    os.makedirs(os.path.join(repo, "linkver"))
    os.symlink(os.path.join(outside, "7"), os.path.join(repo, "linkver", "1"))
    os.makedirs(os.path.join(repo, "linkfile", "1"))
    os.symlink(os.path.join(outside, "7", "model.json"),
               os.path.join(repo, "linkfile", "1", "model.json"))
    for name in ["evil", "linkver", "linkfile"]:
        status, _, _ = answer(s, request("POST", "/v2/repository/models/%s/load" % name))
        expect(status in (400, 404), "load %s (a link out) answered %s" % (name, status))
        status, _, _ = answer(s, request("POST", "/v2/models/%s/infer" % name,
                                         b'{"inputs":[]}'))
        expect(status != 200, "infer on %s answered 200" % name)
    after = [m for m in index(s) if m[2] == "READY"]
    expect(after == [("credit", "1", "READY")], "ready models after: %r" % after)
    shutil.rmtree(os.path.join(repo, "linkver"))
    shutil.rmtree(os.path.join(repo, "linkfile"))

    # ---- 2. percent-decoding and NUL in the routed path
    for path in ["/v2/repository/models/credit/unload%00/infer",
                 "/v2/repository/models/credit/unload%00",
                 "/v2/repository/models/credit%2funload",
                 "/v2/repository/models/cred%69t/unload",
                 "/v2/repository%2fmodels/credit/unload"]:
        status, _, _ = answer(s, request("POST", path))
        expect(status == 400, "POST %s answered %s, not 400" % (path, status))
        ready(s, path)
    # A raw NUL byte in the request line: refused or closed, nothing done.
    responses, closed, _ = exchange(
        "127.0.0.1", s.port,
        b"POST /v2/repository/models/credit/unload\x00/infer HTTP/1.1\r\n"
        b"Host: t\r\nContent-Length: 0\r\n\r\n", expect=1)
    expect(closed or (responses and 400 <= responses[0][0] < 500),
           "a raw NUL in the path: %r" % responses)
    ready(s, "raw NUL")

    # ---- 3. request smuggling
    hidden = request("POST", "/v2/repository/models/credit/unload")
    # The control: two honest requests on one connection get two answers,
    # so the checks below would see a hidden one if it ran.
    responses, closed, _ = exchange(
        "127.0.0.1", s.port,
        request("GET", "/v2/health/live") + request("GET", "/v2/health/live"),
        expect=2)
    expect([r[0] for r in responses] == [200, 200],
           "two pipelined requests: %r" % responses)
    chunked_end = b"0\r\n\r\n"
    cases = [
        ("two different Content-Length",
         ["Content-Length: 5", "Content-Length: %d" % (5 + len(hidden))],
         b"hello" + hidden),
        ("two different Content-Length, the longer first",
         ["Content-Length: %d" % (5 + len(hidden)), "Content-Length: 5"],
         b"hello" + hidden),
        ("Content-Length and chunked",
         ["Content-Length: %d" % (len(chunked_end) + len(hidden)),
          "Transfer-Encoding: chunked"], chunked_end + hidden),
        ("chunked and Content-Length",
         ["Transfer-Encoding: chunked", "Content-Length: 3"],
         chunked_end + hidden),
        ("Transfer-Encoding: gzip, chunked",
         ["Transfer-Encoding: gzip, chunked"], chunked_end + hidden),
        ("Transfer-Encoding: identity", ["Transfer-Encoding: identity"],
         hidden),
        ("Transfer-Encoding: chunked, chunked",
         ["Transfer-Encoding: chunked, chunked"], chunked_end + hidden),
        ("two Transfer-Encoding headers",
         ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
         chunked_end + hidden),
        ("Content-Length: +5", ["Content-Length: +5"], b"hello" + hidden),
        # Found by test_http_mutation.py: libmicrohttpd takes the name with
        # its space, so the server saw no framing header and a proxy might.
        ("Transfer-Encoding : chunked (a space before the colon)",
         ["Transfer-Encoding : chunked"], chunked_end + hidden),
        ("Content-Length : N (a space before the colon)",
         ["Content-Length : %d" % (5 + len(hidden))], b"hello" + hidden),
    ]
    for name, headers, body in cases:
        raw = request("POST", "/v2/models/credit/infer", body, headers,
                      length=False)
        responses, closed, data = exchange("127.0.0.1", s.port, raw, wait=5)
        statuses = [r[0] for r in responses]
        expect(statuses == [400], "%s: answered %r (one 400 expected)"
               % (name, statuses))
        expect(closed, "%s: the connection was kept open" % name)
        ready(s, name)
    # A well-framed chunked request still works.
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 13],
                                   "datatype": "FP32",
                                   "data": [9, 5, 60, 30, 1, 0, 1, 73, 129,
                                            0, 0, 800, 846]}]}).encode()
    raw = request("POST", "/v2/models/credit/infer",
                  b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
                  ["Transfer-Encoding: Chunked"], length=False)
    status, _, _ = answer(s, raw)
    expect(status == 200, "a chunked infer: %s" % status)

# ---- 4. output onto input
def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


cli = os.path.join(out, "cli")
os.makedirs(cli)
applicants = os.path.join(cli, "a.csv")
shutil.copy(os.path.join(ROOT, "examples", "credit-risk", "applicants.csv"), applicants)
model = os.path.join(cli, "model.json")
shutil.copy(MODEL, model)
os.link(applicants, os.path.join(cli, "hard.csv"))
os.symlink(applicants, os.path.join(cli, "soft.csv"))
pipeline = fraud_pipeline(cli, model_name="fraud-model.json")
events = os.path.join(cli, "events.csv")
write_csv(events, FRAUD_COLUMNS, fraud_events(17, 200))
os.link(events, os.path.join(cli, "events-link.csv"))
# The refused commands name files relative to this directory ("./a.csv").
ABSOLUTE_TANDEM = os.path.abspath(TANDEM)


def tandem_in_cli(*args):
    return subprocess.run([ABSOLUTE_TANDEM, *map(str, args)], capture_output=True,
                          text=True, cwd=cli)


# The same commands with a fresh output succeed: what is refused below is
# refused for the path alone.
r = tandem("score", "--model", model, "--in", applicants, "--out",
           os.path.join(cli, "fresh.csv"), "--no-registry")
expect(r.returncode == 0, "score to a fresh file: %s" % r.stderr)
r = tandem("batch", pipeline, "--in", events, "--out",
           os.path.join(cli, "fresh-batch.csv"), "--no-registry")
expect(r.returncode == 0, "batch to a fresh file: %s" % r.stderr)
refused = [
    ("score", "--model", model, "--in", applicants, "--out", "./a.csv"),
    ("score", "--model", model, "--in", applicants, "--out", "a.csv"),
    ("score", "--model", model, "--in", applicants, "--out", "hard.csv"),
    ("score", "--model", model, "--in", applicants, "--out", "soft.csv"),
    ("score", "--model", model, "--in", applicants, "--out", "../cli/model.json"),
    ("score", "--model", model, "--in", "hard.csv", "--out", applicants),
    ("batch", pipeline, "--in", events, "--out", "./events.csv"),
    ("batch", pipeline, "--in", events, "--out", "events-link.csv"),
    ("batch", pipeline, "--in", events, "--out", "o.csv", "--rejects", events),
    ("batch", pipeline, "--in", events, "--out", "o.csv", "--rejects",
     "events-link.csv"),
    ("batch", pipeline, "--in", events, "--out", pipeline),
]
before = {name: digest(os.path.join(cli, name)) for name in os.listdir(cli)
          if os.path.isfile(os.path.join(cli, name))}
for args in refused:
    r = tandem_in_cli(*args, "--no-registry")
    expect(r.returncode == 2, "%s: exit %d, not 2: %s" % (" ".join(args),
                                                          r.returncode, r.stderr))
    expect("same file" in r.stderr, "%s: the error does not say why: %s"
           % (" ".join(args), r.stderr))
    after = {name: digest(os.path.join(cli, name)) for name in os.listdir(cli)
             if os.path.isfile(os.path.join(cli, name))}
    expect(after == before, "%s changed the files: %r" % (
        " ".join(args), sorted(set(after.items()) ^ set(before.items()))))

# ---- 5. key and id length limits
MAX_KEY = 256
t0 = 1_700_000_000  # epoch seconds (the field has no unit: ms)


def fraud_event(i, card, txn):
    return {"txn": txn, "card": card, "ts": t0 + i * 1000, "amount": 12.5,
            "merchant": "m1", "mcc": "fuel"}


with Server(pipeline) as s:
    cases = [("card", MAX_KEY, 200), ("card", MAX_KEY + 1, 400),
             ("card", 1 << 20, 400), ("txn", MAX_KEY, 200),
             ("txn", MAX_KEY + 1, 400), ("txn", 1 << 20, 400)]
    for i, (field, length, want) in enumerate(cases):
        event = fraud_event(i, "c1", "t%d" % i)
        event[field] = "k" * length
        status, responses, _ = answer(
            s, request("POST", "/v1/pipelines/fraud/events",
                       json.dumps(event).encode()))
        expect(status == want, "%s of %d bytes: %s, not %s (%r)"
               % (field, length, status, want, responses[0][2][:200]
                  if responses else b""))
        if want == 400 and responses:
            expect(field.encode() in responses[0][2],
                   "%s of %d bytes: the error does not name the field: %r"
                   % (field, length, responses[0][2][:200]))
rows = [{"txn": "t%d" % i, "card": "c1", "ts": "2026-01-01T00:00:%02dZ" % i,
         "amount": "1", "merchant": "m1", "mcc": "fuel"} for i in range(6)]
rows[1]["card"] = "k" * (MAX_KEY + 1)
rows[2]["txn"] = "k" * (MAX_KEY + 1)
rows[3]["card"] = "k" * MAX_KEY
long_events = os.path.join(cli, "long-keys.csv")
write_csv(long_events, FRAUD_COLUMNS, rows)
r = tandem("batch", pipeline, "--in", long_events, "--out",
           os.path.join(cli, "long-keys.out.csv"), "--no-registry")
expect(r.returncode == 0, "batch with long keys: %s" % r.stderr)
rejects_path = os.path.join(cli, "long-keys.out.csv.rejects.jsonl")
rejected = []
if os.path.exists(rejects_path):
    with open(rejects_path) as f:
        rejected = sorted(json.loads(line).get("line") for line in f)
expect(rejected == [3, 4], "batch rejects lines %r, not [3, 4]" % rejected)

# ---- 6. answer amplification
MAX_EVENTS = 10_000
with Server(pipeline, "--max-buffered", "8M") as s:
    status, responses, _ = answer(s, request(
        "POST", "/v1/pipelines/fraud/events",
        b"[" + b",".join([b"1"] * (MAX_EVENTS + 1)) + b"]"))
    expect(status == 413, "%d non-objects: %s, not 413" % (MAX_EVENTS + 1, status))
    expect(responses and len(responses[0][2]) < 1000,
           "the 413 answer is %d bytes" % (len(responses[0][2]) if responses else -1))
    status, responses, _ = answer(s, request(
        "POST", "/v1/pipelines/fraud/events",
        b"[" + b",".join([b"1"] * MAX_EVENTS) + b"]"))
    expect(status == 200, "%d non-objects: %s" % (MAX_EVENTS, status))
    if responses:
        answers = json.loads(responses[0][2])
        expect(len(answers) == MAX_EVENTS and all("error" in a for a in answers),
               "the answer to %d non-objects is not one error each" % MAX_EVENTS)
        expect(len(responses[0][2]) < 100 * MAX_EVENTS,
               "%d non-objects answered in %d bytes"
               % (MAX_EVENTS, len(responses[0][2])))
    # Clients that send and never read: each answer (10,000 results with
    # their features) is several MB, more than the sockets' buffers take.
    big = json.dumps([fraud_event(i, "c%d" % (i % 50), "b%d" % i)
                      for i in range(MAX_EVENTS)]).encode()
    heavy = request("POST", "/v1/pipelines/fraud/events?explain=features", big)
    probe = request("POST", "/v1/pipelines/fraud/events",
                    json.dumps(fraud_event(0, "probe", "probe")).encode())
    # Four holders hold about 4 MB of bodies (under --max-buffered 8M)
    # and, with their answers, more than 8 MB.
    holders = []
    for _ in range(4):
        h = socket.socket()
        h.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        h.connect(("127.0.0.1", s.port))
        h.sendall(heavy)
        holders.append(h)
    # The holders' answers take a while to make (more under ASan on a busy
    # machine): probe until the server refuses, up to a bound that only
    # stops a hang.
    # The budget is kept either way round: when the holders' answers are
    # made before the next request arrives (a fast build), the probe is
    # refused; when the first answer is held before the other holders'
    # bodies are read (a slow build, ASan), those holders are refused.
    def holder_refused():
        for h in holders:
            try:
                if h.recv(12, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"HTTP/1.1 503":
                    return True
            except (BlockingIOError, OSError):
                pass
        return False

    refused = False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not refused:
        status, _, _ = answer(s, probe)
        refused = status == 503 or holder_refused()
        expect(status in (200, 503), "a probe while answers are held: %s" % status)
        time.sleep(0.2)
    expect(refused, "4 clients hold unread answers of ~%d bytes each past "
           "--max-buffered 8M, and no request was refused" % (len(big) * 3))
    for h in holders:
        h.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, _, _ = answer(s, probe)
        if status == 200:
            break
        time.sleep(0.05)
    else:
        fail("requests are not served again after the holders closed: %s" % status)

# ---- 7. the smaller ones
REQUIRED_YAML = open(pipeline).read().replace("  amount: number",
                                              "  amount: {type: number, required: true}")
required_pipeline = os.path.join(cli, "required.yaml")
with open(required_pipeline, "w") as f:
    f.write(REQUIRED_YAML)
expect("required: true" in REQUIRED_YAML, "the required pipeline was not made")
CREDIT_ROW = [9, 5, 60, 30, 1, 0, 1, 73, 129, 0, 0, 800, 846]


def infer_raw(data_text, datatype="FP32", extra=""):
    return ('{"inputs":[{"name":"input","shape":[1,13],"datatype":"%s",'
            '"data":[%s]}]%s}' % (datatype, data_text, extra)).encode()


def score_of(responses):
    body = json.loads(responses[0][2])
    return [o["data"] for o in body["outputs"] if o["name"] == "score"][0]


with Server("--model", "credit=" + MODEL, required_pipeline) as s:
    # A repeated member: the event's amount, the infer's inputs.
    body = (b'{"txn":"d1","card":"c1","ts":1700000000,"amount":1,'
            b'"merchant":"m1","mcc":"fuel","amount":1000}')
    status, responses, _ = answer(s, request("POST", "/v1/pipelines/fraud/events", body))
    expect(status == 400 and responses and b"amount" in responses[0][2],
           "an event with amount twice: %s %r" % (status, responses[:1]))
    body = infer_raw(",".join(map(str, CREDIT_ROW)))
    twice = body[:-1] + b',"inputs":[]}'
    status, responses, _ = answer(s, request("POST", "/v2/models/credit/infer", twice))
    expect(status == 400 and responses and b"inputs" in responses[0][2],
           "an infer with inputs twice: %s %r" % (status, responses[:1]))
    # "NaN" is a missing number: refused when required, null when echoed.
    for amount in ['"NaN"', '"nan"', "null"]:
        body = ('{"txn":"n%s","card":"c2","ts":1700000000,"amount":%s,'
                '"merchant":"m1","mcc":"fuel"}' % (len(amount), amount)).encode()
        status, responses, _ = answer(s, request("POST", "/v1/pipelines/fraud/events",
                                                 body))
        expect(status == 400 and responses and b"missing" in responses[0][2],
               "a required amount %s: %s %r" % (amount, status, responses[:1]))
    # An id with a NUL comes back whole.
    sent_id = r"before\u0000after"  # JSON's escape, sent as six characters
    body = infer_raw(",".join(map(str, CREDIT_ROW)), extra=',"id":"%s"' % sent_id)
    status, responses, _ = answer(s, request("POST", "/v2/models/credit/infer", body))
    expect(status == 200 and json.loads(responses[0][2]).get("id") == "before\x00after",
           "an id with a NUL: %s %r" % (status, responses[:1]))
    # Integer types at their edges, as decimal text.
    edges = [("UINT64", "18446744073709551615", 200), ("UINT64", "18446744073709551616", 400),
             ("UINT64", "-1", 400), ("INT64", "9223372036854775807", 200),
             ("INT64", "-9223372036854775808", 200), ("INT64", "9223372036854775808", 400),
             ("UINT8", "255", 200), ("UINT8", "256", 400), ("INT8", "-128", 200),
             ("INT8", "-129", 400), ("UINT32", "4294967295", 200), ("UINT32", "1e3", 200),
             ("UINT32", "1.5", 400)]
    for datatype, value, want in edges:
        body = infer_raw(",".join([value] * 13), datatype)
        status, responses, _ = answer(s, request("POST", "/v2/models/credit/infer", body))
        expect(status == want, "%s %s: %s, not %s (%r)" % (datatype, value, status, want,
                                                        responses[0][2][:200]
                                                        if responses else b""))
    # A 202-digit decimal scores as the number it is: 9 followed by 200
    # zero decimals is 9.
    reference = None
    status, responses, _ = answer(s, request("POST", "/v2/models/credit/infer", infer_raw(
        ",".join(map(str, CREDIT_ROW)), "FP64")))
    if expect(status == 200, "the reference infer: %s" % status):
        reference = score_of(responses)
    long_nine = "9." + "0" * 200
    expect(len(long_nine) == 202, "the long decimal is %d characters" % len(long_nine))
    status, responses, _ = answer(s, request("POST", "/v2/models/credit/infer", infer_raw(
        ",".join([long_nine] + [str(v) for v in CREDIT_ROW[1:]]), "FP64")))
    expect(status == 200 and score_of(responses) == reference,
           "a 202-character 9: %s %r" % (status, responses[0][2][:200] if responses else b""))
    body = ('{"txn":"long","card":"c3","ts":1700000000,"amount":%s,'
            '"merchant":"m1","mcc":"fuel"}' % long_nine).encode()
    status, responses, _ = answer(s, request("POST", "/v1/pipelines/fraud/events", body))
    expect(status == 200 and json.loads(responses[0][2]).get("amount", 9) == 9,
           "an amount of 202 characters: %s %r" % (status, responses[:1]))

# A model file that never ends is refused at once, without reading it.
fifo = os.path.join(cli, "model.fifo")
os.mkfifo(fifo)
for path in [fifo, "/dev/zero"]:
    try:
        r = tandem("inspect", path, timeout=60)
        expect(r.returncode == 2 and "regular file" in r.stderr,
               "inspect %s: exit %d: %s" % (path, r.returncode, r.stderr))
    except subprocess.TimeoutExpired:
        fail("inspect %s did not return in 60 s" % path)
    try:
        r = tandem("score", "--model", path, "--in", applicants, "--out",
                   os.path.join(cli, "never.csv"), "--no-registry", timeout=60)
        expect(r.returncode == 2 and not os.path.exists(os.path.join(cli, "never.csv")),
               "score --model %s: exit %d" % (path, r.returncode))
    except subprocess.TimeoutExpired:
        fail("score --model %s did not return in 60 s" % path)
# Two features of one name.
with open(MODEL) as f:
    doubled = json.load(f)
names = doubled["learner"]["feature_names"]
names[1] = names[0]
doubled_path = os.path.join(cli, "doubled.json")
with open(doubled_path, "w") as f:
    json.dump(doubled, f)
r = tandem("inspect", doubled_path)
expect(r.returncode == 2 and names[0] in r.stderr and "more than one" in r.stderr,
       "a model with feature %s twice: exit %d: %s" % (names[0], r.returncode, r.stderr))

# ---- 8. log segments across restarts
state_dir = os.path.join(out, "state")
answered = {}
for start in range(5):
    with Server(pipeline, "--state", state_dir) as s:
        for txn, first in answered.items():
            status, responses, _ = answer(s, request(
                "POST", "/v1/pipelines/fraud/events",
                json.dumps(fraud_event(0, "w1", txn)).encode()))
            again = json.loads(responses[0][2]) if status == 200 else {}
            expect(again.get("duplicate") is True and again.get("score") == first,
                   "start %d: %s is not remembered: %s %r" % (start, txn, status, again))
        if start % 2 == 0:
            txn = "w%d" % start
            status, responses, _ = answer(s, request(
                "POST", "/v1/pipelines/fraud/events",
                json.dumps(fraud_event(start, "w1", txn)).encode()))
            if expect(status == 200, "start %d: %s" % (start, status)):
                answered[txn] = json.loads(responses[0][2]).get("score")
segments = glob.glob(os.path.join(state_dir, "*.wal"))
total = sum(os.path.getsize(p) for p in segments)
expect(total <= (64 << 20) + (1 << 20),
       "after 5 starts the log holds %d bytes in %d segments" % (total, len(segments)))

finish("test_hostile")
