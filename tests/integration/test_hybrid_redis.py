"""Tables in Redis (docs/hybrid.md, "Many replicas: tables in Redis"),
against a real redis-server started here on a free loopback port (its PID
kept, stopped by that PID):

1. Every case of test_hybrid.py on Redis: it runs as a child with
   TANDEM_HYBRID_STORE set to the Redis URL, with the same checks and the
   same expected values as on LMDB.
2. Errors at start name the store and the cause: Redis unreachable (batch
   and serve), a password in the URL (not echoed), rediss:// to this plain
   server (the TLS hello goes unanswered), a missing or wrong password; the
   password from a file and from the environment both work. TLS itself is
   tested by test_hybrid_redis_tls.py.
3. A batch job killed while materializing (TANDEM_CRASH_AT after its first
   1000 rows are written, and just before the commit): no version becomes
   visible, the staged rows expire, and the next job's version follows the
   last committed one.
4. Two batch jobs materializing at once: both commit, with consecutive
   versions listed newest first, and each version holds exactly the rows its
   own job computed, read back with a RESP client written here (not through
   tandem) and decoded from the documented record format.
5. Redis killed (SIGKILL) and restarted under load: every request is
   answered 200 from the version in memory, tandem_table_store_up drops to
   0 and failures grow, readiness turns not-ready only once the table is
   older than max_staleness, and after the restart the server reconnects
   (the reconnects counter) and follows a new version, ready again.
"""
import atexit
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import http.client

from common import TANDEM, expect, finish, free_port, tmpdir, wait_until
from pipeline_util import (HYBRID_COLUMNS, HYBRID_FEATURES, fmt_time, hybrid_yaml,
                           make_model, tandem, write, write_csv)
from redis_util import Redis, Resp, run_test_hybrid

out = tmpdir()


def decode_meta(blob):
    """The metadata record of docs/hybrid.md: little-endian integers."""
    fmt, as_of, created, rows, n = struct.unpack_from("<IqqQI", blob, 0)
    at = struct.calcsize("<IqqQI")
    names = []
    for _ in range(n + 1):
        (length,) = struct.unpack_from("<I", blob, at)
        names.append(blob[at + 4:at + 4 + length].decode())
        at += 4 + length
    expect(fmt == 1 and at == len(blob), f"record shape: {fmt} {at} {len(blob)}")
    return {"as_of": as_of, "rows": rows, "columns": names[:n]}


def read_version(client, table, version):
    """Version VERSION of TABLE as Redis holds it: {entity: {column: value}}."""
    key = "tandem:table:%s:%d:" % (table, version)
    meta = decode_meta(client("GET", key + "meta"))
    flat = client("HGETALL", key + "rows") or []
    rows = {}
    for i in range(0, len(flat), 2):
        values = struct.unpack("<%dd" % len(meta["columns"]), flat[i + 1])
        rows[flat[i].decode()] = dict(zip(meta["columns"], values))
    expect(len(rows) == meta["rows"], f"rows in the record: {meta}")
    return meta, rows


def visible(client, table):
    text = client("GET", "tandem:table:%s:current" % table)
    return [int(v) for v in text.split()] if text else []


port = free_port()
redis = Redis(port)
URL = "redis://127.0.0.1:%d/0" % port

# ---- 1. every test_hybrid case on Redis ----
run_test_hybrid(URL)

client = Resp(port)
client("FLUSHALL")

FEATURES = HYBRID_FEATURES
YAML = hybrid_yaml("hr")
COLUMNS = HYBRID_COLUMNS
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
make_model(os.path.join(out, "model.json"), FEATURES, seed=5)


def pipeline(name, store=URL, extra=""):
    return write(os.path.join(out, name),
                 YAML.replace("STORE", store).replace("EXTRA", extra))


def events(prefix, start, n, cards, step, seed=0):
    return [{"txn": "%s%d" % (prefix, i), "card": "c%d" % ((i * 7 + seed) % cards),
             "ts": fmt_time(start + i * step),
             "amount": "%.2f" % (5 + (i * 37 + seed * 11) % 300)}
            for i in range(n)]


