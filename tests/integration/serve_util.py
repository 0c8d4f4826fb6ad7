"""Helpers for the `tandem serve` tests: start the real server on a free
port, talk to it with curl (a real, independent HTTP client), stop it with
SIGTERM and check that it exits 0."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

from common import ROOT, TANDEM, expect, tmpdir


class Server:
    """A running `tandem serve`; use as a context manager."""

    def __init__(self, *args, env=None):
        # In the test's own directory, removed when the test passes: a log in
        # $TMPDIR outlived every server not stopped through __exit__.
        self.log_path = os.path.join(tmpdir(), "serve.log")
        self.log = open(self.log_path, "w+")
        full_env = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen(
            [TANDEM, "serve", "--listen", "127.0.0.1:0", *map(str, args)],
            stdout=subprocess.DEVNULL, stderr=self.log, env=full_env)
        deadline = time.time() + 30
        self.address = None
        while time.time() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on http://(\S+)", self.stderr())
            if m:
                self.address = m.group(1)
                break
            time.sleep(0.02)
        if self.address is None:
            self.proc.kill()
            raise AssertionError("tandem serve did not start: " + self.stderr())
        self.url = "http://" + self.address
        self.port = int(self.address.rsplit(":", 1)[1])

    def stderr(self):
        with open(self.log_path) as f:
            return f.read()

    def signal(self, signo):
        self.proc.send_signal(signo)

    def stop(self, timeout=15):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        rc = self.stop()
        expect(rc == 0, f"tandem serve exited {rc} on SIGTERM; log:\n"
                        + self.stderr()[-2000:])
        self.log.close()
        os.unlink(self.log_path)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def curl(server, method, path, body=None, headers=(), extra=()):
    """One request with curl. `body` is bytes, str, or an object sent as
    JSON. Returns a Response; status 0 when curl could not connect."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    with tempfile.NamedTemporaryFile() as head, \
            tempfile.NamedTemporaryFile() as out:
        cmd = ["curl", "-sS", "-X", method, "-o", out.name, "-D", head.name,
               "-w", "%{http_code}", "--max-time", "60"]
        for h in headers:
            cmd += ["-H", h]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        cmd += list(extra)
        cmd.append(server.url + path if hasattr(server, "url") else server + path)
        proc = subprocess.run(cmd, input=body, capture_output=True)
        status = int(proc.stdout or b"0")
        hdrs = {}
        for line in open(head.name, encoding="latin-1").read().splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        return Response(status, hdrs, open(out.name, "rb").read().decode())


def infer_body(rows, datatype="FP32", **extra):
    """A v2 infer request: one [rows, features] tensor. Each value is a
    number, None (missing) or decimal text to send exactly as written."""
    cells = []
    for row in rows:
        cells.append("[" + ",".join(
            "null" if v is None else (v if isinstance(v, str) else repr(v))
            for v in row) + "]")
    tensor = (f'{{"name":"input","shape":[{len(rows)},{len(rows[0])}],'
              f'"datatype":"{datatype}","data":[{",".join(cells)}]}}')
    members = [f'"inputs":[{tensor}]'] + [
        f'{json.dumps(k)}:{json.dumps(v)}' for k, v in extra.items()]
    return "{" + ",".join(members) + "}"


def read_csv_text(path):
    """A CSV with a header as (names, rows of decimal text, None = empty)."""
    with open(path) as f:
        names = f.readline().rstrip("\n").split(",")
        rows = [[c if c != "" else None for c in line.rstrip("\n").split(",")]
                for line in f if line.strip()]
    return names, rows


class HeldRequest:
    """A request whose last body byte is held back: the server has read
    its headers (it is in flight) and waits for the rest until finish()
    sends it. Lets a test keep requests in flight for as long as it needs,
    whatever the speed of the machine."""

    def __init__(self, server, path, body):
        import socket
        if isinstance(body, str):
            body = body.encode()
        self.rest = body[-1:]
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "\r\n".encode() + body[:-1])

    def finish(self):
        """Sends the held byte; returns (status, headers, body text), status
        0 if the connection ended without an answer."""
        import http.client
        try:
            self.sock.sendall(self.rest)
            res = http.client.HTTPResponse(self.sock)
            res.begin()
            return res.status, dict(res.getheaders()), res.read().decode()
        except (OSError, http.client.HTTPException):
            return 0, {}, ""
        finally:
            self.sock.close()


def metric(server, name):
    """The value of an unlabelled metric from /metrics (None if absent)."""
    r = curl(server, "GET", "/metrics")
    for line in r.body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def in_flight(server):
    """Requests in flight, not counting the /metrics request asking."""
    value = metric(server, "tandem_requests_in_flight")
    return -1 if value is None else value - 1


def fraud_example_setup(directory, cards=30, extra=""):
    """The fraud example ready to serve with everything its /metrics can
    show: generated transactions, a recorded `batch --explain` run over
    the history (the drift reference) that materialized card_profile into
    DIRECTORY/tables. EXTRA (YAML, e.g. a schedule: section) is added to
    a copy of the example's pipeline. Returns (serve arguments,
    environment with the run registry, the live events CSV)."""
    example = os.path.join(ROOT, "examples", "fraud")
    pipeline = os.path.join(example, "pipeline.yaml")
    if extra:
        with open(pipeline) as f:
            text = f.read().replace(
                "model: {path: model.json}",
                "model: {path: %s}" % os.path.join(example, "model.json"))
        pipeline = os.path.join(directory, "pipeline.yaml")
        with open(pipeline, "w") as f:
            f.write(text + extra)
    prefix = os.path.join(directory, "txns")
    subprocess.run(["/usr/bin/python3",
                    os.path.join(ROOT, "examples", "fraud", "generate.py"),
                    "--cards", str(cards), "--split", "0.8", "--out", prefix],
                   check=True, capture_output=True)
    env = dict(os.environ, TANDEM_REGISTRY=os.path.join(directory, "runs.db"))
    store = os.path.join(directory, "tables")
    proc = subprocess.run(
        [TANDEM, "batch", pipeline, "--in", prefix + ".history.csv",
         "--out", os.path.join(directory, "reference.jsonl"), "--explain",
         "--materialize", "card_profile", "--store", store],
        capture_output=True, text=True, env=env)
    run = re.search(r"tandem batch: run ([0-9a-f]+)", proc.stderr)
    if proc.returncode != 0 or run is None:
        raise AssertionError("the fraud example's batch run failed: " + proc.stderr)
    args = [pipeline, "--store", store, "--drift-reference", run.group(1)]
    return args, env, prefix + ".live.csv"
