"""`tandem serve --access-log FILE` (docs/serving.md) against the real
binary, with curl and a raw socket as clients:

1. Seeded requests of every kind (infer that succeeds and fails, metadata,
   unknown paths, wrong methods, hostile targets sent on a raw socket:
   quotes, backslashes, control characters, invalid and valid UTF-8) each
   give exactly one line; every line is valid JSON (strict UTF-8), and its
   method, path, status, bytes, request_bytes, remote and request_id
   equal what the client sent and received (request_bytes: the body, or 0
   where the answer came from the request line and headers alone: the
   hostile targets, unknown paths, wrong methods). The expected path is computed
   here from the bytes sent: valid UTF-8 kept, each other byte U+FFFD.
   The lines appear while the server runs (the writer's timer; the test
   polls for them, no sleep).
2. SIGHUP after the file was moved away (logrotate's way): the server
   opens the path again; every request is in exactly one of the two
   files, the later ones in the new file.
3. SIGTERM right after a request: its line is in the file once the
   server has exited (the buffer is written at exit).
4. An access log that cannot be opened stops the server before it
   listens, naming the path.
"""
import json
import os
import random
import re
import signal
import socket
import subprocess
import time
import http.client

from common import ROOT, TANDEM, expect, finish, tmpdir, wait_until
from serve_util import Server, curl, infer_body

out = tmpdir()
MODEL = os.path.join(ROOT, "examples", "credit-risk", "model.json")
ROW = [9, 5, 60, 30, 1, 0, 1, 73, 129, 0, 0, 800, 846]
rng = random.Random(2020)


def expected_text(raw):
    """The log's rendering of raw bytes: valid UTF-8 sequences as they are,
    any other byte U+FFFD (the rule docs/serving.md states)."""
    text, i = [], 0
    while i < len(raw):
        b = raw[i]
        n = 1 if b < 0x80 else 2 if 0xC2 <= b <= 0xDF else \
            3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
        try:
            if n == 0:
                raise UnicodeDecodeError("utf-8", raw, i, i + 1, "lead")
            text.append(raw[i:i + n].decode("utf-8"))
            i += n
        except UnicodeDecodeError:
            text.append("\ufffd")
            i += 1
    return "".join(text)


def read_log(path):
    """The log's lines, each parsed as strict UTF-8 JSON (a failure is the
    line itself, kept to report)."""
    if not os.path.exists(path):
        return []
    lines = []
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n")[:-1]:
            try:
                lines.append(json.loads(raw.decode("utf-8")))
            except ValueError:
                lines.append(("not JSON", raw))
    return lines


def ids(lines):
    """The request ids of parsed lines (a line that is not JSON as itself)."""
    return [l.get("request_id") if isinstance(l, dict) else l for l in lines]