p = pipeline("p.yaml")
a_csv = write_csv(os.path.join(out, "a.csv"), COLUMNS, events("a", T0, 300, 20, 60_000))

# ---- 2. errors at start ----
dead = "redis://127.0.0.1:%d/0" % free_port()
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "dead.jsonl"),
           "--store", dead, "--materialize", "profile")
expect(r.returncode == 1 and dead + ": cannot connect" in r.stderr and
       not os.path.exists(os.path.join(out, "dead.jsonl")),
       f"Redis down at start (batch): {r.returncode} {r.stderr}")
serve = subprocess.run([TANDEM, "serve", "--listen", "127.0.0.1:0",
                        pipeline("dead.yaml", dead)],
                       capture_output=True, text=True, timeout=60)
expect(serve.returncode != 0 and dead + ": cannot connect" in serve.stderr,
       f"Redis down at start (serve): {serve.returncode} {serve.stderr}")
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "pw.jsonl"),
           "--store", "redis://:s3cret@127.0.0.1:%d/0" % port)
expect(r.returncode == 2 and "TANDEM_REDIS_PASSWORD_FILE" in r.stderr and
       "s3cret" not in r.stderr, f"password in the URL: {r.returncode} {r.stderr}")
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "tls.jsonl"),
           "--store", "rediss://127.0.0.1:%d/0" % port)
expect(r.returncode == 1 and "a plain redis:// server on this port" in r.stderr and
       not os.path.exists(os.path.join(out, "tls.jsonl")),
       f"rediss:// to a plain server: {r.returncode} {r.stderr}")
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "port.jsonl"),
           "--store", "redis://127.0.0.1:99999/0")
expect(r.returncode == 2 and "port" in r.stderr, f"bad port: {r.returncode} {r.stderr}")

secured_port = free_port()
secured = Redis(secured_port, "--requirepass", "pa55-word")
sp = pipeline("secured.yaml", "redis://127.0.0.1:%d/0" % secured_port)
r = tandem("batch", sp, "--in", a_csv, "--out", os.path.join(out, "s0.jsonl"),
           "--materialize", "profile")
expect(r.returncode == 1 and "NOAUTH" in r.stderr, f"no password: {r.stderr}")
env = dict(os.environ, TANDEM_REDIS_PASSWORD="wrong")
r = subprocess.run([TANDEM, "batch", sp, "--in", a_csv, "--out",
                    os.path.join(out, "s1.jsonl"), "--materialize", "profile"],
                   capture_output=True, text=True, env=env)
expect(r.returncode == 1 and "cannot authenticate" in r.stderr,
       f"wrong password: {r.stderr}")
password_file = write(os.path.join(out, "redis.password"), "pa55-word\n")
for name, extra in (("file", {"TANDEM_REDIS_PASSWORD_FILE": password_file}),
                    ("environment", {"TANDEM_REDIS_PASSWORD": "pa55-word"})):
    r = subprocess.run([TANDEM, "batch", sp, "--in", a_csv, "--out",
                        os.path.join(out, "s2.jsonl"), "--materialize", "profile"],
                       capture_output=True, text=True, env=dict(os.environ, **extra))
    expect(r.returncode == 0, f"password from the {name}: {r.stderr}")
expect(visible(Resp(secured_port, "pa55-word"), "profile") == [2, 1],
       "both authenticated runs committed")
secured.stop()
print("errors at start: unreachable, password in URL, rediss to plain, "
      "NOAUTH, wrong password; password file and environment work", flush=True)

# ---- 3. a batch job killed while materializing ----
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "a.jsonl"),
           "--materialize", "profile")
expect(r.returncode == 0, "first version: " + r.stderr)
big_csv = write_csv(os.path.join(out, "big.csv"), COLUMNS,
                    events("g", T0, 2500, 1500, 1000))
