-- txn.lua: wrk load script for   POST <base>/txn   (transactions).
--
--   wrk -t2 -c64 -d10s --latency -s txn.lua http://127.0.0.1:23333 -- [move|get] [N]
--
-- move (default): {"If":[k<x> exists, k<y> exists],"Then":[set k<x>, set k<y>]},
--   the "move an item between two keys" of the README, on two distinct keys;
-- get: {"Then":[get k<x>, get k<y>]}, a read-only transaction.
-- Keys k0..k(N-1), N from the second argument, else $KEYS, else 10000: load
-- them first, for example with ../shared/bench/set.lua in its preload mode.
-- Requests are pre-built per wrk thread (8192 of them), so wrk spends little
-- CPU per request. done() prints one line starting with "ANCHOR script=txn".

local POOL = 8192
local pool = {}
local mode = "move"

function init(args)
   mode = args[1] or "move"
   local n = tonumber(args[2] or os.getenv("KEYS") or "") or 10000
   math.randomseed(os.time() * 1000 + math.random(1, 1000000))
   local path = (wrk.path or "/"):gsub("/+$", "") .. "/txn"
   local headers = { ["Content-Type"] = "application/json" }
   for i = 1, POOL do
      local x = math.random(0, n - 1)
      local y = math.random(0, n - 2)
      if y >= x then y = y + 1 end
      local body
      if mode == "get" then
         body = string.format('{"Then":[{"Op":"get","Key":"k%d"},{"Op":"get","Key":"k%d"}]}', x, y)
      else
         body = string.format('{"If":[{"Key":"k%d","Exists":true},{"Key":"k%d","Exists":true}],' ..
            '"Then":[{"Op":"set","Key":"k%d","Value":"0123456789abcdef"},{"Op":"set","Key":"k%d","Value":"fedcba9876543210"}]}',
            x, y, x, y)
      end
      pool[i] = wrk.format("POST", path, headers, body)
   end
end

function request()
   return pool[math.random(1, POOL)]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "ANCHOR script=txn requests=%d duration_s=%.2f rps=%.0f p50_us=%d p99_us=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99),
      e.connect, e.read, e.write, e.status, e.timeout))
end
