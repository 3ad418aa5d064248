-- wrk script: POST the platform's token request body with a unique room per request, then print
-- one JSON line of figures.
-- Usage: wrk ... -s bench/wrk_token.lua URL -- <room-prefix> [api-key] [origin]
-- Rooms are named <room-prefix>-<thread>-<n>, n = 1, 2, ... per thread; "counters" in the JSON
-- line is each thread's last n (requests built, including any still in flight at the end, and
-- thread 1's first, which wrk builds to check the script and never sends).
-- An empty api-key or origin sends no Authorization or Origin header.
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or "bench"
  key = args[2]
  origin = args[3]
  counter = 0
  non200 = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"room_name":"%s-%d-%d","participant_name":"simulated_user","language":"en"}',
    prefix, id, counter)
  local headers = { ["Content-Type"] = "application/json" }
  if key and key ~= "" then headers["Authorization"] = "Bearer " .. key end
  if origin and origin ~= "" then headers["Origin"] = origin end
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  local counters = {}
  for _, t in ipairs(threads) do
    bad = bad + t:get("non200")
    table.insert(counters, string.format("%d", t:get("counter")))
  end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_s":%.3f,"non200":%d,"socket_errors":%d,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"counters":[%s]}\n',
    summary.requests, summary.duration / 1e6, bad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, table.concat(counters, ",")))
end
