"""`tandem serve` under load and in operation, with real clients: curl for
slow uploads, wrk as the load generator.

- Overload: requests beyond --max-in-flight are answered 503 with
  Retry-After at once; the admitted ones still finish with 200.
- Reload under load: while wrk posts to two models, a new repository
  version is loaded by the API, SIGHUP reloads everything, a model file is
  replaced, and a broken version fails to load: wrk sees no failed request
  and no socket error, and the new versions serve afterwards.
- Drain: SIGTERM stops accepting, lets a slow request in flight finish,
  and exits 0; with a short --drain-ms it exits 0 at the bound.
"""
import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from common import FIXTURES, expect, finish, tmpdir, wait_until
from serve_util import (HeldRequest, Server, curl, in_flight, infer_body, metric,
                        read_csv_text)

XGB = os.path.join(FIXTURES, "xgboost", "credit_data_binary.model.json")
LGB = os.path.join(FIXTURES, "lightgbm", "credit_data_binary.model.txt")
names, rows = read_csv_text(os.path.join(FIXTURES, "xgboost",
                                         "credit_data_binary.input.csv"))
ONE = infer_body(rows[:1])


# ---- overload ----
with Server("--model", f"m={XGB}", "--max-in-flight", "4") as s:
    body = infer_body(rows[:30])
    held = [HeldRequest(s, "/v2/models/m/infer", body) for _ in range(4)]
    wait_until(lambda: in_flight(s) >= 4, "the four held requests are in flight")
    r = curl(s, "POST", "/v2/models/m/infer", ONE)
    expect(r.status == 503 and "overloaded" in r.body,
           f"request over --max-in-flight: {r}")
    expect(r.headers.get("retry-after") == "1", f"503 has Retry-After: {r.headers}")
    answers = [h.finish() for h in held]
    expect(all(a[0] == 200 for a in answers),
           f"admitted held requests: {[a[0] for a in answers]}")
    r = curl(s, "POST", "/v2/models/m/infer", ONE)
    expect(r.status == 200, f"after the overload: {r}")
    metrics = curl(s, "GET", "/metrics").body
    expect('tandem_requests_rejected_total{reason="overload"} 1' in metrics,
           "rejected counter")
    expect('tandem_requests_total{model="m",version="1",code="503"} 1' in metrics,
           "503 counted for the model")
    print("ok overload: 503 + Retry-After past 4 in flight; admitted ones answered")

# Request bodies held at once stay under --max-buffered: with a 4 kB
# budget and one 3 kB body held (all but its last byte read), a second
# 3 kB upload is answered 503; the first still completes.
with Server("--model", f"m={XGB}", "--max-buffered", "4k") as s:
    body = infer_body(rows[:72])
    expect(3000 < len(body) < 4096, f"body of {len(body)} bytes")
    first_held = HeldRequest(s, "/v2/models/m/infer", body)
    wait_until(lambda: (metric(s, "tandem_request_bytes_buffered") or 0) >= len(body) - 1,
               "the first body is buffered")
    second = HeldRequest(s, "/v2/models/m/infer", body).finish()
    first = first_held.finish()
    budget_ok = expect(first[0] == 200 and second[0] == 503,
                       f"two uploads over the budget: {first[0]}, {second[0]}")
    expect("bytes held" in second[2], f"503 says why: {second[2]}")
    metrics = curl(s, "GET", "/metrics").body
    expect("tandem_request_bytes_buffered 0" in metrics, "buffered gauge back to 0")
    if budget_ok:
        print("ok memory budget: the upload past --max-buffered gets 503")