def raw_request(server, method, target, request_id=None, body=b""):
    """One request on a socket, bytes exactly as given. Returns (status,
    body bytes, local port)."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    head = method + b" " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if request_id is not None:
        head += b"X-Request-Id: " + request_id + b"\r\n"
    if body:
        head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    port = s.getsockname()[1]
    s.sendall(head + b"\r\n" + body)
    res = http.client.HTTPResponse(s)
    res.begin()
    data = res.read()
    s.close()
    return res.status, data, port


# Bytes a request target may carry on the wire: everything but space, CR,
# LF, NUL (the request line's own delimiters).
HOSTILE = [b'"', b"\\", b"'", b"%", b"?", b"&", b"=", b"\x7f", b"\t"] + \
    [bytes([c]) for c in range(1, 32) if c not in (9, 10, 13)] + \
    [b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80",
     b"\xf5\x80\x80\x80", "é".encode(), "😀".encode(), "日本".encode()]


def hostile_target():
    parts = [b"/v2/models/"]
    for _ in range(rng.randint(1, 12)):
        parts.append(rng.choice(HOSTILE + [b"a", b"b", b"/"]))
    return b"".join(parts)


def hostile_id(i):
    """A request id with quotes, backslashes and bytes that are not UTF-8
    (header values may hold any byte but CR and LF); unique by its prefix."""
    middle = b"".join(rng.choice([b'"', b"\\", b"\xff", "é".encode(), b"x", b"\x01"])
                      for _ in range(rng.randint(0, 6)))
    return b"id%03d-" % i + middle + b"z"


log_path = os.path.join(out, "access.log")
started_ms = time.time() * 1000
sent = []  # (request id as text expected, method, path expected, status, bytes, request bytes, port)
with Server("--model", "credit=" + MODEL, "--access-log", log_path) as server:
    # ---- 1. every kind of request ----
    good = infer_body([ROW, ROW])
    # (method, path, body, whether the answer needs the body read)
    kinds = [
        ("POST", "/v2/models/credit/infer", good, True),
        ("POST", "/v2/models/credit/infer", '{"inputs": [}', True),
        ("POST", "/v2/models/nope/infer", good, True),
        ("POST", "/v2/models/credit", good, False),
        ("POST", "/nothing/here", good, False),
        ("GET", "/v2/models/credit", None, False),
        ("GET", "/v2/models/credit/infer", None, False),
        ("GET", "/v2", None, False),
        ("GET", "/v2/health/ready?probe=1&x=%22y%22", None, False),
        ("GET", "/nothing/here", None, False),
    ]
    for i in range(40):
        if rng.random() < 0.5:
            method, path, body, reads = rng.choice(kinds)
            rid = "curl-%03d-\"q\"\\" % i
            r = curl(server, method, path, body,
                     headers=("X-Request-Id: " + rid,))
            body_bytes = len(body.encode()) if reads else 0
            sent.append((rid, method, path, r.status, len(r.body.encode()),
                         body_bytes, None))
        else:
            target = hostile_target()
            rid = hostile_id(i)
            method = rng.choice([b"GET", b"POST"])
            body = good.encode() if method == b"POST" else b""
            status, data, port = raw_request(server, method, target, rid, body)
            # Refused from the request line: the body is never read.
            expect(400 <= status < 500, f"{target!r}: status {status}")
            sent.append((expected_text(rid), method.decode(), expected_text(target),
                         status, len(data), 0, port))
    # The lines come while the server runs: the writer's timer flushes them.
    lines = wait_until(lambda: (lambda l: l if len(l) >= len(sent) else None)(
        read_log(log_path)), f"the access log has {len(sent)} lines") or \
        read_log(log_path)
    expect(len(lines) == len(sent), f"{len(lines)} lines for {len(sent)} requests")
    bad = [l for l in lines if isinstance(l, tuple)]
    expect(not bad, f"lines that are not strict UTF-8 JSON: {bad[:3]}")
    by_id = {}
    for line in lines:
        if isinstance(line, dict):
            by_id.setdefault(line.get("request_id"), []).append(line)
    ended_ms = time.time() * 1000
    mismatches = []
    for rid, method, path, status, nbytes, request_bytes, port in sent:
        got = by_id.get(rid, [])
        if len(got) != 1:
            mismatches.append(f"{rid!r}: {len(got)} lines")
            continue
        g = got[0]
        want = {"method": method, "path": path, "status": status,
                "bytes": nbytes, "request_bytes": request_bytes}
        for k, v in want.items():
            if g.get(k) != v:
                mismatches.append(f"{rid!r}: {k} {g.get(k)!r}, sent/received {v!r}")
        m = re.fullmatch(r"127\.0\.0\.1:(\d+)", g.get("remote", ""))
        if not m or (port is not None and int(m.group(1)) != port):
            mismatches.append(f"{rid!r}: remote {g.get('remote')!r}, port {port}")
        if not (isinstance(g.get("duration_us"), int) and g["duration_us"] >= 0):
            mismatches.append(f"{rid!r}: duration_us {g.get('duration_us')!r}")
        t = g.get("time", "")
        tm = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z", t)
        if not tm:
            mismatches.append(f"{rid!r}: time {t!r}")
        else:
            ms = (time.mktime(time.strptime(tm.group(1), "%Y-%m-%dT%H:%M:%S"))
                  - time.timezone) * 1000 + int(tm.group(2))
            if not started_ms - 1000 <= ms <= ended_ms + 1000:
                mismatches.append(f"{rid!r}: time {t} outside the test's run")
    expect(not mismatches, f"{len(mismatches)} lines differ from the requests: "
                           + "; ".join(mismatches[:6]))
    expect(len({l[3] for l in sent}) >= 4, f"statuses seen: {sorted({l[3] for l in sent})}")

    # ---- 2. logrotate: move, SIGHUP, the path is opened again ----
    os.rename(log_path, log_path + ".1")
    server.signal(signal.SIGHUP)
    wait_until(lambda: os.path.exists(log_path), "SIGHUP opens the path again")
    after = []
    for i in range(5):
        rid = "after-hup-%d" % i
        curl(server, "GET", "/v2", headers=("X-Request-Id: " + rid,))
        after.append(rid)
    wait_until(lambda: len(read_log(log_path)) >= len(after),
               "the requests after SIGHUP are in the new file")
    old, new = read_log(log_path + ".1"), read_log(log_path)
    expect(ids(new) == after,
           f"the new file holds the later requests: {new}")
    expect(len(old) == len(sent) and not set(ids(old)) & set(after),
           f"the moved file keeps the earlier {len(sent)} lines, and only them "
           f"({len(old)})")

    # ---- 3. SIGTERM right after a request: written at exit ----
    curl(server, "GET", "/v2", headers=("X-Request-Id: last-one",))
    rc = server.stop()
    expect(rc == 0, f"exit status {rc}")
final = read_log(log_path)
expect(ids(final) == after + ["last-one"],
       f"after exit the file has every request once: {ids(final)}")

# ---- 4. a log that cannot be opened ----
missing = os.path.join(out, "no-such-dir", "access.log")
proc = subprocess.run([TANDEM, "serve", "--model", "credit=" + MODEL,
                       "--listen", "127.0.0.1:0", "--access-log", missing],
                      capture_output=True, text=True, timeout=60)
expect(proc.returncode != 0 and missing in proc.stderr
       and "listening" not in proc.stderr,
       f"an unopenable log: exit {proc.returncode}, {proc.stderr!r}")

finish("test_access_log")
