-- wrk script for tests/benches/api.rs: every request is `GET /track`, a participation in one of
-- 20 experiments x 2 variants with a fresh random 128-bit uuid (the shape of oha's
-- --rand-regex-url row and of scripts/bench/lamed_track.py's events). At the end it prints one
-- line the bench reads: WRK_RESULT requests=… status_errors=… socket_errors=… p50_us=… p99_us=…
local variants = { "control", "treatment" }
local counter = 0
local random, format = math.random, string.format
local host

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  -- A different sequence per thread and per run.
  math.randomseed(os.time() * 1000 + (id or 0))
  -- wrk.init has set it from the URL before calling this.
  host = wrk.headers["Host"]
end

-- One format call makes the whole request (wrk.format and eight calls per uuid cost wrk
-- 13 us of CPU per request on two shared cores, this 9 us: what wrk spends is taken from the
-- API and Redis beside it).
function request()
  return format(
    "GET /track?experiment=flag-%d&variant=%s&event=participate"
      .. "&uuid=%04x%04x%04x%04x%04x%04x%04x%04x HTTP/1.1\r\nHost: %s\r\n\r\n",
    random(0, 19), variants[random(1, 2)],
    random(0, 65535), random(0, 65535), random(0, 65535), random(0, 65535),
    random(0, 65535), random(0, 65535), random(0, 65535), random(0, 65535),
    host)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d status_errors=%d socket_errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
