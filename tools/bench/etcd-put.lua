-- etcd-put.lua: wrk script for tools/bench/etcd-bench (Debian's wrk 4.1, LuaJIT).
--
--   wrk -t 2 -c 64 -d 10s --timeout 5s -s etcd-put.lua http://127.0.0.1:PORT -- /v3/kv/put 256
--
-- Every request is a POST of a fresh key to etcd's JSON gateway (the path is the first script
-- argument), with a value of VALUE_BYTES (the second) of a fixed pattern, the same bytes
-- shoal-bench raft writes. The key is "etcd-bench/<thread>/<12-digit counter>": wrk calls
-- request() per thread, so thread and counter make it unique in the run. The gateway wants
-- keys and values base64-encoded; the value and the key's prefix are encoded once, only the
-- counter per request. The connections are wrk's (HTTP/1.1 keep-alive, one request in flight
-- each).
--
-- A response counts as a write if it is 200 with etcd's '{"header"' body; anything else is an
-- error. Each thread prints {"etcd_put":"second",...} for each second of its run (its own
-- clock from its first request), and done() prints one {"etcd_put":"done",...} line: wrk's
-- request count, duration and latency distribution (microseconds; wrk times a request from
-- writing it to its response's end, and requests still in flight when the time is up are not
-- counted), plus the errors. etcd-bench reads both; wrk's own text report is ignored.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } etcd_put_timespec;
  int clock_gettime(int clk_id, etcd_put_timespec* tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("etcd_put_timespec")
local function now_s()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64 = {}
for i = 1, 64 do b64[i - 1] = b64chars:sub(i, i) end

local function base64(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = b64[math.floor(v / 262144) % 64] .. b64[math.floor(v / 4096) % 64]
      .. (b and b64[math.floor(v / 64) % 64] or "=") .. (c and b64[v % 64] or "=")
  end
  return table.concat(out)
end

-- ---------------------------------------------------------------------------------------------
-- Main thread: number the threads, and gather their results in done().

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local errors, last = 0, {}
  for _, t in ipairs(threads) do
    errors = errors + (t:get("bad") or 0)
    -- The second a thread was in when the time was up: nothing after it printed it.
    local sec = t:get("sec")
    if sec and sec > 0 then
      last[#last + 1] = string.format('{"t":%d,"writes":%d,"errors":%d}', sec,
        t:get("sec_writes") or 0, t:get("sec_errors") or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"etcd_put":"done","requests":%d,"errors":%d,"duration_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d,"last_seconds":[%s]}\n',
    summary.requests, errors, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, table.concat(last, ",")))
  io.stdout:flush()
end

-- ---------------------------------------------------------------------------------------------
-- Worker threads.

local head, key_prefix_b64, body_tail
local counter = 0
bad = 0
sec, sec_writes, sec_errors = 0, 0, 0
local started

function init(args)
  local path = args[1] or "/v3/kv/put"
  local value_bytes = tonumber(args[2] or "256")
  local v = {}
  for i = 0, value_bytes - 1 do v[#v + 1] = string.char(97 + i % 26) end
  -- The prefix is padded to a multiple of 3 bytes so that its base64 can be glued to the
  -- counter's; the counter is 12 digits, also a multiple of 3.
  local id = tostring(thread_id or 0)
  while (#"etcd-bench/" + #id + 1) % 3 ~= 0 do id = "0" .. id end
  key_prefix_b64 = base64("etcd-bench/" .. id .. "/")
  body_tail = '","value":"' .. base64(table.concat(v)) .. '"}'
  local body_len = #'{"key":"' + #key_prefix_b64 + 16 + #body_tail
  head = "POST " .. path .. " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port ..
    "\r\nContent-Type: application/json\r\nContent-Length: " .. body_len .. "\r\n\r\n" ..
    '{"key":"' .. key_prefix_b64
end

function request()
  counter = counter + 1
  if not started then
    started = now_s()
    sec = 1
  end
  return head .. base64(string.format("%012d", counter)) .. body_tail
end

function response(status, headers, body)
  local t = math.floor(now_s() - started) + 1
  if t ~= sec then
    io.write(string.format('{"etcd_put":"second","thread":%d,"t":%d,"writes":%d,"errors":%d}\n',
      thread_id or 0, sec, sec_writes, sec_errors))
    io.stdout:flush()
    -- Seconds without a single answer are printed too, as zeros.
    for s = sec + 1, t - 1 do
      io.write(string.format('{"etcd_put":"second","thread":%d,"t":%d,"writes":0,"errors":0}\n',
        thread_id or 0, s))
    end
    io.stdout:flush()
    sec, sec_writes, sec_errors = t, 0, 0
  end
  if status == 200 and body:sub(1, 9) == '{"header"' then
    sec_writes = sec_writes + 1
  else
    bad = bad + 1
    sec_errors = sec_errors + 1
  end
end