# ---- reload under load ----
repo = tmpdir()
os.makedirs(os.path.join(repo, "r", "1"))
shutil.copy(XGB, os.path.join(repo, "r", "1", "model.json"))
single = os.path.join(tmpdir(), "single.json")
shutil.copy(XGB, single)
lua = os.path.join(tmpdir(), "alternate.lua")
with open(lua, "w") as f:
    f.write(f"""
local body = [==[{ONE}]==]
local paths = {{"/v2/models/r/infer", "/v2/models/s/infer"}}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, paths[n % 2 + 1], nil, body)
end
""")
with Server("--model-repo", repo, "--model", f"s={single}") as s:
    before = curl(s, "POST", "/v2/models/r/infer", ONE).json()
    wrk = subprocess.Popen(["wrk", "-t1", "-c8", "-d6s", "-s", lua, s.url],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    steps = []
    time.sleep(1.0)
    os.makedirs(os.path.join(repo, "r", "2"))
    shutil.copy(LGB, os.path.join(repo, "r", "2", "model.txt"))
    steps.append(("API load of version 2",
                  curl(s, "POST", "/v2/repository/models/r/load").status, 200))
    time.sleep(1.0)
    s.signal(signal.SIGHUP)  # everything again, unchanged
    time.sleep(1.0)
    tmp = single + ".tmp"
    shutil.copy(LGB, tmp)
    os.rename(tmp, single)  # replaced atomically, as deploy tools do
    s.signal(signal.SIGHUP)
    time.sleep(1.0)
    os.makedirs(os.path.join(repo, "r", "3"))
    with open(os.path.join(repo, "r", "3", "model.json"), "w") as f:
        f.write("{ not a model")
    steps.append(("API load of broken version 3",
                  curl(s, "POST", "/v2/repository/models/r/load").status, 400))
    out, _ = wrk.communicate(timeout=60)
    for what, got, want in steps:
        expect(got == want, f"{what}: {got}, expected {want}; server "
               f"{'running' if s.proc.poll() is None else 'exited ' + str(s.proc.poll())}, "
               f"its log:\n{s.stderr()[-3000:]}")
    total = [l for l in out.splitlines() if "requests in" in l]
    expect(bool(total), f"wrk output: {out}")
    clean = expect("Non-2xx" not in out and "Socket errors" not in out,
                   f"requests failed during reloads:\n{out}")
    after_r = curl(s, "POST", "/v2/models/r/infer", ONE).json()
    after_s = curl(s, "POST", "/v2/models/s/infer", ONE).json()
    expect(before["model_version"] == "1" and after_r["model_version"] == "2",
           f"versions before/after: {before['model_version']} {after_r['model_version']}")
    expect(after_r["outputs"][0]["datatype"] == "FP64"
           and after_s["outputs"][0]["datatype"] == "FP64",
           "the LightGBM versions serve after the reloads")
    log = s.stderr()
    expect('reloading model "r" failed' not in log and 'model "s" reloaded' in log,
           f"SIGHUP results in the log:\n{log}")
    if total and clean:
        print(f"ok reload under load: {total[0].strip()}, none failed; "
              "API load, SIGHUP, file replaced, broken version refused")

# ---- drain ----
# A request held in flight (its last body byte not yet sent) when SIGTERM
# arrives: the server stops taking connections, still answers a request on
# a connection opened before (with Connection: close), answers the held
# request once it completes, and exits 0. Every step waits for what it
# needs; none assumes how fast the machine is.
s = Server("--model", f"m={XGB}")
body = infer_body(rows[:30])
keep_alive = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
keep_alive.request("POST", "/v2/models/m/infer", ONE)
first = keep_alive.getresponse()
first.read()
held = HeldRequest(s, "/v2/models/m/infer", body)
wait_until(lambda: in_flight(s) >= 1, "the held request is in flight")
s.signal(signal.SIGTERM)
# New connections fail once the server drains (closed at once).
refused = wait_until(lambda: (lambda r: r if r.status == 0 else None)(
    curl(s, "GET", "/v2/health/live")), "new connections fail while draining")
keep_alive.request("POST", "/v2/models/m/infer", ONE)
second = keep_alive.getresponse()
second.read()
expect(first.status == 200 and second.status == 200
       and second.getheader("Connection") == "close",
       f"keep-alive request while draining: {second.status} "
       f"{second.getheaders()}")
expect(s.proc.poll() is None, "the server exited with a request in flight")
status, _, answer = held.finish()
rc = s.proc.wait(60)
expect(status == 200 and '"outputs"' in answer,
       f"request in flight at SIGTERM: {status} {answer[:200]}")
expect(rc == 0, f"exit status after drain: {rc}\n{s.stderr()[-2000:]}")
print("ok drain: in-flight request answered, new connections refused, exit 0")

# --drain-ms bounds the wait: a request that never completes is given up.
s = Server("--model", f"m={XGB}", "--drain-ms", "300")
held = HeldRequest(s, "/v2/models/m/infer", body)
wait_until(lambda: in_flight(s) >= 1, "the held request is in flight")
s.signal(signal.SIGTERM)
rc = s.proc.wait(60)
expect(rc == 0, f"bounded drain: exit {rc}")
expect("1 requests unanswered" in s.stderr(), f"drain log: {s.stderr()}")
held.sock.close()
print("ok bounded drain: exit 0 with --drain-ms 300 and a request unanswered")

# SIGTERM while clients connect and disconnect: libmicrohttpd's threads
# must not race the drain (MHD_quiesce_daemon could abort the process with
# "Failed to remove listen FD from epoll set"; about 1 in 40 such stops
# did before the drain stopped using it).
aborted = []
for cycle in range(40):
    s = Server("--model", f"m={XGB}")
    stop = threading.Event()

    def hammer(port=s.port):
        import socket
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                    c.recv(256)
            except OSError:
                pass

    clients = [threading.Thread(target=hammer) for _ in range(4)]
    for t in clients:
        t.start()
    rc = s.stop(timeout=60)
    stop.set()
    for t in clients:
        t.join()
    if rc != 0:
        aborted.append(f"cycle {cycle}: exit {rc}: {s.stderr()[-400:]}")
expect(not aborted, "SIGTERM under connection churn: " + "; ".join(aborted))
print(f"ok 40 stops under connection churn: {40 - len(aborted)} exited 0")

finish("test_serve_operations")
