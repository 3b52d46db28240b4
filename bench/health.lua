-- wrk script for the trivial endpoint: GET /health.
--
-- It goes through a Lua request() like device.lua does, so that both runs
-- pay the same client-side cost and only the server side differs.
--
--   wrk -s bench/health.lua http://127.0.0.1:8000

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "wrk_common.lua")

local prepared

function init(args)
   prepared = wrk.format("GET", "/health")
end

function request()
   return prepared
end
