"""Two `tandem serve` replicas reading one table in Redis, behind nginx
(docs/hybrid.md, "A deployment of N replicas"): nginx-light and
redis-server as users run them, started here on loopback ports.

nginx routes each request by the entity in its body (a `map` over
$request_body, then `hash $entity consistent`), so every event of a card
reaches the same replica and its windows live there.

1. `tandem replay --batch 1` through nginx: 0 differences from batch over
   the same events with the same Redis table; both replicas answered some
   events, and the entities they hold add up to the distinct cards (no
   card was split between them).
2. A refresh (a new version materialized) while wrk runs against both
   replicas through nginx: no request fails, and both replicas move to the
   new version while the load is still running.
"""
import json
import os
import re
import signal
import socket
import subprocess
import urllib.request

from common import expect, finish, free_port, tmpdir, wait_until
from pipeline_util import fmt_time, make_model, tandem, write, write_csv
from serve_util import Server
from redis_util import Redis

NGINX = "/usr/sbin/nginx"
out = tmpdir()
redis = Redis(free_port())
URL = "redis://127.0.0.1:%d/0" % redis.port

FEATURES = ["log_amount", "n_1h", "sum_1d", "profile_mean", "profile_n"]
pipeline = write(os.path.join(out, "p.yaml"), """\
name: rep
entity: card
time: ts
id: txn
store: %s
fields: {txn: string, card: string, ts: time, amount: number}
features:
  - {name: log_amount, expr: "log1p(amount)"}
  - {name: n_1h, agg: count, window: 1h}
  - {name: sum_1d, agg: sum(amount), window: 1d}
  - {name: profile_mean, lookup: profile.sum_1d, default: -1}
  - {name: profile_n, lookup: profile.n_1h}
model: {path: model.json}
materialize:
  - {table: profile, columns: [sum_1d, n_1h, score], keep: 2}
decision:
  - {when: "score >= 0.5", then: block}
  - {then: approve}
""" % URL)
make_model(os.path.join(out, "model.json"), FEATURES, seed=11)
COLUMNS = ["txn", "card", "ts", "amount"]
T0 = 1_767_225_600_000


def events(prefix, start, n, cards, step):
    return [{"txn": "%s%d" % (prefix, i), "card": "k%d" % ((i * 13) % cards),
             "ts": fmt_time(start + i * step), "amount": "%.2f" % (3 + (i * 53) % 400)}
            for i in range(n)]


history = write_csv(os.path.join(out, "history.csv"), COLUMNS,
                    events("h", T0, 800, 60, 45_000))
r = tandem("batch", pipeline, "--in", history, "--out",
           os.path.join(out, "history.jsonl"), "--materialize", "profile")
expect(r.returncode == 0, "materialize: " + r.stderr)
CARDS = 70  # some cards have no row in the table: their default is checked too
live = write_csv(os.path.join(out, "live.csv"), COLUMNS,
                 events("l", T0 + 86_400_000, 600, CARDS, 20_000))


