"""Hostile input over HTTP: dates out of range, deep JSON, NUL and lone
surrogates, huge integers, NUL in path ids, metric names. Each answers a JSON
4xx naming the problem, never a 500 and never a partial change."""

import json

import pytest

INGEST = "/api/v1/analytics/device-metrics"


def post_json(client, url, raw: str, **headers):
    return client.generic(
        "POST",
        url,
        raw.encode("utf-8", "surrogatepass"),
        content_type="application/json",
        **headers,
    )


# --- dates: years 1970-9999 ---------------------------------------------------------


@pytest.mark.parametrize(
    "end",
    [
        "0001-01-01",
        "0001-01-01T00:00:00+01:00",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59-05:00",
    ],
)
def test_a_series_query_with_an_end_outside_1970_9999_is_400(client, viewer, agent, end):
    client.force_authenticate(viewer)

    response = client.get(
        f"/api/v1/devices/{agent.device.device_id}/metrics", {"name": "cpu", "end": end}
    )

    assert response.status_code == 400, response.content
    assert "end" in response.json()


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", 1e300])
def test_a_sample_timestamp_outside_1970_9999_is_400(client, agent, ts):
    body = {"batch_id": "b-1", "samples": [{"ts": ts, "metrics": {"cpu": 1.0}}]}

    response = post_json(client, INGEST, json.dumps(body), **agent.headers)

    assert response.status_code == 400, response.content
    assert "ts" in response.json()["samples"]["0"]


@pytest.mark.parametrize("executed_at", ["0001-01-01T00:00:00+01:00", "1900-01-01T00:00:00Z"])
def test_a_command_result_executed_outside_1970_9999_is_400(client, agent, enqueue, executed_at):
    command = enqueue(agent)
    client.get("/api/v1/devices/pending", **agent.headers)

    response = client.put(
        f"/api/v1/devices/{command.command_id}/status",
        {"status": "completed", "executed_at": executed_at},
        format="json",
        **agent.headers,
    )

    assert response.status_code == 400, response.content
    assert "executed_at" in response.json()
    command.refresh_from_db()
    assert command.status == "delivered"
