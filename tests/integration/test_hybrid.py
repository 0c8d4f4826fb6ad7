"""The hybrid of batch and real time (docs/hybrid.md), against the real
binary:

1. Point in time: two table versions materialized by batch runs with
   different as_of; a later batch run over events before, between and
   after them reads, for each event, the newest version at or before its
   event time (checked against the versions' as_of in their manifests and
   against the values the materializing runs computed), the default where
   there is none, and reports version and staleness.
2. Live: the newest version, staleness in the answer and on /metrics
   (promtool), readiness failing when a table is older than max_staleness.
3. Deadline fallback under overload: with --max-in-flight 2 and wrk at 64
   connections, every request is answered 200 (from the model or the
   card's last batch score, "source": "batch"), and the fallbacks are
   counted (the p99 is printed, not asserted).
4. A table swapped while serving: a schedule refreshes the table every
   second while wrk sends events: no request fails, the version moves on;
   GET /v1/pipelines/NAME/schedule reports the runs.
"""
import json
import os
import re
import subprocess
import urllib.request

from common import expect, finish, tmpdir
from pipeline_util import (HYBRID_COLUMNS, HYBRID_FEATURES, fmt_time, hybrid_yaml,
                           make_model, tandem, write, write_csv)
from serve_util import Server

FEATURES = HYBRID_FEATURES
YAML = hybrid_yaml("hy")
COLUMNS = HYBRID_COLUMNS
DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# The table store: an LMDB directory beside the pipeline, or the Redis URL
# test_hybrid_redis.py gives, which runs every case here on Redis.
STORE = os.environ.get("TANDEM_HYBRID_STORE", "tables")
YAML = YAML.replace("STORE", STORE)
out = tmpdir()
make_model(os.path.join(out, "model.json"), FEATURES, seed=3)
pipeline = write(os.path.join(out, "p.yaml"), YAML.replace("EXTRA", ""))


def events(prefix, start, n, cards, step):
    return [{"txn": "%s%d" % (prefix, i), "card": "c%d" % (i % cards),
             "ts": fmt_time(start + i * step), "ms": start + i * step,
             "amount": "%.2f" % (5 + (i * 37) % 300)}
            for i in range(n)]


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def manifest(path):
    with open(path + ".manifest.json") as f:
        return json.load(f)


# ---- 1. point in time ----
a = events("a", T0, 400, 20, 60_000)                  # day 1
b = events("b", T0 + DAY, 400, 30, 60_000)            # day 2, more cards
write_csv(os.path.join(out, "a.csv"), COLUMNS, a)
write_csv(os.path.join(out, "b.csv"), COLUMNS, b)
r = tandem("batch", pipeline, "--in", os.path.join(out, "a.csv"), "--out",
           os.path.join(out, "a.jsonl"), "--explain", "--materialize", "profile")
expect(r.returncode == 0, "materialize a: " + r.stderr)
as_of_b = T0 + 2 * DAY
r = tandem("batch", pipeline, "--in", os.path.join(out, "b.csv"), "--out",
           os.path.join(out, "b.jsonl"), "--explain", "--materialize", "profile",
           "--as-of", fmt_time(as_of_b))
expect(r.returncode == 0, "materialize b: " + r.stderr)
tables = [manifest(os.path.join(out, "a.jsonl"))["tables"][0],
          manifest(os.path.join(out, "b.jsonl"))["tables"][0]]
expect([t["version"] for t in tables] == [1, 2], f"versions: {tables}")
expect(tables[0]["as_of"] == a[-1]["ts"], f"as_of is the last event: {tables}")
expect(tables[1]["as_of"] == fmt_time(as_of_b), f"--as-of: {tables}")
expect(tables[0]["rows"] == 20 and tables[1]["rows"] == 30, f"rows: {tables}")


def last_values(path):
    """Per card, the features of its last event (what was materialized)."""
    last = {}
    for row in read_jsonl(path):
        last[row["card"]] = row["features"]
    return last


materialized = {1: last_values(os.path.join(out, "a.jsonl")),
                2: last_values(os.path.join(out, "b.jsonl"))}
as_of_ms = {1: T0 + 399 * 60_000, 2: as_of_b}
# Events before version 1, between the two, and after version 2.
c = (events("c", T0 - 3_600_000, 30, 40, 60_000) +
     events("d", T0 + DAY, 30, 40, 60_000) +
     events("e", T0 + 3 * DAY, 30, 40, 60_000))
write_csv(os.path.join(out, "c.csv"), COLUMNS, c)
r = tandem("batch", pipeline, "--in", os.path.join(out, "c.csv"), "--out",
           os.path.join(out, "c.jsonl"), "--explain", "--threads", "3")
expect(r.returncode == 0, "batch c: " + r.stderr)
checked = {None: 0, 1: 0, 2: 0}
for ev, res in zip(c, read_jsonl(os.path.join(out, "c.jsonl"))):
    t = [v for v in (2, 1) if as_of_ms[v] <= ev["ms"]]
    want = t[0] if t else None
    got = res["tables"]["profile"]
    expect(got["version"] == want, f"{ev['ts']}: version {got} expected {want}")
    values = materialized.get(want, {}).get(ev["card"])
    if values is None:
        expect(res["features"]["profile_mean"] == -1 and
               res["features"]["profile_n"] is None,
               f"default when absent: {res}")
    else:
        expect(res["features"]["profile_mean"] == values["mean_7d"] and
               res["features"]["profile_n"] == values["n_1h"],
               f"{ev}: {res['features']} vs version {want}: {values}")
    checked[want] += 1
print("point in time:", {str(k): v for k, v in checked.items()}, "events checked",
      flush=True)
expect(all(checked.values()), f"every case seen: {checked}")

