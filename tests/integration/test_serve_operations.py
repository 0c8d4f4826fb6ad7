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

from common import FIXTURES, expect, finish, tmpdir
from serve_util import Server, curl, infer_body, read_csv_text

XGB = os.path.join(FIXTURES, "xgboost", "credit_data_binary.model.json")
LGB = os.path.join(FIXTURES, "lightgbm", "credit_data_binary.model.txt")
names, rows = read_csv_text(os.path.join(FIXTURES, "xgboost",
                                         "credit_data_binary.input.csv"))
ONE = infer_body(rows[:1])


def slow_curl(server, body, seconds, results, key):
    """Posts body at a rate that takes about `seconds`; stores the answer."""
    rate = max(1, int(len(body) / seconds))
    results[key] = curl(server, "POST", "/v2/models/m/infer", body,
                        extra=["--limit-rate", str(rate)])


# ---- overload ----
with Server("--model", f"m={XGB}", "--max-in-flight", "4") as s:
    body = infer_body(rows[:30])
    results, threads = {}, []
    for i in range(4):
        t = threading.Thread(target=slow_curl, args=(s, body, 2.0, results, i))
        t.start()
        threads.append(t)
    time.sleep(0.7)  # the four slow uploads are in flight
    r = curl(s, "POST", "/v2/models/m/infer", ONE)
    expect(r.status == 503 and "overloaded" in r.body,
           f"request over --max-in-flight: {r}")
    expect(r.headers.get("retry-after") == "1", f"503 has Retry-After: {r.headers}")
    for t in threads:
        t.join()
    expect(all(results[i].status == 200 for i in range(4)),
           f"admitted slow requests: {[results[i].status for i in range(4)]}")
    r = curl(s, "POST", "/v2/models/m/infer", ONE)
    expect(r.status == 200, f"after the overload: {r}")
    metrics = curl(s, "GET", "/metrics").body
    expect('tandem_requests_rejected_total{reason="overload"} 1' in metrics,
           "rejected counter")
    expect('tandem_requests_total{model="m",version="1",code="503"} 1' in metrics,
           "503 counted for the model")
    print("ok overload: 503 + Retry-After past 4 in flight; admitted ones answered")

# Request bodies held at once stay under --max-buffered: of two slow
# 3 kB uploads with a 4 kB budget, one is answered 503.
with Server("--model", f"m={XGB}", "--max-buffered", "4k") as s:
    body = infer_body(rows[:72])
    expect(3000 < len(body) < 4096, f"body of {len(body)} bytes")
    results, threads = {}, []
    for i in range(2):
        t = threading.Thread(target=slow_curl, args=(s, body, 1.5, results, i))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    statuses = sorted(results[i].status for i in range(2))
    budget_ok = expect(statuses == [200, 503],
                       f"two uploads over the budget: {statuses}")
    expect(any("bytes held" in results[i].body for i in range(2)),
           f"503 says why: {[results[i].body for i in range(2)]}")
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
s = Server("--model", f"m={XGB}")
results = {}
body = infer_body(rows[:30])
keep_alive = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
keep_alive.request("POST", "/v2/models/m/infer", ONE)
first = keep_alive.getresponse()
first.read()
t = threading.Thread(target=slow_curl, args=(s, body, 1.5, results, "slow"))
t.start()
time.sleep(0.4)
started = time.time()
s.signal(signal.SIGTERM)
time.sleep(0.2)
refused = curl(s, "GET", "/v2/health/live")
# A request on a connection opened before SIGTERM is still answered, and
# the client is told to close the connection.
keep_alive.request("POST", "/v2/models/m/infer", ONE)
second = keep_alive.getresponse()
second.read()
expect(first.status == 200 and second.status == 200
       and second.getheader("Connection") == "close",
       f"keep-alive request while draining: {second.status} "
       f"{second.getheaders()}")
t.join()
rc = s.proc.wait(15)
elapsed = time.time() - started
expect(results["slow"].status == 200, f"request in flight at SIGTERM: {results['slow']}")
expect(refused.status == 0, f"a new connection after SIGTERM was answered: {refused}")
expect(rc == 0, f"exit status after drain: {rc}")
expect(elapsed < 5, f"drain took {elapsed:.1f} s")
print(f"ok drain: in-flight request answered, new connections refused, "
      f"exit 0 after {elapsed:.2f} s")

s = Server("--model", f"m={XGB}", "--drain-ms", "300")
results = {}
t = threading.Thread(target=slow_curl, args=(s, body, 4.0, results, "slow"))
t.start()
time.sleep(0.4)
started = time.time()
s.signal(signal.SIGTERM)
rc = s.proc.wait(15)
elapsed = time.time() - started
t.join()
expect(rc == 0 and elapsed < 2, f"bounded drain: exit {rc} after {elapsed:.1f} s")
expect("1 requests unanswered" in s.stderr(), f"drain log: {s.stderr()}")
print(f"ok bounded drain: exit 0 after {elapsed:.2f} s with --drain-ms 300")

finish("test_serve_operations")
