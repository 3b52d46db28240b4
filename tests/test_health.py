"""GET /health and GET /health/ready, against a real Redis server that we stop."""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_redis() -> Iterator[tuple[str, subprocess.Popen]]:
    """A Redis server of this test's own, so stopping it disturbs nothing else."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", process
    process.kill()
    process.wait()


def use_redis(settings, url: str) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}


def test_liveness_needs_nothing(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_loopback_hosts_are_served_for_healthchecks_and_others_refused(client, db):
    # Container healthchecks call http://127.0.0.1:8000 whatever ALLOWED_HOSTS says.
    assert client.get("/health", HTTP_HOST="127.0.0.1:8000").status_code == 200
    assert client.get("/health", HTTP_HOST="10.1.2.3").status_code == 400


def test_ready_when_database_cache_and_broker_answer(client, db, settings, private_redis):
    use_redis(settings, private_redis[0])

    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}


def test_ready_reports_a_stopped_redis_as_503_naming_cache_and_broker(
    client, db, settings, private_redis
):
    url, process = private_redis
    use_redis(settings, url)
    assert client.get("/health/ready").status_code == 200

    process.terminate()
    process.wait()
    response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["cache", "broker"]
    assert body["checks"]["database"] == "ok"