keys_before = sorted(k.decode() for k in client("KEYS", "tandem:table:profile:*:meta"))
for point in ("redis-table-rows-written:1", "redis-table-before-commit"):
    r = subprocess.run([TANDEM, "batch", p, "--in", big_csv, "--out",
                        os.path.join(out, "big.jsonl"), "--materialize", "profile"],
                       capture_output=True, text=True,
                       env=dict(os.environ, TANDEM_CRASH_AT=point))
    expect(r.returncode == -signal.SIGKILL and "crash point reached" in r.stderr,
           f"{point}: killed there: {r.returncode} {r.stderr}")
    expect(visible(client, "profile") == [1], f"{point}: nothing visible")
    metas = sorted(k.decode() for k in client("KEYS", "tandem:table:profile:*:meta"))
    expect(metas == keys_before, f"{point}: no new version record: {metas}")
    staged = [k.decode() for k in client("KEYS", "tandem:table:profile:staging:*")]
    expect(len(staged) == 1, f"{point}: the staged rows: {staged}")
    ttl = client("TTL", staged[0])
    expect(0 < ttl <= 86400, f"{point}: the staged rows expire: {ttl}")
    rows = client("HLEN", staged[0])
    expect((rows == 1000) if point.startswith("redis-table-rows") else rows == 1500,
           f"{point}: staged {rows} rows")
    client("DEL", staged[0])
# Redis refusing writes halfway (out of memory, noeviction): the run fails
# naming the store, leaves no version and no staged rows.
client("CONFIG", "SET", "maxmemory-policy", "noeviction")
client("CONFIG", "SET", "maxmemory", str(client("INFO", "memory").decode()
                                         .split("used_memory:")[1].split()[0]))
r = tandem("batch", p, "--in", big_csv, "--out", os.path.join(out, "oom.jsonl"),
           "--materialize", "profile")
client("CONFIG", "SET", "maxmemory", "0")
expect(r.returncode == 1 and URL + ": cannot write rows: OOM" in r.stderr and
       not os.path.exists(os.path.join(out, "oom.jsonl")),
       f"Redis out of memory while writing: {r.returncode} {r.stderr}")
expect(visible(client, "profile") == [1], "out of memory: nothing visible")
expect(client("KEYS", "tandem:table:profile:staging:*") == [],
       "out of memory: the staged rows are removed")
r = tandem("batch", p, "--in", big_csv, "--out", os.path.join(out, "big.jsonl"),
           "--materialize", "profile")
expect(r.returncode == 0, "after the crashes: " + r.stderr)
with open(os.path.join(out, "big.jsonl.manifest.json")) as f:
    table = json.load(f)["tables"][0]
expect(table["version"] == 2 and table["rows"] == 1500,
       f"the next version follows the last committed: {table}")
expect(visible(client, "profile") == [2, 1], "listed newest first")
# tandem's lookups in the 1500-row version (its in-memory index grown many
# times over) against the rows read from Redis here; cards the table lacks
# read the default.
_, rows = read_version(client, "profile", 2)
probe = [{"txn": "p%d" % i, "card": "c%d" % i, "amount": "1.00",
          "ts": fmt_time(T0 + 86_400_000 + i)} for i in range(1600)]
probe_csv = write_csv(os.path.join(out, "probe.csv"), COLUMNS, probe)
r = tandem("batch", p, "--in", probe_csv, "--out", os.path.join(out, "probe.jsonl"),
           "--explain")
expect(r.returncode == 0, "probe: " + r.stderr)
with open(os.path.join(out, "probe.jsonl")) as f:
    answers_read = [json.loads(line) for line in f]
mismatches = 0
for ev, res in zip(probe, answers_read):
    want = rows.get(ev["card"])
    got = (res["features"]["profile_mean"], res["features"]["profile_n"])
    if want is None:
        mismatches += got != (-1, None)
    else:
        mismatches += got != (want["mean_7d"], want["n_1h"])
expect(len(answers_read) == 1600 and mismatches == 0 and len(rows) == 1500,
       f"lookups equal the rows in Redis: {mismatches} differ")
print("killed while materializing: nothing visible, staged rows expire, "
      "numbering continues", flush=True)

# ---- 4. two batch jobs at once ----


def last_rows(path):
    """Per card, what its last event gives the table (the job's own output:
    features and the float32 score)."""
    last = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            score = struct.unpack("<f", struct.pack("<f", row["score"]))[0]
            last[row["card"]] = {"mean_7d": row["features"]["mean_7d"],
                                 "n_1h": row["features"]["n_1h"], "score": score}
    return last


