"""Agentless targets checked over SSH by the server (the WET board).

- `checks`: the built-in checks and the parsers that turn output into metrics.
- `transport`: one SSH connection with the pinned host key only (paramiko).
- `identity`: the server's SSH key (HOMEPOT_SSH_KEY_FILE).
- `limits`: how many sessions run at once, globally and per target.
- `runner`: one round of a target's checks on one connection, and its outcome
  (status, circuit breaker, events, telemetry, presence).
- `schedule`: which checks are due, claimed so that no round runs twice.
- `telemetry`: where the metrics go (analytics registers the ingest service;
  devices does not import analytics).
"""
