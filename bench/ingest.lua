-- wrk script for telemetry batch ingest: POST /api/v1/analytics/device-metrics.
--
-- Every request is a new batch of one device, cycling through the devices of
-- the credentials file (one "device_id<TAB>api_key" per line):
--
--   {"batch_id": "<run>-t<thread>-<device>-<n>",
--    "samples": [{"ts": "<ISO 8601, ms>Z", "metrics": {"<name>": <number>, ...}}, ...]}
--
-- Batch ids never repeat, and no two samples of a device share a timestamp
-- across threads and runs ("lanes"), so nothing is deduplicated and every
-- value becomes one row. Timestamps start at BASE_MS and advance by
-- SPACING_MS per sample, interleaved:
--   ts = BASE_MS + ((n * LANES + LANE) * THREADS + thread) * SPACING_MS
--
--   wrk -t2 -c16 -d20s -s bench/ingest.lua http://127.0.0.1:8000 -- \
--       CREDENTIALS BASE_MS LANE LANES THREADS SAMPLES METRICS SPACING_MS RUN_TAG
--
-- done() prints one machine-readable line for bench/telemetry_bench.py:
--   WRK_JSON {"requests": ..., "created": ..., "duplicates": ..., "other": ..., ...}

local PATH = "/api/v1/analytics/device-metrics"
local NAMES = {
   "cpu_percent", "memory_percent", "disk_percent", "network_latency_ms", "transaction_count",
   "transaction_volume", "error_rate", "active_connections", "temperature_c", "fan_rpm",
}

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
   threads[#threads + 1] = thread
end

local devices = {}      -- {id = ..., headers = {...}, next_sample = 0, batches = 0}
local position = 0
local base_ms, lane, lanes, thread_total, samples, metrics, spacing_ms, run_tag
local names = {}

-- Counted per thread, summed in done().
created, duplicates, other = 0, 0, 0

function init(args)
   local credentials_file = args[1]
   assert(credentials_file and #args >= 9, "usage: see bench/ingest.lua")
   base_ms = tonumber(args[2])
   lane, lanes, thread_total = tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
   samples, metrics, spacing_ms = tonumber(args[6]), tonumber(args[7]), tonumber(args[8])
   run_tag = args[9]
   assert((thread_index or 0) < thread_total, "THREADS smaller than wrk -t")
   for i = 1, metrics do
      names[i] = NAMES[i] or string.format("metric_%03d", i)
   end
   for line in io.lines(credentials_file) do
      local device_id, api_key = line:match("^(%S+)\t(%S+)$")
      if device_id then
         devices[#devices + 1] = {
            id = device_id,
            headers = {
               ["Content-Type"] = "application/json",
               ["X-Device-ID"] = device_id,
               ["X-API-Key"] = api_key,
            },
            next_sample = 0,
            batches = 0,
         }
      end
   end
   assert(#devices > 0, "no credentials in " .. credentials_file)
   -- Spread the threads over the fleet instead of all starting at device 1.
   position = ((thread_index or 0) * 7919) % #devices
   math.randomseed(base_ms + lane * 1000 + (thread_index or 0))
end

local function iso(ms)
   return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", ms % 1000)
end

local function body_for(device)
   local parts = {}
   for s = 1, samples do
      local n = device.next_sample
      device.next_sample = n + 1
      local ms = base_ms + ((n * lanes + lane) * thread_total + (thread_index or 0)) * spacing_ms
      local values = {}
      for m = 1, metrics do
         values[m] = string.format('"%s":%.3f', names[m], math.random() * 100)
      end
      parts[s] = string.format('{"ts":"%s","metrics":{%s}}', iso(ms), table.concat(values, ","))
   end
   device.batches = device.batches + 1
   local batch_id = string.format("%s-t%d-%s-%d", run_tag, thread_index or 0, device.id, device.batches)
   return string.format('{"batch_id":"%s","samples":[%s]}', batch_id, table.concat(parts, ","))
end

function request()
   position = position % #devices + 1
   local device = devices[position]
   return wrk.format("POST", PATH, device.headers, body_for(device))
end

function response(status, headers, body)
   if status == 201 then
      created = created + 1
   elseif status == 200 then
      duplicates = duplicates + 1
   else
      other = other + 1
      if other <= 3 then
         io.stderr:write(string.format("HTTP %d: %s\n", status, body:sub(1, 300)))
      end
   end
end

function done(summary, latency, requests)
   local c, d, o = 0, 0, 0
   for _, thread in ipairs(threads) do
      c = c + thread:get("created")
      d = d + thread:get("duplicates")
      o = o + thread:get("other")
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
      '"status_errors": %d, "timeouts": %d, "mean_us": %.1f, "max_us": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
      '"created": %d, "duplicates": %d, "other": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      c, d, o))
end
