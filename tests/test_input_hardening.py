"""Hostile input over HTTP: dates out of range, deep JSON, NUL and lone
surrogates, huge integers, NUL in path ids, metric names. Each answers a JSON
4xx naming the problem, never a 500 and never a partial change."""

import json

import pytest

from commands.models import Command

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
        f"/api/v1/devices/{agent.device.public_id}/metrics", {"name": "cpu", "end": end}
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
        f"/api/v1/devices/{command.public_id}/status",
        {"status": "completed", "executed_at": executed_at},
        format="json",
        **agent.headers,
    )

    assert response.status_code == 400, response.content
    assert "executed_at" in response.json()
    command.refresh_from_db()
    assert command.status == "delivered"


# --- JSON nested too deeply: 400 before any authentication, never RecursionError -------


def deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def test_deep_json_on_registration_is_400_before_the_token_is_checked(client, site):
    body = (
        '{"device_id": "pi-9", "name": "x", "device_type": "raspberry_pi", "attributes": {"a": '
        + deep(100_000)
        + "}}"
    )

    response = post_json(
        client, "/api/v1/devices/sites/lab-1/devices", body, HTTP_X_ENROLLMENT_TOKEN="het_bogus"
    )

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "too_deep"


@pytest.mark.parametrize("depth", [65, 500, 5000])
def test_json_deeper_than_64_is_400_on_device_endpoints_before_auth(client, agent, depth):
    headers = {"HTTP_X_DEVICE_ID": agent.device.public_id, "HTTP_X_API_KEY": "hpk_wrong_key"}

    response = post_json(
        client, "/api/v1/devices/heartbeat", '{"attributes": {"a": ' + deep(depth) + "}}", **headers
    )

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "too_deep"


def test_json_64_deep_is_accepted(client, agent):
    # 1 (the body) + 1 (attributes) + 62 lists = 64 levels
    body = '{"attributes": {"a": ' + deep(62) + "}}"

    response = post_json(client, "/api/v1/devices/heartbeat", body, **agent.headers)

    assert response.status_code == 200, response.content


def test_brackets_inside_strings_do_not_count_as_depth(client, agent):
    body = json.dumps({"attributes": {"note": "[" * 500 + "{" * 500}})

    response = post_json(client, "/api/v1/devices/heartbeat", body, **agent.headers)

    assert response.status_code == 200, response.content


# --- NUL characters and lone surrogates -------------------------------------------------


HEARTBEAT = "/api/v1/devices/heartbeat"


def attributes_of(agent) -> dict:
    agent.device.refresh_from_db()
    return agent.device.attributes or {}


@pytest.mark.parametrize(
    "raw",
    [
        '{"attributes": {"x": "a\\u0000b"}}',
        '{"attributes": {"a\\u0000": 1}}',
        '{"attributes": {"x": "\\ud800"}}',
        '{"attributes": {"x": ["\\udc00x"]}}',
        '{"attributes": {"x": "\\ud83d"}}',
        '{"agent_version": "1.0\\u0000"}',
    ],
)
def test_nul_or_a_lone_surrogate_in_a_json_string_is_400_and_stores_nothing(client, agent, raw):
    response = post_json(client, HEARTBEAT, raw, **agent.headers)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_string"
    assert attributes_of(agent) == {}


def test_a_surrogate_pair_is_a_character_not_a_lone_surrogate(client, agent):
    raw = '{"attributes": {"x": "\\ud83d\\ude00 and \\\\u0000 as text"}}'

    response = post_json(client, HEARTBEAT, raw, **agent.headers)

    assert response.status_code == 200, response.content
    assert attributes_of(agent) == {"x": "\U0001f600 and \\u0000 as text"}


def test_nul_in_a_command_payload_is_400_and_queues_nothing(client, operator, agent):
    client.force_authenticate(operator)
    raw = '{"command_type": "restart_service", "payload": {"service": "nginx\\u0000"}}'

    response = post_json(client, f"/api/v1/devices/{agent.device.public_id}/commands", raw)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_string"
    assert not Command.objects.exists()


def test_nul_in_heartbeat_attributes_is_400(client, agent):
    raw = '{"attributes": {"os": "linux\\u0000"}}'

    response = post_json(client, "/api/v1/devices/heartbeat", raw, **agent.headers)

    assert response.status_code == 400, response.content
    agent.device.refresh_from_db()
    assert agent.device.attributes in ({}, None)


