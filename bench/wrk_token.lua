-- wrk script: POST the platform's token request body with a unique room per request, then print
-- one JSON line of figures. Usage: wrk ... -s bench/wrk_token.lua URL -- <room-prefix> [api-key]
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or "bench"
  key = args[2]
  counter = 0
  non200 = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"room_name":"%s-%d-%d","participant_name":"simulated_user","language":"en"}',
    prefix, id, counter)
  local headers = { ["Content-Type"] = "application/json" }
  if key then headers["Authorization"] = "Bearer " .. key end
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("non200") end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_s":%.3f,"non200":%d,"socket_errors":%d,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, bad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3))
end
