"""X-Device-ID + X-API-Key authentication, exercised through POST /api/v1/devices/heartbeat."""

from datetime import timedelta

import pytest
from django.utils import timezone

from devices import auth, services

URL = "/api/v1/devices/heartbeat"


@pytest.fixture
def bcrypt_checks(monkeypatch) -> list[str]:
    """Records every bcrypt check the server makes (the real check still runs)."""
    calls: list[str] = []
    real = auth.secret_matches

    def counting(secret: str, key_hash: str) -> bool:
        calls.append(secret)
        return real(secret, key_hash)

    monkeypatch.setattr(auth, "secret_matches", counting)
    return calls


def beat(client, device_id: str, api_key: str):
    return client.post(URL, {}, format="json", HTTP_X_DEVICE_ID=device_id, HTTP_X_API_KEY=api_key)


def test_a_valid_key_authenticates(client, agent):
    response = beat(client, agent.device.device_id, agent.api_key)

    assert response.status_code == 200
    assert response.json()["device_id"] == agent.device.device_id


def test_only_the_first_request_pays_bcrypt_and_later_ones_skip_the_database(
    client, agent, bcrypt_checks, django_assert_num_queries
):
    beat(client, agent.device.device_id, agent.api_key)

    with django_assert_num_queries(0):
        for _ in range(5):
            assert beat(client, agent.device.device_id, agent.api_key).status_code == 200
    assert len(bcrypt_checks) == 1


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

    assert beat(client, agent.device.device_id, wrong).status_code == 401


def test_a_malformed_key_is_401(client, agent):
    assert beat(client, agent.device.device_id, "not-a-key").status_code == 401


def test_another_devices_id_with_my_key_is_401(client, make_agent):
    mine, theirs = make_agent("pi-1"), make_agent("pi-2")

    assert beat(client, theirs.device.device_id, mine.api_key).status_code == 401


def test_a_revoked_key_is_refused_at_once_even_when_cached(client, agent, operator):
    assert beat(client, agent.device.device_id, agent.api_key).status_code == 200

    services.device_keys_revoke(device=agent.device, actor=operator)

    assert beat(client, agent.device.device_id, agent.api_key).status_code == 401


def test_an_operator_rotation_retires_the_old_key_at_once(client, agent, operator):
    beat(client, agent.device.device_id, agent.api_key)

    issued = services.device_key_rotate(device=agent.device, actor=operator)

    assert beat(client, agent.device.device_id, agent.api_key).status_code == 401
    assert beat(client, agent.device.device_id, issued.api_key).status_code == 200


def test_a_decommissioned_device_cannot_authenticate(client, agent, operator):
    beat(client, agent.device.device_id, agent.api_key)

    services.device_decommission(device=agent.device, actor=operator)

    assert beat(client, agent.device.device_id, agent.api_key).status_code == 401


def test_a_device_rotation_keeps_the_old_key_until_the_grace_ends(
    client, agent, settings, monkeypatch
):
    settings.DEVICE_KEY_ROTATION_GRACE_SECONDS = 300
    identity = auth.device_authenticate(
        device_id=agent.device.device_id, api_key=agent.api_key, client_address="t"
    )
    issued = services.device_key_rotate(device=agent.device, actor=identity)
    # During the grace the old key works (and is cached with the grace's end).
    assert beat(client, agent.device.device_id, agent.api_key).status_code == 200

    after_grace = issued.old_key_valid_until + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: after_grace)

    assert beat(client, agent.device.device_id, agent.api_key).status_code == 401
    assert beat(client, agent.device.device_id, issued.api_key).status_code == 200


def test_failed_attempts_are_throttled_per_device(client, agent, settings, bcrypt_checks):
    settings.DEVICE_AUTH_FAILURES_PER_DEVICE = 3
    for _ in range(3):
        assert (
            beat(client, agent.device.device_id, "hpk_0123456789ab_" + "x" * 43).status_code == 401
        )

    response = beat(client, agent.device.device_id, agent.api_key)

    assert response.status_code == 429
    assert "Retry-After" in response
    assert len(bcrypt_checks) == 0  # throttled before paying bcrypt


def test_failed_attempts_are_throttled_per_address(client, make_agent, settings):
    settings.DEVICE_AUTH_FAILURES_PER_ADDRESS = 3
    victim = make_agent("pi-9")
    for n in range(3):
        assert beat(client, f"guess-{n}", "hpk_0123456789ab_" + "x" * 43).status_code == 401

    assert beat(client, victim.device.device_id, victim.api_key).status_code == 429
    other_address = client.post(
        URL,
        {},
        format="json",
        HTTP_X_DEVICE_ID=victim.device.device_id,
        HTTP_X_API_KEY=victim.api_key,
        REMOTE_ADDR="10.9.9.9",
    )
    assert other_address.status_code == 200


def test_a_key_verified_before_throttling_keeps_working(client, agent, settings):
    settings.DEVICE_AUTH_FAILURES_PER_DEVICE = 2
    assert beat(client, agent.device.device_id, agent.api_key).status_code == 200
    for _ in range(2):
        beat(client, agent.device.device_id, "hpk_0123456789ab_" + "x" * 43)

    # An attacker guessing keys cannot lock out the genuine, already verified agent.
    assert beat(client, agent.device.device_id, agent.api_key).status_code == 200
