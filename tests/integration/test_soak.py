"""A soak of the fraud example served live (docs/reliability.md); the CI
version runs SOAK_SECONDS (default 60), scripts/soak.sh runs it for
minutes.

`tandem serve examples/fraud/pipeline.yaml --store S --state D`, where S
holds card_profile materialized by a batch run over a generated history
and D the state that run saved (--save-state). wrk first measures the
capacity for a few seconds, then drives events at about 70% of it
(wrk's delay() per connection, calibrated once) for the duration,
counting every response in Lua. Event time advances 30 s per event, so
the state reaches its steady size (the 30-day windows, 24 h of ids)
during the warm-up; at that pace a fast machine dates events past today,
so the pipeline is the example's with state.max_future raised to 10
years (a copy beside its model). Every 10 s a background `tandem batch --materialize card_profile`
writes a new table version (picked up by the server within a second) and
the server gets SIGHUP. RSS is sampled every second from /proc.

Passes when: zero non-2xx responses and zero socket errors, the table
version moved on, the server exits 0 on SIGTERM, and the anonymous RSS
(heap; the LMDB maps are file-backed and grow with the state on disk)
after the warm-up (the first fifth) grows by less than 20% (+4 MB).
Under AddressSanitizer (TANDEM is an ASan build: "asan" in its path, as
test_hardening.py tells) freed memory waits in ASan's quarantine (256 MB
by default, or ASAN_OPTIONS' quarantine_size_mb) before it is reused, so
the heap may also grow by the quarantine's size; leaks are
LeakSanitizer's to find, when the server exits.
Prints start, end and max RSS, the rate and p50/p99/p99.9.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

from common import ROOT, TANDEM, expect, finish, tmpdir, wait_until
from pipeline_util import tandem, write
from serve_util import Server

SECONDS = int(os.environ.get("SOAK_SECONDS", "60"))
REFRESH_S = 10
LOAD = 0.7
EXAMPLE = os.path.join(ROOT, "examples", "fraud")
ASAN = "asan" in TANDEM


def quarantine_mb():
    """ASan's quarantine in MB: ASAN_OPTIONS' quarantine_size_mb, else
    its default, 256."""
    m = re.search(r"(?:^|[:,\s])quarantine_size_mb=(\d+)",
                  os.environ.get("ASAN_OPTIONS", ""))
    return int(m.group(1)) if m else 256


# The heap's allowed growth after the warm-up: 20% + 4 MB, plus the
# quarantine under ASan.
HEAP_SLACK_MB = 4 + (quarantine_mb() if ASAN else 0)

out = tmpdir()
shutil.copy(os.path.join(EXAMPLE, "model.json"), out)
with open(os.path.join(EXAMPLE, "pipeline.yaml")) as f:
    example = f.read()
expect(example.rstrip().endswith("dedupe: 24h"), "the example's state block ends it")
PIPELINE = write(os.path.join(out, "pipeline.yaml"),
                 example.rstrip() + "\n  max_future: 3650d\n")
gen = subprocess.run(
    ["/usr/bin/python3", os.path.join(ROOT, "examples", "fraud", "generate.py"),
     "--cards", "1000", "--days", "30", "--out", os.path.join(out, "history.csv")],
    capture_output=True, text=True)
expect(gen.returncode == 0, "generate: " + gen.stderr)
history = os.path.join(out, "history.csv")
store = os.path.join(out, "tables")
state = os.path.join(out, "state")
r = tandem("batch", PIPELINE, "--in", history, "--out", os.path.join(out, "h.csv"),
           "--materialize", "card_profile", "--store", store, "--save-state", state,
           "--no-registry")
expect(r.returncode == 0, "batch: " + r.stderr)

LUA = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
counter = 0
ok = 0
other = 0
function init(args)
  gap = tonumber(args[1])
  counter = tonumber(args[2])
  first = counter
  ts0 = tonumber(args[3])
  step = tonumber(args[4])
end
function delay()
  return gap
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"txn_id":"s%d","card_id":"c%06d","ts":%d,"amount":%d.%02d,' ..
    '"merchant":"m%05d","mcc":"grocery","country":"GB","channel":"pos"}',
    counter, (counter * 7919) % 1000, ts0 + (counter - first) * step,
    counter % 400, counter % 100, counter % 900)
  return wrk.format("POST", "/v1/pipelines/fraud/events",
                    {["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local o, x = 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    x = x + t:get("other")
  end
  io.write(string.format('RESULT {"ok":%d,"other":%d,"requests":%d,"errors":%d,' ..
    '"seconds":%.3f,"p50_us":%d,"p99_us":%d,"p999_us":%d}\\n',
    o, x, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout + summary.errors.status, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""
lua = write(os.path.join(out, "soak.lua"), LUA)
CONNECTIONS = 16


sent = 0  # requests of the earlier wrk runs
next_ts = 1775000000  # 2026-04-01, after the history: the next event time


def wrk(url, seconds, gap_ms, step=30):
    """Each run continues the event counter (ids) and the event time where
    the last one stopped, with a margin for the requests it left in
    flight: starting over would send every card events days older than
    its newest, which the server rejects as too_late (docs/windows.md).
    Event time advances STEP seconds per event."""
    global sent, next_ts
    run = subprocess.run(["wrk", "-t1", "-c%d" % CONNECTIONS, "-d%ds" % seconds,
                          "--timeout", "5s", "-s", lua, url, "--", str(gap_ms),
                          str(sent), str(next_ts), str(step)],
                         capture_output=True, text=True)
    m = re.search(r"RESULT (\{.*\})", run.stdout)
    expect(m is not None, "wrk: " + run.stdout + run.stderr)
    result = json.loads(m.group(1)) if m else {}
    used = result.get("requests", 0) + 10 * CONNECTIONS
    sent += used
    next_ts += used * step
    return result


def memory(pid):
    with open("/proc/%d/status" % pid) as f:
        text = f.read()
    get = lambda k: int(re.search(r"%s:\s+(\d+) kB" % k, text).group(1)) / 1024
    return get("VmRSS"), get("RssAnon")


def table_version(url):
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    m = re.search(r'tandem_table_version\{pipeline="fraud",table="card_profile"\} (\d+)',
                  text)
    return int(m.group(1)) if m else None


with Server(PIPELINE, "--store", store, "--state", state, "--threads", "2") as server:
    capacity = wrk(server.url, 4, 0)
    rate = capacity.get("requests", 0) / max(capacity.get("seconds", 1), 1e-9)
    # A connection's period is its delay plus the answer's latency: one
    # calibration run measures the latency at the target and corrects.
    target = LOAD * rate
    gap_ms = max(1, round(CONNECTIONS * 1000 / target)) if rate else 1
    trial = wrk(server.url, 3, gap_ms)
    achieved = trial.get("requests", 0) / max(trial.get("seconds", 1), 1e-9)
    if achieved:
        latency_ms = CONNECTIONS * 1000 / achieved - gap_ms
        gap_ms = max(1, round(CONNECTIONS * 1000 / target - latency_ms))
    print(f"capacity: {rate:.0f} events/s at {CONNECTIONS} connections; soak at "
          f"{LOAD:.0%}: {gap_ms} ms between a connection's requests, "
          f"{SECONDS} s", flush=True)
    version_before = table_version(server.url)

    samples = []
    stopping = threading.Event()

    def sample():
        while not stopping.is_set():
            samples.append((time.time(),) + memory(server.proc.pid))
            stopping.wait(1)

    refreshes = []

    def refresh():
        while not stopping.wait(REFRESH_S):
            r = tandem("batch", PIPELINE, "--in", history, "--out",
                       os.path.join(out, "refresh.csv"), "--materialize", "card_profile",
                       "--store", store, "--no-registry", "--threads", "1")
            refreshes.append(r.returncode)
            server.signal(signal.SIGHUP)

    workers = [threading.Thread(target=sample), threading.Thread(target=refresh)]
    for w in workers:
        w.start()
    result = wrk(server.url, SECONDS, gap_ms)
    stopping.set()
    for w in workers:
        w.join()
    # The server notices a new table version on its next read of the
    # store: poll until the last refresh is visible (or give up).
    version_after = wait_until(
        lambda: (lambda v: v if v is not None and version_before is not None and
                 v >= version_before + len(refreshes) - 1 else None)(
            table_version(server.url)),
        "the server reads the last refreshed table version") or \
        table_version(server.url)

print("soak:", json.dumps(result), flush=True)
expect(result.get("other") == 0 and result.get("errors") == 0 and result.get("ok", 0) > 0,
       f"every response 2xx, no socket errors: {result}")
expect(refreshes and all(rc == 0 for rc in refreshes),
       f"the refreshes ran: {refreshes}")
expect(version_before is not None and version_after is not None
       and version_after >= version_before + len(refreshes) - 1,
       f"table version {version_before} -> {version_after} after "
       f"{len(refreshes)} refreshes")
start = samples[0]
warm = [s for s in samples if s[0] - start[0] >= SECONDS / 5]
expect(len(warm) >= 5, f"RSS samples: {len(samples)}")
if warm:
    base_anon = warm[0][2]
    max_anon = max(s[2] for s in warm)
    figures = {
        "seconds": SECONDS, "capacity_per_s": round(rate),
        "rate_per_s": round(result.get("ok", 0) / max(result.get("seconds", 1), 1e-9)),
        "responses": result.get("ok"), "non_2xx": result.get("other"),
        "p50_ms": result.get("p50_us", 0) / 1000, "p99_ms": result.get("p99_us", 0) / 1000,
        "p999_ms": result.get("p999_us", 0) / 1000,
        "rss_mb": {"start": round(start[1], 1), "after_warm_up": round(warm[0][1], 1),
                   "end": round(samples[-1][1], 1),
                   "max": round(max(s[1] for s in samples), 1)},
        "anon_mb": {"start": round(start[2], 1), "after_warm_up": round(base_anon, 1),
                    "end": round(samples[-1][2], 1), "max": round(max_anon, 1)},
        "refreshes": len(refreshes), "table_version": [version_before, version_after],
        "asan": ASAN, "heap_bound_mb": round(base_anon * 1.2 + HEAP_SLACK_MB, 1),
    }
    print("FIGURES " + json.dumps(figures), flush=True)
    expect(max_anon <= base_anon * 1.2 + HEAP_SLACK_MB,
           f"heap grew from {base_anon:.1f} MB after warm-up to {max_anon:.1f} MB "
           f"(bound: 20% + {HEAP_SLACK_MB} MB)")
finish("test_soak")
