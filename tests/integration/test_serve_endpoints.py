"""Every endpoint and every error status of `tandem serve`, through curl:
the v2 health, metadata and infer endpoints; the model repository
extension (index, load, unload) and who may call it; body and header
limits; deadlines (504); and /metrics, checked with promtool and scraped
by a real Prometheus server."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

from common import FIXTURES, expect, finish, tmpdir, wait_until
from serve_util import Server, curl, infer_body, read_csv_text

MODEL = os.path.join(FIXTURES, "xgboost", "credit_data_binary.model.json")
MULTI = os.path.join(FIXTURES, "xgboost", "synth_multiclass4.model.json")
names, rows = read_csv_text(os.path.join(FIXTURES, "xgboost",
                                         "credit_data_binary.input.csv"))
ONE = infer_body(rows[:1])
_, multi_rows = read_csv_text(os.path.join(FIXTURES, "xgboost",
                                           "synth_multiclass4.input.csv"))


def check(r, status, what, contains=None):
    ok = expect(r.status == status, f"{what}: expected {status}, got {r}")
    if ok and status >= 400 and r.body:
        try:
            err = r.json()["error"]
        except (ValueError, KeyError, TypeError):
            return expect(False, f"{what}: error body is not {{\"error\": ...}}: {r}")
        if contains is not None:
            ok = expect(contains in err, f"{what}: error {err!r} lacks {contains!r}")
    return ok


# A model repository: DIR/NAME/VERSION/model file.
repo = tmpdir()
for version, path in (("1", MODEL), ("2", MODEL)):
    os.makedirs(os.path.join(repo, "credit", version))
    shutil.copy(path, os.path.join(repo, "credit", version, "model.json"))
os.makedirs(os.path.join(repo, "multi", "3"))
shutil.copy(MULTI, os.path.join(repo, "multi", "3", "xgb.json"))

with Server("--model-repo", repo, "--model", f"single={MODEL}",
            "--max-body", "64k", "--max-header", "8k") as s:
    # Server metadata and health: 200 true, 4xx false, empty bodies.
    r = curl(s, "GET", "/v2")
    check(r, 200, "GET /v2")
    expect(r.json()["name"] == "tandem" and "extensions" in r.json(), f"/v2 {r}")
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/credit/ready",
                 "/v2/models/credit/versions/1/ready", "/v2/models/single/ready"):
        r = curl(s, "GET", path)
        expect(r.status == 200 and r.body == "", f"GET {path}: {r}")
    check(curl(s, "GET", "/v2/models/nope/ready"), 404, "ready of unknown model")
    check(curl(s, "GET", "/v2/models/credit/versions/9/ready"), 404,
          "ready of unknown version")

    # Model metadata: tensors, versions, features in order.
    meta = curl(s, "GET", "/v2/models/credit").json()
    expect(meta["name"] == "credit" and meta["versions"] == ["1", "2"],
           f"metadata versions {meta}")
    expect(meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 13]}],
           f"metadata inputs {meta['inputs']}")
    expect([o["name"] for o in meta["outputs"]] == ["score", "margin"],
           f"metadata outputs {meta['outputs']}")
    expect(meta["features"] == names, f"metadata features {meta.get('features')}")
    meta = curl(s, "GET", "/v2/models/multi/versions/3").json()
    expect(meta["versions"] == ["3"] and meta["outputs"][0]["shape"] == [-1, 4],
           f"multiclass metadata {meta}")
    check(curl(s, "GET", "/v2/models/nope"), 404, "metadata of unknown model",
          "unknown model")
    check(curl(s, "GET", "/v2/models/credit/versions/7"), 404,
          "metadata of unknown version", "no version")

    # Infer: newest version by default, any version by URL; id echoed.
    r = curl(s, "POST", "/v2/models/credit/infer", infer_body(rows[:3], id="a-1"))
    check(r, 200, "infer")
    expect(r.json()["model_version"] == "2" and r.json()["id"] == "a-1",
           f"default version / id: {r}")
    r = curl(s, "POST", "/v2/models/credit/versions/1/infer", ONE)
    check(r, 200, "infer version 1")
    expect(r.json()["model_version"] == "1", f"version by URL: {r}")
    r = curl(s, "POST", "/v2/models/multi/infer",
             infer_body(multi_rows[:2],
                        outputs=[{"name": "margin"}, {"name": "score"}]))
    o = r.json()["outputs"]
    expect([x["name"] for x in o] == ["score", "margin"] or
           [x["name"] for x in o] == ["margin", "score"], f"outputs {o}")
    expect(all(x["shape"] == [2, 4] for x in o), f"multiclass shapes {o}")

    # 400: what is wrong and where.
    bad = [
        ("not json", "{", "request:1:2"),
        ("not an object", "[1]", "must be a JSON object"),
        ("no inputs", "{}", "inputs"),
        ("wrong width", infer_body([rows[0][:12]]), "/inputs/0/shape"),
        ("short data", '{"inputs":[{"name":"x","shape":[1,13],"datatype":"FP32",'
                       '"data":[1,2]}]}', "/inputs/0/data"),
        ("string value", infer_body([rows[0][:12] + ['"x"']]), "/inputs/0/data/0/12"),
        ("bad datatype", '{"inputs":[{"name":"x","shape":[1,13],"datatype":"BYTES",'
                         '"data":[]}]}', "BYTES"),
        ("unknown feature", '{"inputs":[{"name":"Seniority","shape":[1],'
                            '"datatype":"FP32","data":[1]},{"name":"Bogus","shape":[1],'
                            '"datatype":"FP32","data":[1]}]}', "Bogus"),
        ("unknown output", infer_body(rows[:1], outputs=[{"name": "proba"}]), "proba"),
        ("id not a string", infer_body(rows[:1], id=5), "/id"),
        ("infinite for XGBoost", infer_body([["1e39"] + rows[0][1:]], "FP64"),
         "infinite"),
    ]
    for what, body, where in bad:
        check(curl(s, "POST", "/v2/models/credit/infer", body), 400, what, where)
    r = curl(s, "POST", "/v2/models/credit/infer", ONE,
             headers=["Inference-Header-Content-Length: ten"])
    check(r, 400, "binary tensor extension: a header that is not a number",
          "Inference-Header-Content-Length")

    # 404 and 405.
    check(curl(s, "POST", "/v2/models/nope/infer", ONE), 404, "unknown model")
    check(curl(s, "POST", "/v2/models/credit/versions/5/infer", ONE), 404,
          "unknown version")
    check(curl(s, "GET", "/v3/anything"), 404, "unknown path")
    r = curl(s, "GET", "/v2/models/credit/infer")
    check(r, 405, "GET infer")
    expect(r.headers.get("allow") == "POST", f"405 Allow header: {r.headers}")

    # Limits: 413 for a body over --max-body, 431 (or 413) for headers.
    big = infer_body(rows[:2000])
    expect(len(big) > 64 * 1024, "the big body is big")
    check(curl(s, "POST", "/v2/models/credit/infer", big), 413, "body over 64k")
    r = curl(s, "POST", "/v2/models/credit/infer", ONE,
             headers=["X-Padding: " + "p" * 9000])
    expect(r.status in (413, 431), f"header over 8k: {r}")
    # ... and the server still answers.
    check(curl(s, "POST", "/v2/models/credit/infer", ONE), 200, "after limits")

    # 504: a deadline that passed before scoring started. The body trickles
    # in (curl --limit-rate), slower than parameters.timeout allows.
    slow = infer_body(rows[:40], parameters={"timeout": 200000})
    r = curl(s, "POST", "/v2/models/credit/infer", slow,
             extra=["--limit-rate", f"{len(slow) // 2}"])
    check(r, 504, "deadline passed", "deadline")
    r = curl(s, "POST", "/v2/models/credit/infer",
             infer_body(rows[:40], parameters={"timeout": 30000000}),
             extra=["--limit-rate", f"{len(slow) // 2}"])
    check(r, 200, "slow body within its deadline")

    # Repository extension from loopback, no token configured.
    r = curl(s, "POST", "/v2/repository/index")
    check(r, 200, "index")
    states = {(m["name"], m.get("version")): m["state"] for m in r.json()}
    expect(states.get(("credit", "2")) == "READY" and ("multi", "3") in states,
           f"index {r.json()}")
    check(curl(s, "POST", "/v2/repository/models/multi/unload"), 200, "unload")
    check(curl(s, "POST", "/v2/models/multi/infer", infer_body(multi_rows[:1])), 503,
          "infer unloaded",
          "not loaded")
    r = curl(s, "GET", "/v2/health/ready")
    expect(r.status == 400 and r.body == "", f"server not ready with a model unloaded: {r}")
    r = curl(s, "GET", "/v2/models/multi/ready")
    expect(r.status == 400, f"model ready after unload: {r}")
    check(curl(s, "POST", "/v2/repository/models/multi/load"), 200, "load again")
    check(curl(s, "POST", "/v2/models/multi/infer", infer_body(multi_rows[:1])), 200,
          "infer reloaded")
    check(curl(s, "POST", "/v2/repository/models/nope/load"), 404, "load unknown",
          "nope")
    # A new model directory appears and is loaded by name.
    os.makedirs(os.path.join(repo, "late", "1"))
    shutil.copy(MODEL, os.path.join(repo, "late", "1", "model.json"))
    check(curl(s, "POST", "/v2/repository/models/late/load"), 200, "load new model")
    check(curl(s, "POST", "/v2/models/late/infer", ONE), 200, "infer new model")
    # A broken new version: 400, and version 2 keeps serving.
    os.makedirs(os.path.join(repo, "credit", "3"))
    with open(os.path.join(repo, "credit", "3", "model.json"), "w") as f:
        f.write('{"learner": ')
    r = curl(s, "POST", "/v2/repository/models/credit/load")
    check(r, 400, "load broken version", "credit/3/model.json")
    r = curl(s, "POST", "/v2/models/credit/infer", ONE)
    expect(r.status == 200 and r.json()["model_version"] == "2",
           f"old version serves after a failed load: {r}")
    r = curl(s, "POST", "/v2/repository/index")
    reasons = [m.get("reason", "") for m in r.json() if m["name"] == "credit"]
    expect(any("credit/3" in x for x in reasons), f"index shows why: {r.json()}")
    shutil.rmtree(os.path.join(repo, "credit", "3"))
    check(curl(s, "GET", "/v2/repository/index"), 405, "GET index")

    # Metrics: Prometheus text format, checked by promtool.
    r = curl(s, "GET", "/metrics")
    check(r, 200, "metrics")
    expect(r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
           f"metrics content type {r.headers}")
    text = r.body
    promtool = subprocess.run(["promtool", "check", "metrics"], input=text,
                              capture_output=True, text=True)
    expect(promtool.returncode == 0, f"promtool: {promtool.stdout}{promtool.stderr}")
    for needle in ('tandem_requests_total{model="credit",version="2",code="200"}',
                   'tandem_requests_total{model="credit",version="2",code="400"}',
                   'tandem_requests_total{model="credit",version="2",code="504"}',
                   'tandem_requests_total{model="credit",version="2",code="413"}',
                   'tandem_request_duration_seconds_bucket{model="credit",version="2",le="+Inf"}',
                   'tandem_request_queue_seconds_count{model="credit",version="1"}',
                   'tandem_request_rows_sum{model="credit",version="2"}',
                   "tandem_requests_in_flight ", "tandem_requests_timed_out_total 1",
                   'tandem_requests_rejected_total{reason="overload"} 0',
                   'tandem_model_info{model="single",version="1",sha256="',
                   'tandem_model_load_timestamp_seconds{model="credit",version="1"}',
                   'tandem_model_loads_total{model="credit",result="failed"} 1'):
        expect(needle in text, f"metrics lack {needle}")

    # A real Prometheus server scrapes it.
    if shutil.which("prometheus"):
        pdir = tmpdir()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            pport = sock.getsockname()[1]
        with open(os.path.join(pdir, "prometheus.yml"), "w") as f:
            f.write("global: {scrape_interval: 1s}\nscrape_configs:\n"
                    f"  - job_name: tandem\n    static_configs: [{{targets: ['{s.address}']}}]\n")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={pdir}/prometheus.yml",
             f"--storage.tsdb.path={pdir}/data", f"--web.listen-address=127.0.0.1:{pport}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found, health = None, None
        query = urllib.request.quote('tandem_requests_total{model="credit",code="200"}')
        for _ in range(600):  # polled until found; gives up after 5 minutes
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{pport}/api/v1/targets") as res:
                    targets = json.load(res)["data"]["activeTargets"]
                    health = targets[0]["health"] if targets else None
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{pport}/api/v1/query?query={query}") as res:
                    result = json.load(res)["data"]["result"]
                if health == "up" and result:
                    found = result
                    break
            except OSError:
                continue
        prom.terminate()
        prom.wait()
        shutil.rmtree(pdir, ignore_errors=True)
        expect(found is not None, f"Prometheus did not scrape tandem (target {health})")
        if found:
            print(f"ok Prometheus scraped: {found[0]['metric']} = {found[0]['value'][1]}")
    else:
        print("skip: no prometheus binary")

# Admin endpoints with a token: required from every client.
token_file = os.path.join(tmpdir(), "token")
with open(token_file, "w") as f:
    f.write("s3cret\n")
with Server("--model", f"m={MODEL}", "--admin-token-file", token_file) as s:
    check(curl(s, "POST", "/v2/repository/index"), 401, "index without token")
    r = curl(s, "POST", "/v2/repository/models/m/load",
             headers=["Authorization: Bearer wrong"])
    check(r, 401, "load with a wrong token")
    expect("bearer" in r.headers.get("www-authenticate", "").lower(),
           f"401 has WWW-Authenticate: {r.headers}")
    check(curl(s, "POST", "/v2/repository/models/m/load",
               headers=["Authorization: Bearer s3cret"]), 200, "load with the token")
    check(curl(s, "POST", "/v2/models/m/infer", ONE), 200, "infer needs no token")

# Without a token, admin endpoints answer loopback clients only.
def outside_address():
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.connect(("192.0.2.1", 9))
            ip = u.getsockname()[0]
            return None if ip.startswith("127.") else ip
    except OSError:
        return None


ip = outside_address()
if ip is None:
    print("skip: no non-loopback IPv4 address to test the loopback rule from")
else:
    srv = Server("--model", f"m={MODEL}")
    port = srv.port
    srv.stop()
    # Listen on every address, then call in from the outside address.
    srv = subprocess.Popen([os.environ.get("TANDEM", "build/tandem"), "serve",
                            "--model", f"m={MODEL}", "--listen", f"0.0.0.0:{port}"],
                           stderr=subprocess.DEVNULL)
    wait_until(lambda: curl(f"http://127.0.0.1:{port}", "GET", "/v2/health/live").status
               == 200 or srv.poll() is not None, "the server on 0.0.0.0 answers")
    outside = f"http://{ip}:{port}"
    check(curl(outside, "POST", "/v2/repository/index"), 403, "index from outside",
          "loopback")
    check(curl(outside, "POST", "/v2/models/m/infer", ONE), 200, "infer from outside")
    check(curl(f"http://127.0.0.1:{port}", "POST", "/v2/repository/index"), 200,
          "index from loopback")
    srv.send_signal(signal.SIGTERM)
    expect(srv.wait(15) == 0, "server bound to 0.0.0.0 exits 0")

# Bad usage and a bad model: exit 2 with a message naming the fault.
from common import run
p = run("serve", check=False)
expect(p.returncode == 2 and "--model" in p.stderr, f"no model: {p.returncode} {p.stderr}")
broken = os.path.join(tmpdir(), "broken.json")
with open(broken, "w") as f:
    f.write('{"learner": {')
p = run("serve", "--model", f"b={broken}", "--listen", "127.0.0.1:0", check=False)
expect(p.returncode == 2 and "broken.json" in p.stderr,
       f"broken model: {p.returncode} {p.stderr}")
p = run("serve", "--model", f"m={MODEL}", "--listen", "nowhere:80", check=False)
expect(p.returncode == 2 and "nowhere" in p.stderr, f"bad --listen: {p.stderr}")

finish("test_serve_endpoints")