jobs = []
for i, cards in enumerate((40, 55)):
    path = write_csv(os.path.join(out, "job%d.csv" % i), COLUMNS,
                     events("j%d-" % i, T0 + i * 86_400_000, 1200, cards, 30_000,
                            seed=i + 1))
    jobs.append((path, os.path.join(out, "job%d.jsonl" % i)))
procs = [subprocess.Popen([TANDEM, "batch", p, "--in", path, "--out", res,
                           "--explain", "--materialize", "profile"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
         for path, res in jobs]
for proc in procs:
    _, err = proc.communicate(timeout=300)
    expect(proc.returncode == 0, "concurrent job: " + err)
versions = []
for path, res in jobs:
    with open(res + ".manifest.json") as f:
        versions.append(json.load(f)["tables"][0]["version"])
expect(sorted(versions) == [3, 4], f"consecutive versions: {versions}")
expect(visible(client, "profile") == [4, 3, 2], f"listed: {visible(client, 'profile')}")
for (path, res), v in zip(jobs, versions):
    meta, rows = read_version(client, "profile", v)
    expect(rows == last_rows(res), f"version {v} holds its own job's rows")
expect(client("EXISTS", "tandem:table:profile:1:meta") == 0,
       "keep: 3 unlinked version 1")
print("two jobs at once: versions", versions, "each complete", flush=True)

# ---- 4b. what Redis holds is checked, never trusted ----
current_key = "tandem:table:profile:current"
listing = client("GET", current_key)
client("SET", current_key, b"4 x 2")
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "bad.jsonl"))
expect(r.returncode != 0 and URL + ": table 'profile': the version list is not "
       "numbers" in r.stderr and not os.path.exists(os.path.join(out, "bad.jsonl")),
       f"a corrupt version list: {r.returncode} {r.stderr}")
client("SET", current_key, listing)
rows_key = "tandem:table:profile:4:rows"
entity = client("HKEYS", rows_key)[0]
row = client("HGET", rows_key, entity)
client("HSET", rows_key, entity, b"abc")
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "bad.jsonl"))
expect(r.returncode != 0 and "version 4: a row of 3 bytes, expected 24" in r.stderr
       and not os.path.exists(os.path.join(out, "bad.jsonl")),
       f"a row of the wrong size: {r.returncode} {r.stderr}")
client("HSET", rows_key, entity, row)
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "good.jsonl"))
expect(r.returncode == 0, "repaired: " + r.stderr)
print("a corrupt version list and a short row: errors naming them", flush=True)

# ---- 5. Redis killed and restarted under load ----
redis.stop()
client.close()
data_dir = os.path.join(out, "redis-data")
os.makedirs(data_dir)
# Persistence on: a restarted Redis has its data, as in production.
durable = ["--appendonly", "yes", "--appendfsync", "always", "--dir", data_dir]
redis = Redis(port, *durable)
client = Resp(port)
now_ms = int(time.time() * 1000)
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "fresh.jsonl"),
           "--explain", "--materialize", "profile", "--as-of", fmt_time(now_ms - 3000))
