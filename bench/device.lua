-- wrk script for authenticated device requests (heartbeats, empty polls).
--
-- Sends METHOD PATH (default: POST {} to /api/v1/devices/heartbeat) with
-- X-Device-ID / X-API-Key, cycling through every device listed in the
-- credentials file (one "device_id<TAB>api_key" per line), given after "--":
--
--   wrk -s bench/device.lua http://127.0.0.1:8000 -- /tmp/devices.tsv [METHOD PATH]

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "wrk_common.lua")

local METHOD, PATH = "POST", "/api/v1/devices/heartbeat"
local prepared = {}
local position = 0

function init(args)
   local credentials_file = args[1]
   assert(credentials_file, "usage: wrk -s device.lua URL -- CREDENTIALS_FILE [METHOD PATH]")
   METHOD, PATH = args[2] or METHOD, args[3] or PATH
   local body = METHOD == "POST" and "{}" or nil
   for line in io.lines(credentials_file) do
      local device_id, api_key = line:match("^(%S+)\t(%S+)$")
      if device_id then
         prepared[#prepared + 1] = wrk.format(METHOD, PATH, {
            ["Content-Type"] = "application/json",
            ["X-Device-ID"] = device_id,
            ["X-API-Key"] = api_key,
         }, body)
      end
   end
   assert(#prepared > 0, "no credentials in " .. credentials_file)
   -- Spread the threads over the fleet instead of all starting at device 1.
   position = ((thread_index or 0) * 7919) % #prepared
end

function request()
   position = position % #prepared + 1
   return prepared[position]
end
