#!/usr/bin/env python3
"""`tandem serve` over HTTP against nginx returning a fixed body of the same
size, in the same run with the same wrk flags (and, when FastAPI is
installed, a FastAPI + XGBoost server).

  bench_serve.py [--seconds S] [--connections 8,32] [--wrk-threads T]
                 [--models medium,large] [--rows 1,16,256] [--binary-rows 256]
                 [--server-threads N] [--no-paced] [--no-fastapi]
                 [--json build/bench/serve.json] [--quick]

For every model (medium: 100 trees of depth 6; large: 500 trees of depth
8; from bench/make_models.py, trained into build/bench/models when
missing) and rows per request R, the request is an Open Inference
Protocol (KServe v2) infer body holding the first R rows of the model's
sample (bench/make_models.py's data; null for missing):

  POST /v2/models/NAME/infer
  {"inputs":[{"name":"input","shape":[R,32],"datatype":"FP32","data":[...]}]}

With --binary-rows, the same rows also go in the binary tensor data
extension's form (Triton's: an Inference-Header-Content-Length header,
the JSON header with parameters.binary_data_size, then the rows as
little-endian float32, NaN for missing) asking for binary outputs
(parameters.binary_data_output); those cases are labelled "bin". nginx
returns the captured binary answer from a file, with the same
Inference-Header-Content-Length header.

One `tandem serve` process serves both models (--threads: one per CPU by
default). Each case's request is sent once first: the answer must be 200
with R scores, and its body becomes the fixed body nginx returns for that
case (nginx: worker_processes = tandem's threads, access_log off, config
from bench/serve_nginx.conf.in). Then, for each connection count C, the
same command runs against each server in turn:

  wrk -tT -cC -dSs --latency --timeout 30s -s bench/serve_post.lua URL

(wrk's default 2 s timeout counted slow 256-row answers on a busy machine
as errors and stopped the run.)

and the table shows requests/s, the ratio tandem/nginx, p50 and p99 for
both, the server's CPU time per request (user + system of the server's
processes over the run, from /proc) and the CPU wrk used. wrk errors of
any kind (a non-2xx status included) fail the benchmark.

wrk is closed-loop: each connection sends its next request when the
previous answer arrives, so p99 grows with C. Paced runs therefore also
offer each 1-row case a set load, by default 60% and 30% of nginx's best
closed-loop requests/s (--paced), with wrk's delay() hook: every
connection waits 1 ms after each answer, and C is the number of
connections that makes the target rate against nginx (found with a short
probe run); both servers then run with that C. A paced point is met when
tandem serves at least 95% of the target with p99 <= 1 ms. This is still
wrk's closed loop underneath (a slow answer delays that connection's next
request), not a true fixed-rate generator: read the achieved req/s beside
the target. wrk and the servers share the machine's CPUs.

--quick is a smoke run: 1 second per point, medium only, rows 1 and 16,
C = 8. Results go to --json (default build/bench/serve.json).
"""
import argparse
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
# TANDEM=path measures another build (a base commit) with the same script.
TANDEM = os.environ.get("TANDEM", os.path.join(ROOT, "build", "tandem"))
MODELS = os.path.join(ROOT, "build", "bench", "models")
LUA = os.path.join(ROOT, "bench", "serve_post.lua")
NGINX_CONF = os.path.join(ROOT, "bench", "serve_nginx.conf.in")
FASTAPI_DIR = os.path.join(ROOT, "bench")
PACE_MS = 1