expect(r.returncode == 0, "fresh version: " + r.stderr)
fresh = last_rows(os.path.join(out, "fresh.jsonl"))
staleness = pipeline("stale.yaml", extra="tables: {profile: {max_staleness: 15s}}")
server = subprocess.Popen([TANDEM, "serve", "--listen", "127.0.0.1:0", staleness],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
atexit.register(lambda: server.poll() is None and server.kill())
m = None
while m is None:
    line = server.stderr.readline()
    expect(line != "", "server started")
    if line == "":
        sys.exit(1)
    m = re.search(r"listening on http://(\S+)", line)
host, sport = m.group(1).rsplit(":", 1)
drain = threading.Thread(target=server.stderr.read, daemon=True)
drain.start()


def get(path):
    conn = http.client.HTTPConnection(host, int(sport), timeout=30)
    conn.request("GET", path)
    res = conn.getresponse()
    body = res.read().decode()
    conn.close()
    return res.status, body


def metric(name):
    m = re.search(r"^%s\{pipeline=\"hr\"\} (\d+)" % name, get("/metrics")[1], re.M)
    return int(m.group(1)) if m else None


results = []
stop = threading.Event()


def load():
    conn = http.client.HTTPConnection(host, int(sport), timeout=30)
    i = 0
    while not stop.is_set():
        card = "c%d" % (i % 20)
        body = json.dumps({"txn": "L%d" % i, "card": card, "amount": 10,
                           "ts": fmt_time(int(time.time() * 1000))})
        conn.request("POST", "/v1/pipelines/hr/events?explain=features", body,
                     {"Content-Type": "application/json"})
        res = conn.getresponse()
        results.append((res.status, card, res.read()))
        i += 1


loader = threading.Thread(target=load)
loader.start()
wait_until(lambda: len(results) > 50, "requests flow")
expect(get("/v2/health/ready")[0] == 200, "ready with a fresh table")
expect(metric("tandem_table_store_up") == 1, "store up")
redis.kill()
wait_until(lambda: metric("tandem_table_store_up") == 0, "the lost Redis shows")
failures = metric("tandem_table_store_failures_total")
wait_until(lambda: metric("tandem_table_store_failures_total") >= failures + 2,
           "reconnect attempts fail while Redis is down")
during = len(results)
wait_until(lambda: len(results) > during + 50, "requests flow while Redis is down")
# Not ready only once the table, still served from memory, passes 15 s.
wait_until(lambda: get("/v2/health/ready")[0] != 200, "max_staleness readiness")
expect(get("/v2/health/ready")[0] == 400, "not ready with a stale table")
redis = Redis(port, *durable)
client = Resp(port)
wait_until(lambda: metric("tandem_table_store_up") == 1 and
           metric("tandem_table_store_reconnects_total") >= 1, "reconnected")
expect(visible(client, "profile") == [1], "the restarted Redis kept its data")
r = tandem("batch", p, "--in", a_csv, "--out", os.path.join(out, "again.jsonl"),
           "--materialize", "profile", "--as-of", fmt_time(int(time.time() * 1000)))
expect(r.returncode == 0, "a new version after the restart: " + r.stderr)
wait_until(lambda: results and json.loads(results[-1][2])["tables"]["profile"]
           ["version"] == 2, "the server follows the new version")
wait_until(lambda: get("/v2/health/ready")[0] == 200, "ready again")
# A Redis that comes back empty (no persistence): the version in memory
# stays until a batch job commits a new list.
redis.kill()
client.close()
redis = Redis(port)
client = Resp(port)
wait_until(lambda: metric("tandem_table_store_reconnects_total") >= 2,
           "reconnected to the empty Redis")


def gets():
    stats = client("INFO", "commandstats").decode()
    m = re.search(r"cmdstat_get:calls=(\d+)", stats)
    return int(m.group(1)) if m else 0


# Three reads of the version list: the follower has polled the empty store.
wait_until(lambda: gets() >= 3, "the follower polls the empty Redis")
seen = len(results)
wait_until(lambda: len(results) > seen + 20, "requests flow")
last = json.loads(results[-1][2])
expect(last["tables"]["profile"]["version"] == 2 and
       last["features"]["profile_mean"] == fresh[last["card"]]["mean_7d"],
       f"the versions in memory outlive an empty Redis: {last}")
stop.set()
loader.join()
server.send_signal(signal.SIGTERM)
expect(server.wait(60) == 0, "server exit")
statuses, wrong = {}, []
for status, card, body in results:
    statuses[status] = statuses.get(status, 0) + 1
    res = json.loads(body)
    version = res["tables"]["profile"]["version"]
    # Versions 1 and 2 hold the same rows (the same input).
    if version not in (1, 2) or res["features"]["profile_mean"] != fresh[card]["mean_7d"]:
        wrong.append(res)
expect(not wrong, f"{len(wrong)} answers not from a version in memory, the "
                  f"first: {wrong[:1]}")
expect(statuses == {200: len(results)}, f"every request 200: {statuses}")
print("Redis killed and restarted under load:", len(results), "requests, all 200;",
      "down, not ready past max_staleness, reconnected, followed version 2, "
      "kept it through an empty restart",
      flush=True)

client.close()
redis.stop()
finish("test_hybrid_redis")
