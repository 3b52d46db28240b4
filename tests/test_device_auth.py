"""X-Device-ID + X-API-Key authentication, exercised through POST /api/v1/devices/heartbeat."""

import os
import secrets
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from devices import auth, services
from devices.keys import NewKey, new_api_key

URL = "/api/v1/devices/heartbeat"


@pytest.fixture
def key_checks(monkeypatch) -> list[str]:
    """Records every check of a secret against its stored hash (the real check still runs)."""
    calls: list[str] = []
    real = auth.secret_matches

    def counting(key: NewKey, key_hash: str) -> bool:
        calls.append(key.key_id)
        return real(key, key_hash)

    monkeypatch.setattr(auth, "secret_matches", counting)
    return calls


def beat(client, device_id: str, api_key: str):
    return client.post(URL, {}, format="json", HTTP_X_DEVICE_ID=device_id, HTTP_X_API_KEY=api_key)


def beat_from(client, address: str, device_id: str, api_key: str):
    return client.post(
        URL,
        {},
        format="json",
        HTTP_X_DEVICE_ID=device_id,
        HTTP_X_API_KEY=api_key,
        REMOTE_ADDR=address,
    )


def test_a_valid_key_authenticates(client, agent):
    response = beat(client, agent.device.public_id, agent.api_key)

    assert response.status_code == 200
    assert response.json()["device_id"] == agent.device.public_id


def test_only_the_first_request_checks_the_key_and_later_ones_skip_the_database(
    client, agent, key_checks, django_assert_num_queries
):
    beat(client, agent.device.public_id, agent.api_key)

    with django_assert_num_queries(0):
        for _ in range(5):
            assert beat(client, agent.device.public_id, agent.api_key).status_code == 200
    assert len(key_checks) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_X_DEVICE_ID": "pi-1"}, {"HTTP_X_API_KEY": "hpk_x"}],
    ids=["none", "no-key", "no-device-id"],
)
def test_missing_headers_are_401(client, agent, headers):
    response = client.post(URL, {}, format="json", **headers)

    assert response.status_code == 401


def test_a_wrong_key_is_401(client, agent):
    wrong = agent.api_key[:-4] + ("AAAA" if not agent.api_key.endswith("AAAA") else "BBBB")

    assert beat(client, agent.device.public_id, wrong).status_code == 401


def test_a_malformed_key_is_401(client, agent):
    assert beat(client, agent.device.public_id, "not-a-key").status_code == 401


@pytest.mark.parametrize("device_id", ["pi 1", "pi-1\n", "{z=SSb={!V", "x" * 65, "-pi"])
def test_a_device_id_no_device_can_have_is_401_before_any_lookup(
    client, agent, device_id, django_assert_num_queries
):
    with django_assert_num_queries(0):
        response = beat(client, device_id, agent.api_key)

    assert response.status_code == 401


def test_another_devices_id_with_my_key_is_401(client, make_agent):
    mine, theirs = make_agent("pi-1"), make_agent("pi-2")

    assert beat(client, theirs.device.public_id, mine.api_key).status_code == 401


def test_a_revoked_key_is_refused_at_once_even_when_cached(client, agent, operator):
    assert beat(client, agent.device.public_id, agent.api_key).status_code == 200

    services.device_keys_revoke(device=agent.device, actor=operator)

    assert beat(client, agent.device.public_id, agent.api_key).status_code == 401


def test_an_operator_rotation_retires_the_old_key_at_once(client, agent, operator):
    beat(client, agent.device.public_id, agent.api_key)

    issued = services.device_key_rotate(device=agent.device, actor=operator)

    assert beat(client, agent.device.public_id, agent.api_key).status_code == 401
    assert beat(client, agent.device.public_id, issued.api_key).status_code == 200


def test_a_decommissioned_device_cannot_authenticate(client, agent, operator):
    beat(client, agent.device.public_id, agent.api_key)

    services.device_decommission(device=agent.device, actor=operator)

    assert beat(client, agent.device.public_id, agent.api_key).status_code == 401


def test_a_device_rotation_keeps_the_old_key_until_the_grace_ends(
    client, agent, settings, monkeypatch
):
    settings.DEVICE_KEY_ROTATION_GRACE_SECONDS = 300
    identity = auth.device_authenticate(
        public_id=agent.device.public_id, api_key=agent.api_key, client_address="t"
    )
    issued = services.device_key_rotate(device=agent.device, actor=identity)
    # During the grace the old key works (and is cached with the grace's end).
    assert beat(client, agent.device.public_id, agent.api_key).status_code == 200

    after_grace = issued.old_key_valid_until + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: after_grace)

    assert beat(client, agent.device.public_id, agent.api_key).status_code == 401
    assert beat(client, agent.device.public_id, issued.api_key).status_code == 200


def wrong_secret(api_key: str) -> str:
    """The same key id with another secret: only this has its secret checked and can fail."""
    return api_key[:-4] + ("AAAA" if not api_key.endswith("AAAA") else "BBBB")