# ---- 2. live: newest version, staleness, readiness ----
with Server(pipeline) as server:
    body = json.dumps({"txn": "L1", "card": "c3", "ts": fmt_time(T0 + 5 * DAY),
                       "amount": 10}).encode()
    req = urllib.request.Request(server.url + "/v1/pipelines/hy/events?explain=features",
                                 data=body, method="POST")
    res = json.loads(urllib.request.urlopen(req).read())
    expect(res["tables"]["profile"]["version"] == 2, f"newest live: {res}")
    expect(res["tables"]["profile"]["staleness_s"] == (5 * DAY - 2 * DAY) / 1000,
           f"staleness: {res}")
    expect(res["features"]["profile_mean"] == materialized[2]["c3"]["mean_7d"], res)
    metrics = urllib.request.urlopen(server.url + "/metrics").read().decode()
    expect(re.search(r'tandem_table_version\{pipeline="hy",table="profile"\} 2',
                     metrics), "version metric")
    expect('tandem_table_staleness_seconds{pipeline="hy",table="profile"}' in metrics,
           "staleness metric")
    check = subprocess.run(["promtool", "check", "metrics"], input=metrics,
                           capture_output=True, text=True)
    expect(check.returncode == 0, "promtool: " + check.stdout + check.stderr)
    ready = urllib.request.urlopen(server.url + "/v2/health/ready").status
    expect(ready == 200, f"ready without max_staleness: {ready}")
stale = write(os.path.join(out, "stale.yaml"),
              YAML.replace("EXTRA", "tables: {profile: {max_staleness: 1h}}"))
with Server(stale) as server:
    try:
        status = urllib.request.urlopen(server.url + "/v2/health/ready").status
    except urllib.error.HTTPError as e:
        status = e.code
    expect(status == 400, f"not ready with a stale table: {status}")
print("live: newest version, staleness, metrics, readiness", flush=True)

# ---- 3. deadline fallback under overload ----
LUA = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
counter = 0
ok = 0
other = 0
batch_answers = 0
function request()
  counter = counter + 1
  local body = string.format(
    '{"txn":"w%d","card":"c%d","ts":%d,"amount":%d}',
    counter, counter % 30, 1767571200 + counter, counter % 300)
  return wrk.format("POST", "/v1/pipelines/hy/events",
                    {["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
  if string.find(body, '"source":"batch"', 1, true) then
    batch_answers = batch_answers + 1
  end
end
function done(summary, latency, requests)
  local o, x, b = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    x = x + t:get("other")
    b = b + t:get("batch_answers")
  end
  io.write(string.format('RESULT {"ok":%d,"other":%d,"batch":%d,"p99_us":%d,"requests":%d,"errors":%d}\\n',
    o, x, b, latency:percentile(99), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""
lua = write(os.path.join(out, "load.lua"), LUA)


def wrk(url, seconds, connections):
    run = subprocess.run(["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds,
                          "-s", lua, url], capture_output=True, text=True)
    m = re.search(r"RESULT (\{.*\})", run.stdout)
    expect(m is not None, "wrk result: " + run.stdout + run.stderr)
    return json.loads(m.group(1))


deadline_ms = 100
fallback = write(os.path.join(out, "fallback.yaml"), YAML.replace(
    "EXTRA", "realtime: {deadline_ms: %d, fallback: profile.score, "
             "default_decision: review}" % deadline_ms))
with Server(fallback, "--max-in-flight", "2", "--state",
            os.path.join(out, "state")) as server:
    res = wrk(server.url, 5, 64)
    metrics = urllib.request.urlopen(server.url + "/metrics").read().decode()
    m = re.search(r'tandem_pipeline_fallbacks_total\{pipeline="hy",source="batch"\} (\d+)',
                  metrics)
    fallbacks = int(m.group(1)) if m else 0
print("overload:", res, "fallbacks counted:", fallbacks, flush=True)
expect(res["errors"] == 0 and res["other"] == 0 and res["ok"] > 0,
       f"every request answered 200: {res}")
expect(res["batch"] > 0 and fallbacks >= res["batch"],
       f"the fallback answered some: {res}, metric {fallbacks}")
# The p99 against the deadline is printed, not asserted: a wall-clock
# bound fails on a busy machine whatever the server does (it failed once at
# load 21 on 2 cores). bench/bench_serve.py measures latency.
print(f"overload p99 {res['p99_us']} us (deadline {deadline_ms} ms)", flush=True)

# ---- 4. a table swapped under load ----
sched = write(os.path.join(out, "sched.yaml"), YAML.replace(
    "EXTRA", "schedule:\n  - {cron: \"@every 1s\", in: a.csv, table: profile}"))
with Server(sched) as server:
    before = json.loads(urllib.request.urlopen(
        server.url + "/v1/pipelines/hy/schedule").read())
    res = wrk(server.url, 5, 16)
    status = json.loads(urllib.request.urlopen(
        server.url + "/v1/pipelines/hy/schedule").read())
    metrics = urllib.request.urlopen(server.url + "/metrics").read().decode()
print("swap under load:", res, "schedule:", status["schedules"][0]["runs"], "runs",
      flush=True)
expect(res["errors"] == 0 and res["other"] == 0 and res["ok"] > 0,
       f"no request failed during the swaps: {res}")
s = status["schedules"][0]
expect(s["runs"] >= 3 and s["failures"] == 0 and s["last"]["exit_status"] == 0,
       f"refreshes ran: {status}")
expect("version" in s["last"]["message"], f"last message: {s}")
m = re.search(r'tandem_table_version\{pipeline="hy",table="profile"\} (\d+)', metrics)
expect(m and int(m.group(1)) >= 4, f"the version moved on: {m and m.group(0)}")
expect(before["schedules"][0]["cron"] == "@every 1s", f"status: {before}")

finish("test_hybrid")
