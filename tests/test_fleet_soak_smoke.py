"""A short fleet soak (bench/fleet_soak.py) as CI's smoke test: correctness only.

Some hundred simulated agents long-poll, heartbeat and push telemetry against a
real gunicorn + uvicorn server on PostgreSQL and Redis while an operator queues
commands. Nothing here looks at timing (CI shares its machine): only that every
acknowledged value is in the database once, and every queued command was
delivered and acknowledged exactly once.

The script makes its own database (``<DATABASE_URL's name>_soak_smoke``) and
uses its own Redis DB (15 on REDIS_URL's server, or FLEET_SOAK_REDIS_URL), so
the suite's test database and cache are left alone.
"""

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "fleet_soak.py"
AGENTS, COMMANDS = 300, 60


def _soak_urls() -> tuple[str, str]:
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database_url.startswith("postgres") or not redis_url:
        message = "the fleet soak needs PostgreSQL and Redis (CI sets DATABASE_URL and REDIS_URL)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    database = urllib.parse.urlsplit(database_url)
    name = database.path.lstrip("/") or "homepot"
    soak_database = database._replace(path=f"/{name}_soak_smoke").geturl()
    soak_redis = urllib.parse.urlsplit(redis_url)._replace(path="/15").geturl()
    return soak_database, os.environ.get("FLEET_SOAK_REDIS_URL", soak_redis)


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    database_url, redis_url = _soak_urls()
    summary_path = tmp_path_factory.mktemp("soak") / "summary.json"
    command = [
        sys.executable, str(SCRIPT),
        "--agents", str(AGENTS), "--seconds", "35", "--ramp", "5",
        "--push-interval", "10", "--commands", str(COMMANDS),
        "--database-url", database_url, "--redis-url", redis_url,
        "--json-out", str(summary_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert summary_path.exists(), f"no summary:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result, json.loads(summary_path.read_text())


@pytest.mark.timeout(300)
def test_the_soak_finds_nothing_lost_and_nothing_twice(soak) -> None:  # noqa: ANN001
    result, summary = soak
    assert result.returncode == 0, result.stdout[-4000:]
    assert summary["correct"] is True


@pytest.mark.timeout(300)
def test_every_acknowledged_value_is_stored_once(soak) -> None:  # noqa: ANN001
    _, summary = soak
    samples = summary["samples"]
    # Every agent pushed several 120-value batches.
    assert samples["values_acknowledged"] >= AGENTS * 120 * 2
    assert samples["lost"] == 0
    assert samples["devices_short_count"] == 0
    assert samples["devices_over_count"] == 0
    sent, doubt = samples["values_acknowledged"], samples["values_in_doubt"]
    assert sent <= samples["rows_stored"] <= sent + doubt


@pytest.mark.timeout(300)
def test_every_command_is_acknowledged_exactly_once(soak) -> None:  # noqa: ANN001
    _, summary = soak
    commands = summary["commands"]
    assert commands["queued"] == COMMANDS
    assert commands["acked"] == COMMANDS
    assert commands["lost"] == 0
    assert commands["twice"] == 0
    assert commands["database"]["by_status"] == {"succeeded": COMMANDS}