def test_failed_attempts_are_throttled_per_key_id(client, agent, settings, key_checks):
    settings.DEVICE_AUTH_FAILURES_PER_KEY = 3
    for n in range(3):
        response = beat_from(
            client, f"10.6.6.{n}", agent.device.public_id, wrong_secret(agent.api_key)
        )
        assert response.status_code == 401
    paid = len(key_checks)

    response = beat_from(client, "10.6.6.9", agent.device.public_id, wrong_secret(agent.api_key))

    assert response.status_code == 429
    assert "Retry-After" in response
    assert response.json()["code"] == "auth_throttled"
    assert len(key_checks) == paid  # throttled before the secret is checked


def test_failed_attempts_are_throttled_per_address(client, make_agent, settings):
    settings.DEVICE_AUTH_FAILURES_PER_ADDRESS = 3
    victim = make_agent("pi-9")
    others = [make_agent(f"pi-{n}") for n in range(3)]
    for other in others:  # wrong secrets for real key ids: each is checked and fails
        assert beat(client, other.device.public_id, wrong_secret(other.api_key)).status_code == 401

    assert beat(client, victim.device.public_id, victim.api_key).status_code == 429
    other_address = client.post(
        URL,
        {},
        format="json",
        HTTP_X_DEVICE_ID=victim.device.public_id,
        HTTP_X_API_KEY=victim.api_key,
        REMOTE_ADDR="10.9.9.9",
    )
    assert other_address.status_code == 200


def test_a_key_verified_before_throttling_keeps_working(client, agent, settings):
    settings.DEVICE_AUTH_FAILURES_PER_KEY = 2
    assert beat(client, agent.device.public_id, agent.api_key).status_code == 200
    for _ in range(2):
        beat(client, agent.device.public_id, wrong_secret(agent.api_key))

    # An attacker guessing keys cannot lock out the genuine, already verified agent.
    assert beat(client, agent.device.public_id, agent.api_key).status_code == 200


def test_guessing_at_a_device_id_never_locks_out_its_key_not_yet_verified(
    client, agent, operator, settings
):
    settings.DEVICE_AUTH_FAILURES_PER_KEY = 3
    settings.DEVICE_AUTH_FAILURES_PER_ADDRESS = 3
    device_id = agent.device.public_id
    # The attacker knows the device id, not the key: random key ids and secrets, from
    # one address and from many.
    for n in range(30):
        guess = new_api_key().api_key
        assert beat_from(client, "10.6.6.6", device_id, guess).status_code == 401
        assert beat_from(client, f"10.7.{n}.1", device_id, guess).status_code == 401

    # The key was never verified: no process memory or cache entry helps it.
    assert beat_from(client, "10.1.1.1", device_id, agent.api_key).status_code == 200

    issued = services.device_key_rotate(device=agent.device, actor=operator)
    assert beat_from(client, "10.1.1.1", device_id, issued.api_key).status_code == 200


def test_a_rotated_key_is_not_throttled_by_failures_against_the_old_one(
    client, agent, operator, settings
):
    settings.DEVICE_AUTH_FAILURES_PER_KEY = 2
    for n in range(2):
        beat_from(client, f"10.6.6.{n}", agent.device.public_id, wrong_secret(agent.api_key))
    assert beat_from(client, "10.1.1.1", agent.device.public_id, agent.api_key).status_code == 429

    issued = services.device_key_rotate(device=agent.device, actor=operator)

    assert beat_from(client, "10.1.1.1", agent.device.public_id, issued.api_key).status_code == 200


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="inspects Redis TTLs")
def test_failed_authentication_leaves_no_redis_key_without_expiry(client, make_agent, settings):
    victim = make_agent("pi-9")
    client_redis = redis.Redis.from_url(os.environ["REDIS_URL"])
    client_redis.flushdb()
    for n in range(20):  # unknown device ids, well-formed and malformed keys
        beat_from(client, f"10.8.0.{n}", f"ghost-{n}-{secrets.token_hex(4)}", new_api_key().api_key)
        beat_from(client, "10.8.1.1", f"ghost-{n}", "not-a-key")
    # Guesses whose secret is never checked leave nothing at all: a flood of made-up ids
    # cannot fill the cache.
    assert client_redis.keys("*") == []
    for n in range(5):  # a real key id with wrong secrets: counted, so stored
        beat_from(client, f"10.8.2.{n}", "pi-9", wrong_secret(victim.api_key))

    keys = client_redis.keys("*")
    assert keys, "the failures above should have been counted"
    without_expiry = [key for key in keys if client_redis.ttl(key) < 0]
    assert without_expiry == []


def test_the_retired_per_device_limit_stops_the_server_loudly():
    # It would otherwise be ignored without a word, and operators would believe it set.
    from tests.test_settings_env import load_settings

    result = load_settings(
        "DEVICE_AUTH_FAILURES_PER_KEY", DEBUG="true", DEVICE_AUTH_FAILURES_PER_DEVICE="3"
    )

    assert result.returncode != 0
    assert "DEVICE_AUTH_FAILURES_PER_KEY" in result.stderr
    assert load_settings("DEVICE_AUTH_FAILURES_PER_KEY", DEBUG="true").stdout.strip() == "10"
