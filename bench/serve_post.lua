-- serve_post.lua - wrk script for bench/bench_serve.py: POSTs one fixed
-- JSON body to the URL given to wrk, and prints a JSON summary at the end.
--
--   WRK_BODY=req.json [WRK_DELAY_MS=D] wrk ... -s bench/serve_post.lua URL
--
-- WRK_BODY    file holding the request body (sent as application/json).
-- WRK_INFERENCE_HEADER  optional: the body is in the binary tensor data
--             extension's form and its JSON header has this many bytes
--             (sent as Inference-Header-Content-Length, with
--             Content-Type: application/octet-stream).
-- WRK_DELAY_MS  optional: each connection waits D ms after every response
--             before sending its next request (wrk's delay() hook), which
--             paces the load at about connections * 1000 / (D + latency)
--             requests/s. wrk times a request from when it is written, so
--             the wait is not counted in its latency.
--
-- done() prints one line, "WRK_JSON {...}", with the totals and latency
-- percentiles in microseconds, beside wrk's own report.

local path = os.getenv("WRK_BODY")
if path == nil then
  error("serve_post.lua: set WRK_BODY to the request body's file")
end
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
local inference_header = os.getenv("WRK_INFERENCE_HEADER")
if inference_header ~= nil then
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = inference_header
else
  wrk.headers["Content-Type"] = "application/json"
end

local pause = tonumber(os.getenv("WRK_DELAY_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_s":%.6f,"requests_per_s":%.3f,' ..
    '"bytes":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_status":%d,"errors_timeout":%d,"latency_us":{"mean":%.3f,' ..
    '"max":%d,"p50":%d,"p90":%d,"p99":%d,"p99_9":%d}}\n',
    summary.requests, seconds, summary.requests / seconds, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, latency.mean,
    latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