class Nginx:
    """nginx in the foreground, hashing each request's entity to one of the
    upstream ports."""

    def __init__(self, ports):
        self.port = free_port()
        conf = os.path.join(out, "nginx.conf")
        servers = "".join("    server 127.0.0.1:%d;\n" % p for p in ports)
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
worker_processes 1;
pid {out}/nginx.pid;
error_log {out}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {out}/nginx-body;
  proxy_temp_path {out}/nginx-proxy;
  fastcgi_temp_path {out}/nginx-fastcgi;
  uwsgi_temp_path {out}/nginx-uwsgi;
  scgi_temp_path {out}/nginx-scgi;
  # The entity of the request's event (one per request): the body is read
  # whole before the upstream is chosen (proxy_request_buffering on).
  client_body_buffer_size 64k;
  map $request_body $entity {{
    default "";
    "~\\"card\\":\\"(?<card>[^\\"]*)\\"" $card;
  }}
  upstream replicas {{
    hash $entity consistent;
{servers}    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-c", conf, "-p", out],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return self.proc.poll() is not None
        wait_until(up, "nginx listens")
        expect(self.proc.poll() is None, "nginx started")
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(30)


def metric(server, name, labels='pipeline="rep"'):
    text = urllib.request.urlopen(server.url + "/metrics").read().decode()
    m = re.search(r"^%s\{%s\} (\d+)" % (re.escape(name), re.escape(labels)), text,
                  re.M)
    return int(m.group(1)) if m else None


LUA = """
counter = 0
function request()
  counter = counter + 1
  local body = string.format(
    '{"txn":"w%d","card":"k%d","ts":%d,"amount":%d}',
    counter, counter % 70, 1767400000 + counter, counter % 300)
  return wrk.format("POST", "/v1/pipelines/rep/events",
                    {["Content-Type"] = "application/json"}, body)
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
ok = 0
other = 0
first = ""
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else
    other = other + 1
    if first == "" then first = status .. " " .. string.sub(body, 1, 200) end
  end
end
function done(summary, latency, requests)
  local o, x, f = 0, 0, ""
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); x = x + t:get("other")
    if f == "" then f = t:get("first") end
  end
  io.write(string.format('RESULT {"ok":%d,"other":%d,"errors":%d}\\n', o, x,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout + summary.errors.status))
  io.write("FIRST " .. f .. "\\n")
end
"""
lua = write(os.path.join(out, "load.lua"), LUA)

with Server(pipeline) as one, Server(pipeline) as two:
    nginx = Nginx([one.port, two.port])
    try:
        # ---- 1. replay through the consistent hash ----
        r = tandem("replay", pipeline, "--in", live, "--url", nginx.url,
                   "--batch", "1")
        expect(r.returncode == 0 and "0 differences" in (r.stdout + r.stderr),
               "replay through nginx: " + r.stdout + r.stderr)
        events_one = metric(one, "tandem_pipeline_events_total",
                            'pipeline="rep",outcome="scored"')
        events_two = metric(two, "tandem_pipeline_events_total",
                            'pipeline="rep",outcome="scored"')
        expect(events_one > 0 and events_two > 0 and events_one + events_two == 600,
               f"both replicas answered: {events_one} + {events_two}")
        held = (metric(one, "tandem_pipeline_entities") +
                metric(two, "tandem_pipeline_entities"))
        expect(held == CARDS, f"no card split between replicas: {held} held")
        print("replay through nginx: 0 differences;", events_one, "+", events_two,
              "events,", held, "cards", flush=True)

        # ---- 2. a refresh while wrk runs against both ----
        before = [metric(s, "tandem_pipeline_requests_total") for s in (one, two)]
        load = subprocess.Popen(["wrk", "-t1", "-c16", "-d10s", "-s", lua, nginx.url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        wait_until(lambda: all(metric(s, "tandem_pipeline_requests_total") > b + 100
                               for s, b in zip((one, two), before)),
                   "load reaches both replicas")
        r = tandem("batch", pipeline, "--in", history, "--out",
                   os.path.join(out, "again.jsonl"), "--materialize", "profile",
                   "--as-of", fmt_time(T0 + 86_400_000))
        expect(r.returncode == 0, "refresh: " + r.stderr)
        wait_until(lambda: all(metric(s, "tandem_table_version",
                                      'pipeline="rep",table="profile"') == 2
                               for s in (one, two)), "both replicas follow version 2")
        during = load.poll() is None
        stdout, stderr = load.communicate(timeout=120)
        m = re.search(r"RESULT (\{.*\})", stdout)
        expect(m is not None, "wrk result: " + stdout + stderr)
        res = json.loads(m.group(1)) if m else {}
        print("refresh under load:", res, "followed during the load:", during,
              flush=True)
        expect(res.get("ok", 0) > 0 and res.get("other") == 0 and res.get("errors") == 0,
               f"no request lost: {res}; first failure: " +
               stdout[stdout.find("FIRST"):][:300])
        expect(during, "the refresh was followed while wrk still ran (raise -d on a "
                       "slower machine)")
    finally:
        nginx.stop()
redis.stop()
finish("test_hybrid_replicas")