def fail(message):
    sys.exit("bench_serve: " + message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body, headers=None, timeout=30, with_headers=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body,
                     headers or {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if with_headers:
            return resp.status, resp.read(), dict(resp.getheaders())
        return resp.status, resp.read()
    finally:
        conn.close()


def get(port, path, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def descendants(pid):
    """pid and every process below it (nginx workers, uvicorn workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as fp:
                    stat = fp.read()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pid):
    """User + system CPU ticks of every thread of pid and its descendants."""
    ticks = {}
    for p in descendants(pid):
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/stat" % (p, t)) as fp:
                    fields = fp.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks[(p, t)] = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def cpu_use(before, after):
    """Server CPU seconds between two cpu_ticks(), and the busiest thread's
    (or worker process's) share of it."""
    deltas = [v - before.get(k, 0) for k, v in after.items()]
    total = sum(deltas)
    share = max(deltas) / total if total else 0.0
    return total / os.sysconf("SC_CLK_TCK"), share


def busy_ticks():
    """Machine-wide user + nice + system ticks so far."""
    with open("/proc/stat") as fp:
        f = fp.readline().split()
    return int(f[1]) + int(f[2]) + int(f[3])


class Server:
    def __init__(self, name, proc, port, log):
        self.name, self.proc, self.port, self.log = name, proc, port, log

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


def start_tandem(models, threads, tmp):
    log = os.path.join(tmp, "tandem.log")
    args = [TANDEM, "serve", "--listen", "127.0.0.1:0"]
    for name in models:
        args += ["--model", "%s=%s" % (name, os.path.join(MODELS, name + ".model.json"))]
    if threads:
        args += ["--threads", str(threads)]
    with open(log, "w") as fp:
        proc = subprocess.Popen(args, stdout=fp, stderr=fp)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(log) as fp:
            m = re.search(r"listening on http://[^\s:]+:(\d+)", fp.read())
        if m:
            return Server("tandem", proc, int(m.group(1)), log)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    with open(log) as fp:
        fail("tandem serve did not start:\n" + fp.read())


def nginx_quote(text):
    if "$" in text:
        fail("a response body holds '$', which nginx would expand")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def nginx_file_location(case, prefix):
    """A binary answer cannot be a configuration string: nginx's static
    module sends it from a file. It answers a POST to a file with 405, so
    the 405 is turned into an internal GET of the same file (error_page
    with =200), which then gets the 200 and the header."""
    path = os.path.join(prefix, "%s-%d.bin" % (case["model"], case["rows"]))
    with open(path, "wb") as fp:
        fp.write(case["body_out"])
    # nginx's workers run as another user when started as root: the file
    # and the (mkdtemp, 0700) directories above it must be readable.
    os.chmod(path, 0o644)
    for d in (prefix, os.path.dirname(prefix)):
        os.chmod(d, 0o755)
    return "\n".join([
        "        location = %s {" % case["path"],
        "            default_type application/octet-stream;",
        "            alias %s;" % path,
        "            etag off;",
        "            add_header Inference-Header-Content-Length %d always;"
        % case["inference_header_out"],
        "            error_page 405 =200 $uri;",
        "        }"])


def nginx_location(path, body):
    lines = ["        location = %s {" % path,
             "            default_type application/json;"]
    piece = 2000  # nginx takes a configuration token of at most ~4 KB
    if len(body) <= piece:
        lines.append("            return 200 %s;" % nginx_quote(body))
    else:
        names = []
        for i in range(0, len(body), piece):
            names.append("$b%d" % len(names))
            lines.append("            set %s %s;" % (names[-1],
                                                    nginx_quote(body[i:i + piece])))
        lines.append("            return 200 '%s';" % "".join(names))
    lines.append("        }")
    return "\n".join(lines)


def start_nginx(cases, workers, tmp):
    """One nginx; case i listens on its own port, answering case i's body."""
    prefix = os.path.join(tmp, "nginx")
    os.makedirs(prefix)
    servers = []
    for case in cases:
        case["nginx_port"] = free_port()
        location = (nginx_file_location(case, prefix) if case["binary"]
                    else nginx_location(case["path"], case["body_out"]))
        servers.append("    server {\n        listen 127.0.0.1:%d;\n%s\n    }" % (
            case["nginx_port"], location))
    with open(NGINX_CONF) as fp:
        conf = fp.read()
    conf = (conf.replace("@DIR@", prefix).replace("@WORKERS@", str(workers))
            .replace("@SERVERS@", "\n".join(servers)))
    conf_path = os.path.join(prefix, "nginx.conf")
    with open(conf_path, "w") as fp:
        fp.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    log = os.path.join(prefix, "error.log")
    base = [nginx, "-p", prefix, "-c", conf_path, "-e", log]
    check = subprocess.run(base + ["-t"], capture_output=True, text=True)
    if check.returncode != 0:
        fail("nginx -t failed:\n" + check.stderr)
    proc = subprocess.Popen(base, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    server = Server("nginx", proc, None, log)
    for case in cases:
        deadline = time.monotonic() + 10
        while True:
            try:
                status, body = post(case["nginx_port"], case["path"], case["body_in"],
                                    case.get("headers"))
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    fail("nginx did not start; see " + log)
                time.sleep(0.05)
        if status != 200 or (body if case["binary"] else body.decode()) != case["body_out"]:
            fail("nginx answers %s for %s with another body" % (status, case["label"]))
    return server


def start_fastapi(models, workers, tmp):
    port = free_port()
    log = os.path.join(tmp, "fastapi.log")
    env = dict(os.environ)
    env["BENCH_FASTAPI_MODELS"] = ",".join(
        "%s=%s" % (n, os.path.join(MODELS, n + ".model.json")) for n in models)
    env["OMP_NUM_THREADS"] = "1"
    args = [sys.executable, "-m", "uvicorn", "--app-dir", FASTAPI_DIR,
            "serve_fastapi:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning",
            "--no-access-log"]
    with open(log, "w") as fp:
        proc = subprocess.Popen(args, stdout=fp, stderr=fp, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            # Every worker must be up: ask a few times, expect all ready.
            if all(get(port, "/v2/health/ready")[0] == 200 for _ in range(8)):
                time.sleep(1)
                return Server("fastapi", proc, port, log)
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    with open(log) as fp:
        fail("the FastAPI server did not start:\n" + fp.read())


def read_rows(name, count):
    rows = []
    with open(os.path.join(MODELS, name + ".input.csv")) as fp:
        fp.readline()
        for line in fp:
            rows.append([None if v == "" else float(v)
                         for v in line.rstrip("\n").split(",")])
            if len(rows) == count:
                break
    return rows


def request_body(rows):
    data = [v for row in rows for v in row]
    return json.dumps({"inputs": [{"name": "input",
                                   "shape": [len(rows), len(rows[0])],
                                   "datatype": "FP32", "data": data}]},
                      separators=(",", ":"))


def binary_request(rows):
    """The rows in the binary tensor data extension's form: (body, JSON
    header bytes)."""
    x = np.array([[np.nan if v is None else v for v in row] for row in rows],
                 dtype="<f4")
    head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape),
                                   "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}},
                      separators=(",", ":")).encode()
    return head + x.tobytes(), len(head)


def binary_scores(body, header):
    """The score output of a binary answer whose JSON header has `header`
    bytes (outputs' binary data follow in order)."""
    pos = header
    for out in json.loads(body[:header])["outputs"]:
        size = out["parameters"]["binary_data_size"]
        if out["name"] == "score":
            return np.frombuffer(body[pos:pos + size], dtype="<f4")
        pos += size
    fail("no score output in " + repr(body[:200]))


def scores(body):
    for out in json.loads(body)["outputs"]:
        if out["name"] == "score":
            return np.array([np.nan if v is None else v for v in out["data"]],
                            dtype=np.float32)
    fail("no score output in " + body[:200])


def wrk(args, port, case, connections, seconds, delay_ms=0):
    """One wrk run; returns its summary and the server's CPU time."""
    url = "http://127.0.0.1:%d%s" % (port, case["path"])
    flags = ["-t%d" % args.wrk_threads, "-c%d" % connections,
             "-d%ds" % seconds, "--latency", "--timeout", "30s", "-s", LUA]
    env = dict(os.environ, WRK_BODY=case["body_file"])
    if case["binary"]:
        env["WRK_INFERENCE_HEADER"] = str(case["inference_header_in"])
    if delay_ms:
        env["WRK_DELAY_MS"] = str(delay_ms)
    return flags, url, env


def run_point(args, server, case, connections, seconds, delay_ms=0):
    port = server.port if server.name != "nginx" else case["nginx_port"]
    flags, url, env = wrk(args, port, case, connections, seconds, delay_ms)
    cpu0 = cpu_ticks(server.proc.pid)
    busy0 = busy_ticks()
    start = time.monotonic()
    proc = subprocess.Popen(["wrk"] + flags + [url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    cpu, share = cpu_use(cpu0, cpu_ticks(server.proc.pid))
    busy = (busy_ticks() - busy0) / os.sysconf("SC_CLK_TCK")
    if status != 0 or not server.alive():
        fail("wrk against %s failed:\n%s" % (server.name, out))
    m = re.search(r"^WRK_JSON (.*)$", out, re.M)
    if not m:
        fail("no summary from wrk:\n" + out)
    r = json.loads(m.group(1))
    errors = {k: v for k, v in r.items() if k.startswith("errors_") and v}
    if errors or r["requests"] == 0:
        fail("%s %s C=%d: wrk errors %s (errors_status counts non-2xx/3xx "
             "answers)\n%s" % (server.name, case["label"], connections,
                              errors or "none, but no requests", out))
    r["server_cpu_us_per_request"] = cpu * 1e6 / r["requests"]
    r["server_busiest_thread_share"] = share
    wrk_cpu = usage.ru_utime + usage.ru_stime
    r["wrk_cpu_percent"] = 100.0 * wrk_cpu / wall
    # CPU that neither the server nor wrk used: other work on the machine.
    r["other_cpu_percent"] = max(0.0, 100.0 * (busy - cpu - wrk_cpu) / wall)
    r["wrk_command"] = "wrk " + " ".join(
        os.path.relpath(f, ROOT) if f == LUA else f for f in flags) + " " + url
    if delay_ms:
        r["wrk_command"] = "WRK_DELAY_MS=%d " % delay_ms + r["wrk_command"]
    r["server"] = server.name
    r["connections"] = connections
    r["delay_ms"] = delay_ms
    return r


def fmt_point(r):
    return "%9.0f %7s %7s %5.1f %3.0f%%" % (
        r["requests_per_s"], us(r["latency_us"]["p50"]),
        us(r["latency_us"]["p99"]), r["server_cpu_us_per_request"],
        100 * r["server_busiest_thread_share"])


HEAD = "%9s %7s %7s %5s %4s" % ("req/s", "p50", "p99", "cpu", "top")


def met(case, t, ratio):
    """Issue 22's targets: one row at least 0.8x nginx with tandem's p99 at
    most 1 ms (item 2); 256 rows at least 0.5x in the binary form and 0.3x
    as JSON (item 3). Other row counts have no target ("-")."""
    if case["rows"] == 1 and not case["binary"]:
        ok = ratio >= 0.8 and t["latency_us"]["p99"] <= 1000
    elif case["rows"] == 256:
        ok = ratio >= (0.5 if case["binary"] else 0.3)
    else:
        return "-"
    return "yes" if ok else "no"


def us(v):
    return "%dus" % v if v < 10000 else "%.1fms" % (v / 1000)


def machine():
    info = {"cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True,
                                   text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    for tool, cmd in (("wrk", ["wrk", "--version"]), ("nginx", ["nginx", "-v"])):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
            line = (p.stdout + p.stderr).splitlines()[0]
            info[tool] = line.split(" Copyright")[0].strip()
        except (OSError, IndexError):
            pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", default="8,32")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--models", default="medium,large")
    ap.add_argument("--rows", default="1,16,256")
    ap.add_argument("--binary-rows", default="256",
                    help="rows per request of the binary tensor data cases "
                         "('' for none)")
    ap.add_argument("--server-threads", type=int, default=0,
                    help="tandem --threads and nginx worker_processes "
                         "(default: one per CPU)")
    ap.add_argument("--paced", default="0.6,0.3",
                    help="paced loads, as shares of nginx's best closed-loop "
                         "req/s for the case ('' for none)")
    ap.add_argument("--no-fastapi", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "bench",
                                                   "serve.json"))
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.connections = 1, "8"
        args.models, args.rows = "medium", "1,16"
    conns = [int(c) for c in args.connections.split(",")]
    models = args.models.split(",")
    row_counts = [int(r) for r in args.rows.split(",")]
    binary_counts = [int(r) for r in args.binary_rows.split(",") if r]
    workers = args.server_threads or os.cpu_count() or 1

    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            fail("%s not found (scripts/setup.sh --bench installs wrk and "
                 "nginx-light)" % tool)
    if not os.access(TANDEM, os.X_OK):
        fail("build/tandem not built (make)")
    missing = [m for m in models
               if not os.path.exists(os.path.join(MODELS, m + ".model.json"))]
    if missing:
        print("training the benchmark models (bench/make_models.py)...",
              flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "bench",
                                                     "make_models.py"), MODELS],
                       check=True)

    fastapi = None
    if not args.no_fastapi:
        try:
            import fastapi as _f  # noqa: F401
            import uvicorn as _u  # noqa: F401
            fastapi = "medium" if "medium" in models else models[0]
        except ImportError:
            print("FastAPI peer skipped: python3-fastapi / python3-uvicorn "
                  "not installed", flush=True)

    tmp = tempfile.mkdtemp(prefix="tandem-bench-serve-")
    servers = []
    try:
        tandem = start_tandem(models, args.server_threads, tmp)
        servers.append(tandem)
        cases = []
        for name in models:
            sample = read_rows(name, max(row_counts + binary_counts))
            for rows in row_counts:
                case = {"model": name, "rows": rows, "binary": False,
                        "label": "%s x%d" % (name, rows),
                        "path": "/v2/models/%s/infer" % name,
                        "body_in": request_body(sample[:rows])}
                case["body_file"] = os.path.join(tmp, "%s-%d.json" % (name, rows))
                with open(case["body_file"], "w") as fp:
                    fp.write(case["body_in"])
                status, body = post(tandem.port, case["path"], case["body_in"])
                if status != 200:
                    fail("tandem answers %d for %s: %s" % (status, case["label"],
                                                           body[:300]))
                case["body_out"] = body.decode()
                if len(scores(case["body_out"])) != rows:
                    fail("tandem answers %s without %d scores" % (case["label"], rows))
                cases.append(case)
            for rows in binary_counts:
                body_in, header = binary_request(sample[:rows])
                case = {"model": name, "rows": rows, "binary": True,
                        "label": "%s x%d bin" % (name, rows),
                        "path": "/v2/models/%s/infer" % name,
                        "body_in": body_in, "inference_header_in": header,
                        "headers": {"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(header)}}
                case["body_file"] = os.path.join(tmp, "%s-%d.bin" % (name, rows))
                with open(case["body_file"], "wb") as fp:
                    fp.write(body_in)
                status, body, headers = post(tandem.port, case["path"], body_in,
                                             case["headers"], with_headers=True)
                if status != 200:
                    fail("tandem answers %d for %s: %s" % (status, case["label"],
                                                           body[:300]))
                case["inference_header_out"] = int(
                    headers["Inference-Header-Content-Length"])
                case["body_out"] = body
                # The same scores as the JSON form of the same rows.
                _, text = post(tandem.port, case["path"], request_body(sample[:rows]))
                got = binary_scores(body, case["inference_header_out"])
                if not np.array_equal(got.view(np.uint32),
                                      scores(text.decode()).view(np.uint32)):
                    fail("%s: binary scores differ from JSON's" % case["label"])
                cases.append(case)
        nginx = start_nginx(cases, workers, tmp)
        servers.append(nginx)
        peer = None
        if fastapi:
            peer = start_fastapi([fastapi], workers, tmp)
            servers.append(peer)
            case = next(c for c in cases if c["model"] == fastapi and c["rows"] == 1)
            status, body = post(peer.port, case["path"], case["body_in"])
            if status != 200:
                fail("FastAPI answers %d: %s" % (status, body[:300]))
            if not np.array_equal(scores(body.decode()), scores(case["body_out"])):
                fail("FastAPI's scores differ from tandem's")
            case["fastapi_body_bytes"] = len(body)

        info = machine()
        print("machine: %s, %s CPUs; %s; %s" % (info.get("cpu"), info["cpus"],
                                             info.get("wrk"), info.get("nginx")))
        print("tandem serve --threads %d, nginx worker_processes %d; wrk -t%d "
              "-d%ds --latency, the same flags for every server; wrk and the "
              "servers share the CPUs" % (workers, workers, args.wrk_threads,
                                          args.seconds))
        # Warm both servers (and the peer) up.
        for server in servers:
            case = cases[0] if server.name != "fastapi" else next(
                c for c in cases if c["model"] == fastapi and c["rows"] == 1)
            run_point(args, server, case, conns[-1], 1)

        print()
        print("%-15s %4s | %-34s | %-34s |" % ("", "", "tandem", "nginx"))
        print("%-15s %4s | %s | %s | %6s | %4s | %s" % (
            "case", "C", HEAD, HEAD, "ratio", "met", "body B"))
        results = []
        for case in cases:
            for c in conns:
                t = run_point(args, tandem, case, c, args.seconds)
                n = run_point(args, nginx, case, c, args.seconds)
                ratio = t["requests_per_s"] / n["requests_per_s"]
                print("%-15s %4d | %s | %s | %5.2fx | %4s | %d" % (
                    case["label"], c, fmt_point(t), fmt_point(n), ratio,
                    met(case, t, ratio), len(case["body_out"])), flush=True)
                point = {"model": case["model"], "rows": case["rows"],
                         "connections": c, "tandem": t, "nginx": n,
                         "ratio": ratio,
                         "response_body_bytes": len(case["body_out"]),
                         "request_body_bytes": len(case["body_in"])}
                if peer and case["model"] == fastapi and case["rows"] == 1:
                    f = run_point(args, peer, case, c, args.seconds)
                    point["fastapi"] = f
                    point["fastapi_body_bytes"] = case["fastapi_body_bytes"]
                    print("%-15s %4d | %s | FastAPI + XGBoost (uvicorn, %d "
                          "workers); tandem %.1fx" % (
                              "  fastapi", c, fmt_point(f), workers,
                              t["requests_per_s"] / f["requests_per_s"]),
                          flush=True)
                results.append(point)
        print("cpu: the server's CPU us per request; top: the busiest server "
              "thread's (nginx: worker's) share of it; ratio: tandem req/s / "
              "nginx req/s; met (issue 22): 1 row, ratio >= 0.8 and tandem p99 <= 1 "
              "ms; 256 rows, ratio >= 0.5 binary, >= 0.3 JSON")

        noisy = [(p["model"], p["rows"], p["connections"], k,
                  p[k]["other_cpu_percent"]) for p in results
                 for k in ("tandem", "nginx") if p[k]["other_cpu_percent"] > 15]
        for n in noisy:
            print("noisy: %s x%d C=%d %s: other processes used %.0f%% of a "
                  "CPU during the run" % n)

        paced = []
        shares = [float(x) for x in args.paced.split(",") if x]
        if shares:
            print()
            print("paced, 1 row: every connection waits %d ms after each "
                  "answer; C set for the target, a share of nginx's best "
                  "closed-loop req/s above" % PACE_MS)
            print("%-15s %5s %4s %7s | %-34s | %-34s |" % (
                "", "", "", "", "tandem", "nginx"))
            print("%-15s %5s %4s %7s | %s | %s | %s" % (
                "case", "share", "C", "target", HEAD, HEAD, "met"))
            for case, share in [(c, x) for c in cases if c["rows"] == 1
                                for x in shares]:
                best = max(p["nginx"]["requests_per_s"] for p in results
                           if p["model"] == case["model"] and p["rows"] == 1)
                target = share * best
                # A connection makes about 1000 / (delay + latency) req/s;
                # calibrate C once on nginx, then run both with that C.
                c = max(1, math.ceil(target * (PACE_MS + 0.1) / 1000))
                probe = run_point(args, nginx, case, c, min(3, args.seconds),
                                  PACE_MS)
                c = max(1, round(c * target / probe["requests_per_s"]))
                t = run_point(args, tandem, case, c, args.seconds, PACE_MS)
                n = run_point(args, nginx, case, c, args.seconds, PACE_MS)
                ok = (t["latency_us"]["p99"] <= 1000 and
                      t["requests_per_s"] >= 0.95 * target)
                print("%-15s %4.0f%% %4d %7.0f | %s | %s | %s" % (
                    case["label"], 100 * share, c, target, fmt_point(t),
                    fmt_point(n), "yes" if ok else "no"), flush=True)
                paced.append({"model": case["model"], "rows": 1,
                              "share_of_nginx": share,
                              "connections": c, "delay_ms": PACE_MS,
                              "target_requests_per_s": target,
                              "nginx_best_requests_per_s": best,
                              "tandem": t, "nginx": n})

        codes = {}
        for server in servers:
            codes[server.name] = server.stop()
        if codes["tandem"] != 0:
            fail("tandem serve exited %s on SIGTERM" % codes["tandem"])
        servers = []
        out = {"machine": info, "server_threads": workers,
               "wrk_threads": args.wrk_threads, "seconds": args.seconds,
               "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] +
                                   sys.argv[1:]),
               "closed_loop": results, "paced": paced,
               "fastapi": bool(fastapi)}
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as fp:
            json.dump(out, fp, indent=1)
        print("\nwrote " + os.path.relpath(args.json, ROOT))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
