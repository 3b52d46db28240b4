"""With Redis or the database unreachable, every API answer is a JSON 503 with
a code naming the backend and a Retry-After: never HTML, never 500, and
nothing half done. Redis is a real server this test starts and stops."""

import socket

import pytest
from django.db import connections

from commands.models import Command
from tests.test_health import private_redis, use_redis  # noqa: F401 (a fixture)


def assert_unavailable(response, code: str) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == code
    assert int(response["Retry-After"]) > 0


@pytest.fixture
def redis_down(settings, private_redis):  # noqa: F811
    """The cache on our own Redis server, which is then stopped."""
    url, process = private_redis
    use_redis(settings, url)
    settings.CACHES["default"]["BACKEND"] = "homepot.cache.ReusingRedisCache"

    def stop() -> None:
        process.kill()
        process.wait()

    return stop


def test_device_calls_answer_503_while_redis_is_down(client, make_agent, redis_down):
    agent = make_agent("pi-1")  # registered while Redis is up; its key not yet verified
    redis_down()

    assert_unavailable(
        client.post("/api/v1/devices/heartbeat", **agent.headers), "cache_unavailable"
    )
    assert_unavailable(client.get("/api/v1/devices/pending", **agent.headers), "cache_unavailable")
    response = client.post(
        "/api/v1/analytics/device-metrics", {"cpu_percent": 1.0}, format="json", **agent.headers
    )
    assert_unavailable(response, "cache_unavailable")


def test_queueing_a_command_answers_503_and_queues_nothing_while_redis_is_down(
    client, operator, make_agent, redis_down
):
    agent = make_agent("pi-1")
    redis_down()
    client.force_authenticate(operator)

    response = client.post(
        f"/api/v1/devices/{agent.device.public_id}/commands",
        {"command_type": "ping"},
        format="json",
    )

    assert_unavailable(response, "cache_unavailable")
    assert not Command.objects.exists()


def test_the_retry_after_is_a_setting(client, make_agent, redis_down, settings):
    settings.API_UNAVAILABLE_RETRY_AFTER_SECONDS = 17
    agent = make_agent("pi-1")
    redis_down()

    response = client.post("/api/v1/devices/heartbeat", **agent.headers)

    assert response.status_code == 503
    assert response["Retry-After"] == "17"


# --- the database --------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def database_down(transactional_db):  # noqa: ANN001
    """Point the connection at a port where nothing listens; restore it after."""
    connection = connections["default"]
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: an in-memory SQLite test database cannot be taken away")
    original = dict(connection.settings_dict)

    def stop() -> None:
        connection.close()
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))

    yield stop
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(original)


def test_api_calls_answer_503_while_the_database_is_down(
    client, operator, make_agent, database_down
):
    agent = make_agent("pi-1")
    client.post("/api/v1/devices/heartbeat", **agent.headers)  # key verified and cached
    database_down()

    response = client.post(
        "/api/v1/analytics/device-metrics", {"cpu_percent": 1.0}, format="json", **agent.headers
    )
    assert_unavailable(response, "database_unavailable")

    client.force_authenticate(operator)
    assert_unavailable(client.get("/api/v1/devices"), "database_unavailable")
    assert_unavailable(client.get("/api/v1/metrics/names"), "database_unavailable")
    response = client.post("/api/v1/devices/pi-1/commands", {"command_type": "ping"}, format="json")
    assert_unavailable(response, "database_unavailable")


def test_a_new_device_key_answers_503_while_the_database_is_down(client, make_agent, database_down):
    agent = make_agent("pi-1")
    database_down()

    response = client.post("/api/v1/devices/heartbeat", **agent.headers)

    assert_unavailable(response, "database_unavailable")
