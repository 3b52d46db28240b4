-- wrk script for HOMEPOT's flat metrics push: POST /api/v1/analytics/device-metrics.
--
-- The body is the flat object HOMEPOT's agents send, six values, no timestamp
-- (the server stores them at its own "now", so every request is new rows):
--
--   {"cpu_percent": 12.345, "memory_percent": ..., "disk_percent": ...,
--    "network_latency_ms": ..., "active_connections": 7, "extra_metrics": {"temperature_c": ...}}
--
-- It cycles through every device listed in the credentials file (one
-- "device_id<TAB>api_key" per line), given after "--":
--
--   wrk -s bench/flat_push.lua http://127.0.0.1:8000 -- /tmp/devices.tsv
--
-- A device comes round again only after the rest of the fleet, so no two of its
-- pushes land in the same microsecond and every value is a new row (the
-- samples' key is device, metric, ts). done() prints the WRK_JSON line that
-- bench/auth_bench.py parses (wrk_common.lua); auth_bench.py checks that
-- 6 rows per successful push arrived in the database.

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "wrk_common.lua")

local PATH = "/api/v1/analytics/device-metrics"
local devices = {}
local position = 0

function init(args)
   local credentials_file = args[1]
   assert(credentials_file, "usage: wrk -s flat_push.lua URL -- CREDENTIALS_FILE")
   for line in io.lines(credentials_file) do
      local device_id, api_key = line:match("^(%S+)\t(%S+)$")
      if device_id then
         devices[#devices + 1] = {
            ["Content-Type"] = "application/json",
            ["X-Device-ID"] = device_id,
            ["X-API-Key"] = api_key,
         }
      end
   end
   assert(#devices > 0, "no credentials in " .. credentials_file)
   -- Spread the threads over the fleet instead of all starting at device 1.
   position = ((thread_index or 0) * 7919) % #devices
   math.randomseed(7 + (thread_index or 0))
end

local function body()
   return string.format(
      '{"cpu_percent":%.3f,"memory_percent":%.3f,"disk_percent":%.3f,' ..
      '"network_latency_ms":%.3f,"active_connections":%d,' ..
      '"extra_metrics":{"temperature_c":%.3f}}',
      math.random() * 100, math.random() * 100, math.random() * 100,
      math.random() * 50, math.random(0, 200), 30 + math.random() * 40)
end

function request()
   position = position % #devices + 1
   return wrk.format("POST", PATH, devices[position], body())
end
