-- pipeline_events.lua - wrk script for bench/bench_pipeline.py: POSTs new
-- card transactions to a live pipeline, each with a unique txn_id and an
-- event time that moves forward, for random cards among WRK_CARDS, so every
-- request does the full work (no duplicate shortcut).
--
--   WRK_PATH=/v1/pipelines/fraud/events WRK_BATCH=1 WRK_CARDS=5000 \
--     wrk ... -s bench/pipeline_events.lua URL
--
-- WRK_BATCH > 1 sends a JSON array of that many events per request.
-- done() prints "WRK_JSON {...}" with totals and latency percentiles (us).

local path = os.getenv("WRK_PATH") or "/v1/pipelines/fraud/events"
local batch = tonumber(os.getenv("WRK_BATCH") or "1")
local cards = tonumber(os.getenv("WRK_CARDS") or "5000")
local mccs = {"grocery", "restaurant", "fuel", "online", "atm", "electronics",
              "travel", "gaming"}
local channels = {"pos", "online", "atm"}
local countries = {"GB", "DE", "FR", "IT", "ES", "NL"}

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(id * 7919)
  counter = 0
end

local function event()
  counter = counter + 1
  -- 1.7e9 s is 2023-11; 20 events per second of event time per thread
  local ts = 1700000000 + counter / 20.0
  return string.format(
    '{"txn_id":"w%d-%d","card_id":"c%06d","ts":%.3f,"amount":%.2f,' ..
    '"merchant":"m%05d","mcc":"%s","country":"%s","channel":"%s"}',
    id, counter, math.random(cards), ts, math.random() * 200,
    math.random(2000), mccs[math.random(#mccs)],
    countries[math.random(#countries)], channels[math.random(#channels)])
end

function request()
  local body
  if batch == 1 then
    body = event()
  else
    local parts = {}
    for i = 1, batch do parts[i] = event() end
    body = "[" .. table.concat(parts, ",") .. "]"
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_s":%.6f,"requests_per_s":%.3f,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_status":%d,"errors_timeout":%d,"latency_us":{"mean":%.3f,' ..
    '"max":%d,"p50":%d,"p90":%d,"p99":%d}}\n',
    summary.requests, seconds, summary.requests / seconds,
    e.connect, e.read, e.write, e.status, e.timeout, latency.mean,
    latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
