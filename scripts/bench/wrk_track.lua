-- wrk script for tests/benches/api.rs: every request is `GET /track`, a participation in one of
-- 20 experiments x 2 variants with a fresh random 128-bit uuid (the shape of oha's
-- --rand-regex-url row and of scripts/bench/lamed_track.py's events). At the end it prints one
-- line the bench reads: WRK_RESULT requests=… status_errors=… socket_errors=… p50_us=… p99_us=…
local variants = { "control", "treatment" }
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  -- A different sequence per thread and per run.
  math.randomseed(os.time() * 1000 + (id or 0))
end

local function hex16()
  return string.format("%04x", math.random(0, 65535))
end

function request()
  local uuid = hex16() .. hex16() .. hex16() .. hex16() .. hex16() .. hex16() .. hex16() .. hex16()
  local path = "/track?experiment=flag-" .. math.random(0, 19)
    .. "&variant=" .. variants[math.random(1, 2)]
    .. "&event=participate&uuid=" .. uuid
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d status_errors=%d socket_errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