def test_nul_in_a_command_result_is_400(client, agent, enqueue):
    command = enqueue(agent)
    client.get("/api/v1/devices/pending", **agent.headers)
    raw = '{"status": "completed", "result": {"out": "\\u0000"}}'

    response = client.generic(
        "PUT",
        f"/api/v1/devices/{command.public_id}/status",
        raw.encode(),
        content_type="application/json",
        **agent.headers,
    )

    assert response.status_code == 400, response.content
    command.refresh_from_db()
    assert command.status == "delivered"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/metrics/names?device=pi%00",
        "/api/v1/devices?q=a%00b",
        "/api/v1/devices?site=%00",
        "/api/v1/devices/pi-1/commands?status=%00",
        "/api/v1/devices/pi-1/metrics?name=cpu%00",
    ],
)
def test_nul_in_a_query_string_is_400(client, viewer, agent, url):
    client.force_authenticate(viewer)

    response = client.get(url)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_string"


@pytest.mark.parametrize(
    "header",
    ["HTTP_X_DEVICE_ID", "HTTP_X_API_KEY", "HTTP_X_ENROLLMENT_TOKEN", "HTTP_IDEMPOTENCY_KEY"],
)
def test_nul_in_a_header_value_used_as_an_id_is_400(client, agent, header):
    headers = {**agent.headers, header: "pi\x00-1"}

    response = client.post("/api/v1/devices/heartbeat", **headers)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_string"


# --- integers outside signed 64 bits ----------------------------------------------------


@pytest.mark.parametrize("number", ["9" * 400, str(2**63), str(-(2**63) - 1), "-" + "1" * 30])
def test_an_integer_outside_64_bits_in_a_json_body_is_400(client, agent, number):
    raw = '{"attributes": {"n": ' + number + "}}"

    response = post_json(client, HEARTBEAT, raw, **agent.headers)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "out_of_range"
    assert attributes_of(agent) == {}


def test_integers_at_the_64_bit_edges_are_accepted(client, agent):
    attributes = {"a": 2**63 - 1, "b": -(2**63), "c": 0.25, "d": [1, 2.5, -3]}

    response = post_json(client, HEARTBEAT, json.dumps({"attributes": attributes}), **agent.headers)

    assert response.status_code == 200, response.content
    assert attributes_of(agent) == attributes


def test_a_float_overflowing_to_infinity_is_400(client, agent):
    response = post_json(client, HEARTBEAT, '{"attributes": {"x": 1e400}}', **agent.headers)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "out_of_range"
    assert attributes_of(agent) == {}


def test_an_exit_code_outside_64_bits_is_400(client, agent, enqueue):
    command = enqueue(agent)
    client.get("/api/v1/devices/pending", **agent.headers)
    raw = '{"status": "failed", "exit_code": ' + "9" * 30 + "}"

    response = client.generic(
        "PUT",
        f"/api/v1/devices/{command.public_id}/status",
        raw.encode(),
        content_type="application/json",
        **agent.headers,
    )

    assert response.status_code == 400, response.content
    command.refresh_from_db()
    assert command.status == "delivered"


def test_a_huge_integer_in_telemetry_is_400(client, agent):
    raw = '{"cpu_percent": ' + "9" * 400 + "}"

    response = post_json(client, INGEST, raw, **agent.headers)

    assert response.status_code == 400, response.content


# --- NUL in a path id: 404 -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/devices/pi%00-1",
        "/api/v1/devices/pi%00-1/metrics?name=cpu",
        "/api/v1/devices/pi%00-1/metrics/latest",
        "/api/v1/devices/pi%00-1/thermal/latest",
        "/api/v1/devices/pi%00-1/commands",
        "/api/v1/sites/lab%00",
    ],
)
def test_nul_in_a_path_id_is_404(client, viewer, agent, url):
    client.force_authenticate(viewer)

    response = client.get(url)

    assert response.status_code == 404, response.content
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("suffix", ["rotate-key", "revoke", "decommission"])
def test_nul_in_a_device_id_of_an_action_is_404(client, operator, agent, suffix):
    client.force_authenticate(operator)

    response = client.post(f"/api/v1/devices/pi%00-1/{suffix}")

    assert response.status_code == 404, response.content


def test_nul_in_the_device_id_of_an_ack_is_404(client, agent, enqueue):
    command = enqueue(agent)

    response = client.post(
        f"/api/v1/devices/pi%00-1/commands/{command.public_id}/ack", **agent.headers
    )

    assert response.status_code == 404, response.content


@pytest.mark.parametrize("format_", ["multipart", None])
def test_nul_in_a_form_body_is_400_too(client, agent, format_):
    if format_ == "multipart":
        response = client.post(HEARTBEAT, {"attributes.os": "linux\x00"}, **agent.headers)
    else:
        response = client.generic(
            "POST",
            HEARTBEAT,
            b"attributes.os=linux%00",
            content_type="application/x-www-form-urlencoded",
            **agent.headers,
        )

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_string"
    assert attributes_of(agent) == {}
