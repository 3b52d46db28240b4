"""Keys remembered per process, invalidated over Redis pub/sub (needs Redis: CI)."""

import time
from collections.abc import Callable

import pytest
from django.conf import settings
from django.core.cache import cache

from devices import services
from devices.auth import device_authenticate
from homepot.local_memory import LocalMemory, local_memory

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (CI sets REDIS_URL)")


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Wait for something another thread does; a bounded wait, not a timing assertion."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def trusted(memory: LocalMemory) -> bool:
    return memory._trusted()


@pytest.fixture
def memory() -> LocalMemory:
    memory = local_memory()
    assert eventually(lambda: trusted(memory)), "the invalidation listener did not subscribe"
    return memory


@pytest.fixture
def cache_reads(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = cache.get_many

    def counting(keys, *args, **kwargs):
        calls.append(list(keys))
        return real(keys, *args, **kwargs)

    monkeypatch.setattr(cache, "get_many", counting)
    return calls


def authenticate(agent):
    return device_authenticate(
        public_id=agent.device.public_id, api_key=agent.api_key, client_address="t"
    )


def test_a_remembered_key_needs_no_cache_round_trip(agent, memory, cache_reads):
    authenticate(agent)
    authenticate(agent)
    reads_after_two = len(cache_reads)

    for _ in range(5):
        assert authenticate(agent).public_id == "pi-1"

    assert len(cache_reads) == reads_after_two


def test_another_process_forgets_at_once_when_a_key_is_revoked(agent, memory, operator):
    # "worker B": a second memory with its own subscription, as in another process
    other = LocalMemory(settings.REDIS_URL)
    assert eventually(lambda: trusted(other))
    other.put("auth:pi-1", "k", {"expires": None}, other.version("auth:pi-1"))
    assert other.get("auth:pi-1", "k") is not None

    services.device_keys_revoke(device=agent.device, actor=operator)

    assert eventually(lambda: other.get("auth:pi-1", "k") is None)


def test_a_verification_that_straddles_a_reset_is_not_remembered(memory):
    version = memory.version("auth:pi-1")
    memory.forget("auth:pi-1")  # a reset arrives while the request was verifying

    memory.put("auth:pi-1", "k", {"expires": None}, version)

    assert memory.get("auth:pi-1", "k") is None


def test_without_a_live_subscription_nothing_is_trusted(agent):
    unreachable = LocalMemory("redis://127.0.0.1:1/0")
    unreachable.put("auth:pi-1", "k", {"expires": None}, 0)

    assert unreachable.get("auth:pi-1", "k") is None
    time.sleep(0.2)
    assert not trusted(unreachable)


def test_a_revoked_key_is_refused_even_if_remembered(client, agent, memory, operator):
    beat = {"HTTP_X_DEVICE_ID": "pi-1", "HTTP_X_API_KEY": agent.api_key}
    assert client.post("/api/v1/devices/heartbeat", **beat).status_code == 200
    assert client.post("/api/v1/devices/heartbeat", **beat).status_code == 200

    services.device_keys_revoke(device=agent.device, actor=operator)

    assert client.post("/api/v1/devices/heartbeat", **beat).status_code == 401


@pytest.fixture
def cache_gets(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = cache.get

    def counting(key, *args, **kwargs):
        calls.append(key)
        return real(key, *args, **kwargs)

    monkeypatch.setattr(cache, "get", counting)
    return calls


def poll(client, agent) -> list:
    return client.get("/api/v1/devices/pending", **agent.headers).json()


def test_an_empty_queue_is_remembered_until_a_command_is_queued(
    client, agent, memory, enqueue, cache_gets
):
    assert poll(client, agent) == []
    asked = len(cache_gets)
    assert poll(client, agent) == []
    assert len(cache_gets) == asked  # the second empty poll asked nobody

    command = enqueue(agent)

    assert [c["command_id"] for c in poll(client, agent)] == [str(command.public_id)]


def test_other_processes_forget_an_empty_queue_when_a_command_is_queued(agent, memory, enqueue):
    other = LocalMemory(settings.REDIS_URL)
    assert eventually(lambda: trusted(other))
    scope = f"queue:{agent.device.pk}"
    other.put(scope, "empty", {"until": time.monotonic() + 60}, other.version(scope))

    enqueue(agent)

    assert eventually(lambda: other.get(scope, "empty") is None)
