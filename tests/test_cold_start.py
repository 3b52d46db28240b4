"""Device keys after a cold start: stored under a keyed hash (HMAC) whose key
is not in the database; legacy bcrypt hashes still work, are checked a bounded
number at a time (503 auth_busy beyond it) and are re-hashed on first use, so a
second cache flush costs no bcrypt at all."""

import logging
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import bcrypt
import pytest
import redis
import requests
from django.core.cache import cache
from django.db import connection, connections
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices import auth
from devices.keys import legacy_bcrypt_hash, parse_api_key
from devices.models import DeviceCredential
from homepot.local_memory import local_memory

URL = "/api/v1/devices/heartbeat"
HASH_KEY_A = "a" * 40
HASH_KEY_B = "b" * 40
HMAC_FORM = re.compile(r"hmac-sha256\$[0-9a-f]{8}\$[0-9a-f]{64}")


def beat(client, agent, api_key: str | None = None):
    return client.post(
        URL,
        {},
        format="json",
        HTTP_X_DEVICE_ID=agent.device.public_id,
        HTTP_X_API_KEY=api_key or agent.api_key,
    )


def forget_verified_keys() -> None:
    """What a cold start leaves: no cache entry, nothing in process memory."""
    cache.clear()
    memory = local_memory()
    if memory is not None:
        memory.clear()


def stored_hash(agent) -> str:
    return DeviceCredential.objects.get(device=agent.device).key_hash


def make_legacy(agent) -> str:
    """Store the agent's key as HOMEPOT did before the HMAC form: bcrypt."""
    legacy = legacy_bcrypt_hash(parse_api_key(agent.api_key).secret)
    DeviceCredential.objects.filter(device=agent.device).update(key_hash=legacy)
    return legacy


@pytest.fixture
def bcrypt_calls(monkeypatch) -> list[float]:
    """Every bcrypt check, counted at the library's boundary (the real one runs)."""
    calls: list[float] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(time.monotonic())
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def key_hash_updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "key_hash" in q["sql"]]


# --- A stolen database dump ------------------------------------------------------------------


def test_new_keys_are_stored_as_hmac_and_checked_without_bcrypt(client, agent, bcrypt_calls):
    assert HMAC_FORM.fullmatch(stored_hash(agent))

    assert beat(client, agent).status_code == 200
    assert bcrypt_calls == []


def test_the_stored_hash_itself_is_no_key(client, agent):
    stolen = stored_hash(agent)
    key_id = parse_api_key(agent.api_key).key_id

    for attempt in [stolen, f"hpk_{key_id}_{stolen}", f"hpk_{key_id}_{stolen.split('$')[2][:43]}"]:
        assert beat(client, agent, attempt).status_code == 401


def test_a_server_with_another_hash_key_refuses_the_key(client, make_agent, settings):
    # Registered under hash key A: the database holds everything a dump would.
    settings.DEVICE_KEY_HASH_KEY = HASH_KEY_A
    agent = make_agent("pi-1")
    assert beat(client, agent).status_code == 200

    # The same database and the real key, on a server without hash key A.
    settings.DEVICE_KEY_HASH_KEY = HASH_KEY_B
    forget_verified_keys()

    assert beat(client, agent).status_code == 401


def test_a_new_secret_key_without_fallback_refuses_keys_hashed_under_the_old_one(
    client, agent, settings
):
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    forget_verified_keys()

    assert beat(client, agent).status_code == 401


def test_a_hash_copied_onto_another_key_id_does_not_match(client, make_agent):
    mine, theirs = make_agent("pi-1"), make_agent("pi-2")
    # An attacker who can write the database copies their own key's hash onto
    # the victim's row: the hash binds the key id, so their secret is refused there.
    DeviceCredential.objects.filter(device=theirs.device).update(key_hash=stored_hash(mine))
    theirs_key_id = parse_api_key(theirs.api_key).key_id
    my_secret = parse_api_key(mine.api_key).secret

    response = beat(client, theirs, f"hpk_{theirs_key_id}_{my_secret}")

    assert response.status_code == 401


