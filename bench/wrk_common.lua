-- Shared by health.lua and device.lua (loaded with dofile).
--
-- setup() numbers the wrk threads so each can start at a different device;
-- done() prints one machine-readable line that bench/auth_bench.py parses:
--   WRK_JSON {"requests": ..., "status_errors": ..., "p50_us": ..., ...}

local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
      '"status_errors": %d, "timeouts": %d, "mean_us": %.1f, "max_us": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