def test_a_key_checked_again_within_the_cache_period_rewrites_no_credential_row(
    client, agent, settings, monkeypatch
):
    assert beat(client, agent).status_code == 200  # stamps last_used_at
    forget_verified_keys()

    with CaptureQueriesContext(connection) as again:
        assert beat(client, agent).status_code == 200

    credential_writes = [
        q for q in again if q["sql"].startswith('UPDATE "devices_devicecredential"')
    ]
    assert credential_writes == []
    later = timezone.now() + timedelta(seconds=settings.DEVICE_AUTH_CACHE_SECONDS + 1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    forget_verified_keys()
    assert beat(client, agent).status_code == 200
    assert DeviceCredential.objects.get(device=agent.device).last_used_at == later


# --- Rotating the hash key ---------------------------------------------------------------------


def test_a_fallback_hash_key_still_authenticates_and_the_key_moves_to_the_current_one(
    client, make_agent, settings
):
    settings.DEVICE_KEY_HASH_KEY = HASH_KEY_A
    agent = make_agent("pi-1")
    under_a = stored_hash(agent)
    settings.DEVICE_KEY_HASH_KEY, settings.DEVICE_KEY_HASH_KEY_FALLBACKS = HASH_KEY_B, [HASH_KEY_A]

    assert beat(client, agent).status_code == 200

    under_b = stored_hash(agent)
    assert HMAC_FORM.fullmatch(under_b) and under_b.split("$")[1] != under_a.split("$")[1]
    settings.DEVICE_KEY_HASH_KEY_FALLBACKS = []  # key A dropped
    forget_verified_keys()
    assert beat(client, agent).status_code == 200


def test_setting_a_hash_key_later_locks_no_device_out(client, agent, settings):
    derived = stored_hash(agent)  # made under the key derived from SECRET_KEY
    settings.DEVICE_KEY_HASH_KEY = HASH_KEY_A

    assert beat(client, agent).status_code == 200
    assert stored_hash(agent) != derived


# --- Legacy bcrypt hashes: migrated on use ------------------------------------------------------


def test_a_legacy_bcrypt_key_works_and_is_rehashed_exactly_once(client, agent, bcrypt_calls):
    legacy = make_legacy(agent)

    with CaptureQueriesContext(connection) as first:
        assert beat(client, agent).status_code == 200

    assert len(bcrypt_calls) == 1
    assert len(key_hash_updates(first)) == 1
    assert HMAC_FORM.fullmatch(stored_hash(agent))
    # Conditional on the old hash: a request that raced and read it cannot rewrite it again.
    assert "key_hash" in key_hash_updates(first)[0].split("WHERE", 1)[1]
    assert legacy not in stored_hash(agent)
    migrated = stored_hash(agent)

    forget_verified_keys()
    with CaptureQueriesContext(connection) as second:
        assert beat(client, agent).status_code == 200

    assert len(bcrypt_calls) == 1  # one HMAC this time
    assert key_hash_updates(second) == []
    assert stored_hash(agent) == migrated


def test_a_wrong_key_against_a_legacy_hash_is_refused_and_never_migrates(
    client, agent, bcrypt_calls
):
    legacy = make_legacy(agent)
    wrong = agent.api_key[:-4] + ("AAAA" if not agent.api_key.endswith("AAAA") else "BBBB")

    for _ in range(3):
        assert beat(client, agent, wrong).status_code == 401

    assert len(bcrypt_calls) == 3
    assert stored_hash(agent) == legacy
    assert beat(client, agent).status_code == 200  # the real key then migrates
    assert HMAC_FORM.fullmatch(stored_hash(agent))


# --- The bounded bcrypt path ---------------------------------------------------------------------


def test_beyond_the_bcrypt_limit_a_legacy_key_gets_503_with_retry_after_not_a_failure(
    client, make_agent, settings, bcrypt_calls
):
    settings.DEVICE_AUTH_BCRYPT_CONCURRENCY = 1
    settings.DEVICE_AUTH_FAILURES_PER_KEY = 1
    legacy, current = make_agent("pi-old"), make_agent("pi-new")
    make_legacy(legacy)

    with auth._bcrypt_slots.slot(1):  # another request is checking a bcrypt hash
        responses = [beat(client, legacy) for _ in range(3)]
        assert beat(client, current).status_code == 200  # HMAC keys need no slot

    for response in responses:
        assert response.status_code == 503
        assert response.json() == {"detail": response.json()["detail"], "code": "auth_busy"}
        assert 1 <= int(response["Retry-After"]) <= 5
    assert bcrypt_calls == []
    # Not counted as failures (the limit is 1): the slot free, the key is taken.
    assert beat(client, legacy).status_code == 200


# --- A fleet after a Redis flush (PostgreSQL and Redis: concurrent writers, a real flush) --------

FLEET = 300
CLIENT_THREADS = 16
BCRYPT_LIMIT = 2


def flush_redis_and_memory() -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.flushdb()
    client.close()
    memory = local_memory()
    if memory is not None:
        memory.clear()


class ConcurrencyMeter:
    """Wraps bcrypt.checkpw: how many run at once, at most. Each check is held
    10 ms longer, as a costlier hash would take, so that overlaps happen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.calls = 0

    def wrap(self, real):  # noqa: ANN001, ANN201
        def measured(password: bytes, hashed: bytes) -> bool:
            with self.lock:
                self.now += 1
                self.calls += 1
                self.peak = max(self.peak, self.now)
            try:
                time.sleep(0.01)
                return real(password, hashed)
            finally:
                with self.lock:
                    self.now -= 1

        return measured


def authenticate_until_accepted(url: str, device_id: str, api_key: str) -> list[int]:
    """Heartbeats until one is accepted; every status seen. The Retry-After of
    a 503 is checked, and the retry comes after a short pause (the agent itself
    waits Retry-After: tests/agent/test_auth_busy.py)."""
    statuses: list[int] = []
    headers = {"X-Device-ID": device_id, "X-API-Key": api_key}
    while len(statuses) < 500:
        response = requests.post(url, json={}, headers=headers, timeout=30)
        statuses.append(response.status_code)
        if response.status_code != 503:
            return statuses
        assert response.json()["code"] == "auth_busy"
        assert 1 <= int(response.headers["Retry-After"]) <= 5
        time.sleep(0.005)
    return statuses


def fleet_authenticates(url: str, fleet: list[tuple[str, str]]) -> list[list[int]]:
    def one(pair: tuple[str, str]) -> list[int]:
        try:
            return authenticate_until_accepted(url, *pair)
        finally:
            connections.close_all()

    # Every device twice, in different threads: two first requests of one
    # device racing to verify and re-hash the same legacy key.
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        return list(pool.map(one, fleet + fleet[::-1]))


@pytest.mark.skipif(
    connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"),
    reason="a fleet of concurrent writers and a real Redis flush: PostgreSQL and Redis "
    "(CI sets DATABASE_URL and REDIS_URL)",
)
@pytest.mark.django_db(transaction=True)
def test_a_legacy_fleet_after_a_redis_flush_is_bounded_then_migrated_then_free(
    live_server, make_agent, settings, monkeypatch, caplog
):
    settings.DEVICE_AUTH_BCRYPT_CONCURRENCY = BCRYPT_LIMIT
    settings.DEVICE_KEY_BCRYPT_ROUNDS = 4  # cheap legacy hashes; the meter adds the cost
    agents = [make_agent(f"pi-{n:03d}") for n in range(FLEET)]
    for agent in agents:
        make_legacy(agent)
    fleet = [(a.device.public_id, a.api_key) for a in agents]
    meter = ConcurrencyMeter()
    monkeypatch.setattr(bcrypt, "checkpw", meter.wrap(bcrypt.checkpw))
    caplog.set_level(logging.DEBUG, logger="devices.auth")
    url = live_server.url + URL
    flush_redis_and_memory()

    first = fleet_authenticates(url, fleet)

    assert all(statuses[-1] == 200 for statuses in first), Counter(s[-1] for s in first)
    busy = sum(statuses.count(503) for statuses in first)
    assert busy > 0, "the clients never met the limit: the test did not exercise it"
    assert meter.peak == BCRYPT_LIMIT  # reached, never passed
    assert not DeviceCredential.objects.filter(~Q(key_hash__startswith="hmac-sha256$")).exists()
    rehashed = [r for r in caplog.records if "re-hashed" in r.getMessage()]
    assert len(rehashed) == FLEET  # each key exactly once, racing requests included
    assert FLEET <= meter.calls <= 2 * FLEET

    calls_before = meter.calls
    flush_redis_and_memory()
    second = fleet_authenticates(url, fleet)

    assert all(statuses == [200] for statuses in second)
    assert meter.calls == calls_before  # not one bcrypt check
